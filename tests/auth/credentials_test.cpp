#include "tagd/auth/credentials.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

namespace tagd::auth {
namespace {

s3::Target target(std::string bucket, std::string key, s3::Action /*unused*/ = s3::Action::kRead) {
  s3::Target t;
  t.bucket = std::move(bucket);
  t.key = std::move(key);
  return t;
}

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
  EXPECT_TRUE(reader->may_list("data", "public/2024/"));
  EXPECT_FALSE(reader->may_list("data", ""));
  EXPECT_FALSE(reader->may_bucket(s3::Action::kWrite, "data"));
  const Identity* admin = store.find("ADMIN");
  ASSERT_NE(admin, nullptr);
  EXPECT_TRUE(admin->may_bucket(s3::Action::kDelete, "anything"));
  EXPECT_EQ(store.find("NOBODY"), nullptr);
  std::remove(path.c_str());
}

TEST(CredentialsTest, RejectsBadFiles) {
  for (const char* text : {R"({"keys":[{"access_key_id":"A"}]})",
                           R"({"keys":[{"access_key_id":"A","secret_access_key":"s","grants":[{"bucket":"b","actions":["fly"]}]}]})",
                           R"({"keys":[{"access_key_id":"A","secret_access_key":"s","grants":[]},
                                       {"access_key_id":"A","secret_access_key":"t","grants":[]}]})",
                           "[]", "{bad"}) {
    std::string path = write_temp(text);
    CredentialStore store;
    EXPECT_THROW(store.load_file(path), std::runtime_error) << text;
    std::remove(path.c_str());
  }
}

TEST(AuthorizeTest, OperationsMapToGrants) {
  Identity id{"K", "S", {Grant{"data", "team/", true, true, true, false}}};
  auto op = [](std::string method, s3::Target t) { return s3::classify(method, t); };
  EXPECT_TRUE(authorize(id, op("GET", target("data", "team/x")), target("data", "team/x")));
  EXPECT_TRUE(authorize(id, op("PUT", target("data", "team/x")), target("data", "team/x")));
  EXPECT_FALSE(authorize(id, op("DELETE", target("data", "team/x")), target("data", "team/x")));
  EXPECT_FALSE(authorize(id, op("PUT", target("data", "other/x")), target("data", "other/x")));
  // Bucket administration needs a whole-bucket grant.
  EXPECT_FALSE(authorize(id, op("PUT", target("data", "")), target("data", "")));
  // Listing: the requested prefix must be inside the grant.
  s3::Target list = target("data", "");
  list.query = {{"list-type", "2"}, {"prefix", "team/a"}};
  EXPECT_TRUE(authorize(id, op("GET", list), list));
  list.query = {{"list-type", "2"}, {"prefix", "te"}};
  EXPECT_FALSE(authorize(id, op("GET", list), list));
  // ListBuckets needs some list grant.
  EXPECT_TRUE(authorize(id, op("GET", target("", "")), target("", "")));
  Identity writer{"W", "S", {Grant{"data", "", false, true, false, false}}};
  EXPECT_FALSE(authorize(writer, op("GET", target("", "")), target("", "")));
  EXPECT_TRUE(authorize(writer, op("PUT", target("data", "")), target("data", "")));
}

}  // namespace
}  // namespace tagd::auth
