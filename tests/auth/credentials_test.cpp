#include "tagd/auth/credentials.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "tagd/auth/request_verifier.hpp"

namespace tagd::auth {
namespace {

std::string write_temp(const std::string& text) {
  char name[] = "/tmp/tagd_creds_testXXXXXX";
  int fd = mkstemp(name);
  ::close(fd);
  std::ofstream(name) << text;
  return name;
}

TEST(CredentialsTest, LoadsKeysAndGrants) {
  std::string path = write_temp(R"({"keys":[
    {"access_key_id":"READER","secret_access_key":"r","grants":[
      {"bucket":"data","prefix":"public/","actions":["read","list"]}]},
    {"access_key_id":"ADMIN","secret_access_key":"a","grants":[{"bucket":"*","actions":["*"]}]}]})");
  CredentialStore store;
  store.load_file(path);
  ASSERT_EQ(store.size(), 2u);
  const Identity* reader = store.find("READER");
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(reader->secret_access_key, "r");
  EXPECT_TRUE(reader->may(s3::Action::kRead, "data", "public/a.txt"));
  EXPECT_FALSE(reader->may(s3::Action::kRead, "data", "private/a.txt"));
  EXPECT_FALSE(reader->may(s3::Action::kWrite, "data", "public/a.txt"));
  EXPECT_FALSE(reader->may(s3::Action::kRead, "other", "public/a.txt"));
  EXPECT_TRUE(reader->allows({s3::Action::kList, s3::Scope::kPrefix, "data", "public/2024/"}));
  EXPECT_FALSE(reader->allows({s3::Action::kList, s3::Scope::kPrefix, "data", ""}));
  EXPECT_FALSE(reader->allows({s3::Action::kWrite, s3::Scope::kBucket, "data", ""}));
  const Identity* admin = store.find("ADMIN");
  ASSERT_NE(admin, nullptr);
  EXPECT_TRUE(admin->allows({s3::Action::kDelete, s3::Scope::kBucket, "anything", ""}));
  EXPECT_TRUE(admin->allows({s3::Action::kAdmin, s3::Scope::kBucket, "anything", ""}));
  EXPECT_EQ(store.find("NOBODY"), nullptr);
  std::remove(path.c_str());
}

TEST(CredentialsTest, RejectsBadFiles) {
  for (const char* text : {R"({"keys":[{"access_key_id":"A"}]})",
                           R"({"keys":[{"access_key_id":"A","secret_access_key":"s","grants":[{"bucket":"b","actions":["fly"]}]}]})",
                           R"({"keys":[{"access_key_id":"A","secret_access_key":"s","grants":[]},
                                       {"access_key_id":"A","secret_access_key":"t","grants":[]}]})",
                           "[]", "{bad",
                           // found by fuzzing: numbers too large for a double
                           "1e2222", R"({"keys":[1e400]})"}) {
    std::string path = write_temp(text);
    CredentialStore store;
    EXPECT_THROW(store.load_file(path), std::runtime_error) << text;
    std::remove(path.c_str());
  }
}

s3::Operation classify(std::string_view method, std::string_view request_target, auth::HeaderList headers = {}) {
  auto t = s3::resolve_target("localhost", request_target, "");
  EXPECT_TRUE(t.has_value()) << request_target;
  auto op = s3::classify(method, *t, headers);
  EXPECT_TRUE(op.has_value()) << method << " " << request_target;
  return op ? op.value() : s3::Operation{};
}

TEST(AuthorizeTest, OperationsMapToGrants) {
  Identity id{"K", "S", {Grant{"data", "team/", true, true, true, false}}};
  EXPECT_TRUE(authorize(id, classify("GET", "/data/team/x")));
  EXPECT_TRUE(authorize(id, classify("PUT", "/data/team/x")));
  EXPECT_FALSE(authorize(id, classify("DELETE", "/data/team/x")));
  EXPECT_FALSE(authorize(id, classify("PUT", "/data/other/x")));
  // Bucket administration needs a whole-bucket grant.
  EXPECT_FALSE(authorize(id, classify("PUT", "/data")));
  // Listing: the requested prefix must be inside the grant.
  EXPECT_TRUE(authorize(id, classify("GET", "/data?list-type=2&prefix=team/a")));
  EXPECT_FALSE(authorize(id, classify("GET", "/data?list-type=2&prefix=te")));
  // ListBuckets needs some list grant.
  EXPECT_TRUE(authorize(id, classify("GET", "/")));
  // Knowing the bucket exists needs read or list somewhere in it.
  EXPECT_TRUE(authorize(id, classify("HEAD", "/data")));
  EXPECT_FALSE(authorize(id, classify("HEAD", "/other")));
  Identity writer{"W", "S", {Grant{"data", "", false, true, false, false}}};
  EXPECT_FALSE(authorize(writer, classify("GET", "/")));
  EXPECT_TRUE(authorize(writer, classify("PUT", "/data")));
  EXPECT_FALSE(authorize(writer, classify("HEAD", "/data")));
}

// Class 1: a prefix-limited key reads neither the bucket policy nor its ACL.
TEST(AuthorizeTest, Trust1PrefixKeyCannotReadBucketConfiguration) {
  Identity id{"K", "S", {Grant{"data", "pub/", true, false, true, false}}};
  EXPECT_FALSE(authorize(id, classify("GET", "/data?policy")));
  EXPECT_FALSE(authorize(id, classify("GET", "/data?acl")));
  EXPECT_FALSE(authorize(id, classify("GET", "/data?versioning")));
  EXPECT_TRUE(authorize(id, classify("GET", "/data?list-type=2&prefix=pub/")));
}

// Class 1: ACL and configuration writes need admin; write alone is not enough.
TEST(AuthorizeTest, Trust1AdminGrantForAccessControl) {
  Identity writer{"W", "S", {Grant{"data", "", true, true, true, true}}};
  EXPECT_TRUE(authorize(writer, classify("PUT", "/data/k")));
  EXPECT_FALSE(authorize(writer, classify("PUT", "/data/k", {{"x-amz-acl", "public-read"}})));
  EXPECT_FALSE(authorize(writer, classify("PUT", "/data/k?acl")));
  EXPECT_FALSE(authorize(writer, classify("PUT", "/data?policy")));
  EXPECT_FALSE(authorize(writer, classify("DELETE", "/data?lifecycle")));
  Identity admin{"A", "S", {Grant{"data", "", true, true, true, true, true}}};
  EXPECT_TRUE(authorize(admin, classify("PUT", "/data/k", {{"x-amz-acl", "public-read"}})));
  EXPECT_TRUE(authorize(admin, classify("PUT", "/data?policy")));
}

// Class 1: a move needs delete on its source.
TEST(AuthorizeTest, Trust1RenameNeedsDeleteOnSource) {
  Identity rw{"W", "S", {Grant{"data", "", true, true, true, false}}};
  EXPECT_TRUE(authorize(rw, classify("PUT", "/data/new", {{"x-amz-copy-source", "/data/old"}})));
  EXPECT_FALSE(
      authorize(rw, classify("PUT", "/data/new", {{"x-amz-copy-source", "/data/old"}, {"x-tigris-rename", "true"}})));
  EXPECT_FALSE(authorize(rw, classify("PUT", "/data/new?renameObject", {{"x-amz-rename-source", "/data/old"}})));
  Identity rwd{"D", "S", {Grant{"data", "", true, true, true, true}}};
  EXPECT_TRUE(
      authorize(rwd, classify("PUT", "/data/new", {{"x-amz-copy-source", "/data/old"}, {"x-tigris-rename", "true"}})));
}

// Class 1: dot and empty segments never let a prefix-limited key out of its prefix.
TEST(AuthorizeTest, Trust1DotSegmentsStayInsideThePrefix) {
  EXPECT_TRUE(is_plain_key("pub/a/b.txt"));
  EXPECT_TRUE(is_plain_key("pub/dir/"));
  EXPECT_TRUE(is_plain_key("pub/.hidden/..x"));
  EXPECT_FALSE(is_plain_key("pub/../private/x"));
  EXPECT_FALSE(is_plain_key("pub/./x"));
  EXPECT_FALSE(is_plain_key("pub//x"));
  EXPECT_FALSE(is_plain_key("/pub/x"));
  EXPECT_FALSE(is_plain_key("pub/.."));
  Identity id{"K", "S", {Grant{"data", "pub/", true, true, true, true}}};
  EXPECT_TRUE(id.may(s3::Action::kRead, "data", "pub/x"));
  EXPECT_FALSE(id.may(s3::Action::kRead, "data", "pub/../private/x"));
  EXPECT_FALSE(id.may(s3::Action::kWrite, "data", "pub//x"));
  EXPECT_FALSE(authorize(id, classify("PUT", "/data/pub/x", {{"x-amz-copy-source", "/data/pub//secret"}})));
  // A whole-bucket grant has nothing to escape from.
  Identity all{"A", "S", {Grant{"data", "", true, true, true, true}}};
  EXPECT_TRUE(all.may(s3::Action::kRead, "data", "pub/../private/x"));
}

// ---- key rotation: load_client_keys and RequestVerifier::replace_store (SIGHUP)

TEST(ClientKeysTest, FileAndShortcutKeyTogether) {
  std::string path = write_temp(R"({"keys":[{"access_key_id":"FILEKEY","secret_access_key":"f","grants":[]}]})");
  auto store = load_client_keys(path, "ENVKEY", "e");
  EXPECT_EQ(store->size(), 2u);
  ASSERT_NE(store->find("ENVKEY"), nullptr);
  EXPECT_TRUE(store->find("ENVKEY")->allows({s3::Action::kAdmin, s3::Scope::kBucket, "any", ""}));
  EXPECT_EQ(load_client_keys("", "ENVKEY", "e")->size(), 1u);
  EXPECT_EQ(load_client_keys(path, "", "")->size(), 1u);
  std::ofstream(path) << "{\"keys\": [";  // a half-written file: refused, never half-loaded
  EXPECT_THROW(load_client_keys(path, "ENVKEY", "e"), std::runtime_error);
  std::remove(path.c_str());
  EXPECT_THROW(load_client_keys(path, "", ""), std::runtime_error);  // gone
}

// AWS's published GetObject example (see request_verifier_test.cpp): signed by
// AKIAIOSFODNN7EXAMPLE on 2013-05-24.
constexpr const char* kExampleKey = "AKIAIOSFODNN7EXAMPLE";
constexpr const char* kExampleSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

HeaderList example_get_headers() {
  return {{"Host", "examplebucket.s3.amazonaws.com"},
          {"Range", "bytes=0-9"},
          {"x-amz-content-sha256", std::string(kEmptySha256)},
          {"x-amz-date", "20130524T000000Z"},
          {"Authorization",
           "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
           "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
           "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"}};
}

Result<VerifiedRequest> verify_example(const RequestVerifier& v) {
  static const HeaderList headers = example_get_headers();
  return v.verify(RequestHead{"GET", "/test.txt", "", &headers}, *parse_amz_date("20130524T000000Z"));
}

std::shared_ptr<const CredentialStore> store_with(const char* key, const char* secret) {
  auto s = std::make_shared<CredentialStore>();
  s->add_full_access(key, secret);
  return s;
}

TEST(KeyRotationTest, NewStoreDecidesFromTheNextRequestOn) {
  RequestVerifier v(store_with(kExampleKey, kExampleSecret), std::chrono::seconds(900), false);
  ASSERT_TRUE(verify_example(v).has_value());

  // The key is rotated away: the same request is now from an unknown key.
  v.replace_store(store_with("AKIDROTATEDNEWKEY000", "new-secret"));
  auto gone = verify_example(v);
  ASSERT_FALSE(gone.has_value());
  EXPECT_EQ(gone.error().code(), ErrorCode::kInvalidAccessKeyId);

  // Same key id, new secret: the old signature no longer matches.
  v.replace_store(store_with(kExampleKey, "a-rotated-secret"));
  auto resecreted = verify_example(v);
  ASSERT_FALSE(resecreted.has_value());
  EXPECT_EQ(resecreted.error().code(), ErrorCode::kSignatureDoesNotMatch);

  v.replace_store(store_with(kExampleKey, kExampleSecret));
  EXPECT_TRUE(verify_example(v).has_value());
}

TEST(KeyRotationTest, ARequestInFlightKeepsTheStoreItWasVerifiedWith) {
  auto original = store_with(kExampleKey, kExampleSecret);
  std::weak_ptr<const CredentialStore> watch = original;
  RequestVerifier v(std::move(original), std::chrono::seconds(900), false);
  auto in_flight = verify_example(v);
  ASSERT_TRUE(in_flight.has_value());
  v.replace_store(store_with("AKIDROTATEDNEWKEY000", "new-secret"));
  EXPECT_FALSE(verify_example(v).has_value());  // this thread now reads the new store
  // Only the request still holds the old store, and its identity is still readable.
  ASSERT_FALSE(watch.expired());
  EXPECT_EQ(in_flight->identity->access_key_id, kExampleKey);
  EXPECT_EQ(in_flight->store.get(), watch.lock().get());
  in_flight = Status(ErrorCode::kInternalError, "request done");
  EXPECT_TRUE(watch.expired());
}

TEST(KeyRotationTest, EveryThreadSeesTheNewStore) {
  RequestVerifier v(store_with(kExampleKey, kExampleSecret), std::chrono::seconds(900), false);
  // Another event loop has been serving with the old store (its own cached reference).
  bool before = false;
  std::thread([&] { before = verify_example(v).has_value(); }).join();
  EXPECT_TRUE(before);
  v.replace_store(store_with("AKIDROTATEDNEWKEY000", "new-secret"));
  ErrorCode after = ErrorCode::kInternalError;
  std::thread loop([&] {
    auto r = verify_example(v);
    after = r.has_value() ? ErrorCode::kInternalError : r.error().code();
  });
  loop.join();
  EXPECT_EQ(after, ErrorCode::kInvalidAccessKeyId);
}

TEST(KeyRotationTest, VerifiersDoNotShareAThreadsCachedStore) {
  // One thread, two verifiers: each must answer from its own store, not the one the
  // thread looked at last.
  RequestVerifier with_key(store_with(kExampleKey, kExampleSecret), std::chrono::seconds(900), false);
  RequestVerifier without(store_with("AKIDSOMEONEELSE00000", "x"), std::chrono::seconds(900), false);
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(verify_example(with_key).has_value());
    EXPECT_FALSE(verify_example(without).has_value());
  }
}

}  // namespace
}  // namespace tagd::auth
