// The delivery thread against a scripted transport: batching, retries with backoff,
// dead letters, and the headers a receiver checks. Real time with millisecond delays (the
// schedule itself is tested on a manual clock in backoff_test.cpp).
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "tagd/auth/hashing.hpp"
#include "tagd/core/metrics.hpp"
#include "tagd/notify/notifier.hpp"
#include "tagd/notify/outbox.hpp"
#include "support/wait_for.hpp"

namespace tagd::notify {
namespace {

using namespace std::chrono;

struct Post {
  std::string endpoint;
  std::string body;
  HeaderPairs headers;
  steady_clock::time_point at;
};

class ScriptedTransport final : public Transport {
 public:
  // The first `fail_first` POSTs fail; every POST is recorded.
  explicit ScriptedTransport(int fail_first = 0) : fail_first_(fail_first) {}
  Status post(const Endpoint& endpoint, const std::string& body, const HeaderPairs& headers,
              milliseconds timeout) override {
    std::lock_guard lock(mu_);
    EXPECT_EQ(timeout.count(), 10000);
    posts_.push_back({endpoint.name, body, headers, steady_clock::now()});
    if (fail_first_-- > 0) return Status(ErrorCode::kBadGateway, "webhook answered 500");
    return Status::ok();
  }
  std::vector<Post> posts() {
    std::lock_guard lock(mu_);
    return posts_;
  }
  // Returns how many POSTs were made before (all of them answered by the old script).
  std::size_t set_fail_first(int n) {
    std::lock_guard lock(mu_);
    fail_first_ = n;
    return posts_.size();
  }

 private:
  std::mutex mu_;
  int fail_first_;
  std::vector<Post> posts_;
};

using tagd::testing::wait_for;

std::size_t events_in(const std::vector<Post>& posts, bool successful_only, int failed_posts) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < posts.size(); ++i) {
    if (successful_only && static_cast<int>(i) < failed_posts) continue;
    n += nlohmann::json::parse(posts[i].body)["events"].size();
  }
  return n;
}

class DeliveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("tagd-delivery-" + std::to_string(::getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    settings_.outbox_path = dir_.string();
    settings_.batch_size = 4;
    settings_.max_attempts = 3;
    settings_.retry_base = milliseconds(40);
    settings_.retry_max = milliseconds(400);
    Endpoint e;
    e.name = "hook";
    e.url = "http://127.0.0.1:1/";
    settings_.endpoints.push_back(e);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::vector<Event> events(int n, const std::string& prefix = "k") {
    std::vector<Event> out;
    for (int i = 0; i < n; ++i)
      out.push_back({EventType::kCreatedPut, "b", prefix + std::to_string(i), 1, "e", {}, {}});
    return out;
  }

  std::filesystem::path dir_;
  Settings settings_;
  SystemClock clock_;
};

TEST_F(DeliveryTest, DeliversEveryEventInBatchesInOrder) {
  auto transport = std::make_unique<ScriptedTransport>();
  auto* t = transport.get();
  auto n = Notifier::start(settings_, std::move(transport), clock_);
  ASSERT_TRUE(n->record_sync(events(10)));
  ASSERT_TRUE(wait_for([&] { return n->outbox().backlog() == 0; }));
  auto posts = t->posts();
  ASSERT_GE(posts.size(), 3u);  // 10 events, batches of at most 4
  std::vector<std::string> keys;
  for (const auto& p : posts) {
    auto j = nlohmann::json::parse(p.body);
    EXPECT_LE(j["events"].size(), 4u);
    for (const auto& e : j["events"]) keys.push_back(e["object"]["key"]);
  }
  ASSERT_EQ(keys.size(), 10u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(keys[i], "k" + std::to_string(i));
}

TEST_F(DeliveryTest, RetriesWithGrowingDelaysUntilTheReceiverAnswers) {
  auto transport = std::make_unique<ScriptedTransport>(2);
  auto* t = transport.get();
  const auto failures_before = metrics().notify_delivery_failures.get();
  auto n = Notifier::start(settings_, std::move(transport), clock_);
  ASSERT_TRUE(n->record_sync(events(1)));
  ASSERT_TRUE(wait_for([&] { return n->outbox().backlog() == 0; }));
  auto posts = t->posts();
  ASSERT_EQ(posts.size(), 3u);              // two failures, then the success
  EXPECT_EQ(posts[0].body, posts[2].body);  // the same batch, unchanged (same event id)
  // Backoff: >= base/2 after the first failure, >= base after the second.
  EXPECT_GE(posts[1].at - posts[0].at, milliseconds(20));
  EXPECT_GE(posts[2].at - posts[1].at, milliseconds(40));
  EXPECT_EQ(metrics().notify_delivery_failures.get() - failures_before, 2u);
  EXPECT_EQ(n->outbox().dead_letter_count(), 0u);
}

TEST_F(DeliveryTest, GivesUpAfterMaxAttemptsIntoDeadLetters) {
  auto transport = std::make_unique<ScriptedTransport>(3);  // = max_attempts
  auto* t = transport.get();
  const auto dead_before = metrics().notify_dead_lettered.get();
  auto n = Notifier::start(settings_, std::move(transport), clock_);
  ASSERT_TRUE(n->record_sync(events(2, "lost")));
  // The gauge is set after the outbox moved the events, on the delivery thread: wait for
  // both, or the check races that thread (it did once under ASan).
  ASSERT_TRUE(wait_for([&] {
    return n->outbox().dead_letter_count() == 2 && metrics().notify_dead_letters.get() == 2;
  }));
  EXPECT_EQ(n->outbox().backlog(), 0u);
  EXPECT_EQ(metrics().notify_dead_lettered.get() - dead_before, 2u);
  // The next events are delivered normally (the retry state starts afresh).
  ASSERT_TRUE(n->record_sync(events(1, "next")));
  ASSERT_TRUE(wait_for([&] { return n->outbox().backlog() == 0 && t->posts().size() == 4; }));
  EXPECT_NE(t->posts().back().body.find("next0"), std::string::npos);
}

TEST_F(DeliveryTest, PendingEventsAreDeliveredByTheNextProcess) {
  settings_.max_attempts = 1000;  // nothing becomes a dead letter while the receiver is down
  {
    auto transport = std::make_unique<ScriptedTransport>(1000);  // the receiver is down
    auto n = Notifier::start(settings_, std::move(transport), clock_);
    ASSERT_TRUE(n->record_sync(events(5)));
    EXPECT_EQ(n->outbox().backlog(), 5u);
  }
  // The receiver is still down when the new process starts, so the backlog it found stays
  // there to see (a single failing POST left a window of one retry delay: too short under ASan).
  auto transport = std::make_unique<ScriptedTransport>(1000);
  auto* t = transport.get();
  auto n = Notifier::start(settings_, std::move(transport), clock_);
  EXPECT_EQ(metrics().notify_outbox_events.get(), 5);
  const auto failed_posts = t->set_fail_first(0);  // the receiver is back
  ASSERT_TRUE(wait_for([&] { return n->outbox().backlog() == 0; }));
  EXPECT_EQ(events_in(t->posts(), true, static_cast<int>(failed_posts)), 5u);
}

TEST_F(DeliveryTest, FiltersChooseTheEndpoints) {
  Endpoint other;
  other.name = "metadata-only";
  other.url = "http://127.0.0.1:1/";
  other.filter.suffix = ".metadata";
  settings_.endpoints.push_back(other);
  auto transport = std::make_unique<ScriptedTransport>();
  auto* t = transport.get();
  auto n = Notifier::start(settings_, std::move(transport), clock_);
  EXPECT_TRUE(n->wants("b", "x/.metadata", EventType::kDeleted));
  ASSERT_TRUE(n->record_sync({{EventType::kCreatedPut, "b", "run/.metadata", 3, "e", {}, {}},
                              {EventType::kCreatedPut, "b", "run/shard-0", 3, "e", {}, {}}}));
  ASSERT_TRUE(wait_for([&] { return n->outbox().backlog() == 0; }));
  std::size_t to_hook = 0, to_other = 0;
  for (const auto& p : t->posts()) {
    auto j = nlohmann::json::parse(p.body);
    for (const auto& e : j["events"]) {
      if (p.endpoint == "hook") ++to_hook;
      if (p.endpoint == "metadata-only") {
        ++to_other;
        EXPECT_EQ(e["object"]["key"], "run/.metadata");
      }
    }
  }
  EXPECT_EQ(to_hook, 2u);
  EXPECT_EQ(to_other, 1u);
}

TEST_F(DeliveryTest, FullOutboxRejectsOrDrops) {
  settings_.max_outbox_events = 3;
  settings_.max_attempts = 1000;
  auto transport = std::make_unique<ScriptedTransport>(1000);  // nothing drains
  {
    auto n = Notifier::start(settings_, std::move(transport), clock_);
    EXPECT_TRUE(n->admit());
    ASSERT_TRUE(n->record_sync(events(3)));
    const auto rejected = metrics().notify_rejected_writes.get();
    Status s = n->admit();
    EXPECT_EQ(s.code(), ErrorCode::kSlowDown);
    EXPECT_EQ(metrics().notify_rejected_writes.get(), rejected + 1);
  }
  settings_.when_full = WhenFull::kDrop;
  auto n = Notifier::start(settings_, std::make_unique<ScriptedTransport>(1000), clock_);
  EXPECT_TRUE(n->admit());  // drop: writes go through
  const auto dropped = metrics().notify_dropped_events.get();
  ASSERT_TRUE(n->record_sync(events(2)));
  EXPECT_EQ(metrics().notify_dropped_events.get(), dropped + 2);
  EXPECT_EQ(n->outbox().backlog(), 3u);
}

TEST(NotifyHeaders, HmacBearerAndBasic) {
  Endpoint e;
  e.auth = Endpoint::Auth::kBearer;
  e.token = "tok";
  e.hmac_secret = "key";
  const std::string body = R"({"events":[]})";
  auto h = request_headers(e, body);
  auto find = [&](const std::string& name) {
    for (const auto& [n, v] : h) {
      if (n == name) return v;
    }
    return std::string();
  };
  EXPECT_EQ(find("Content-Type"), "application/json");
  EXPECT_EQ(find("Authorization"), "Bearer tok");
  EXPECT_EQ(find("X-Tagd-Signature"), "sha256=" + auth::to_hex(auth::hmac_sha256("key", body)));
  e.auth = Endpoint::Auth::kBasic;
  e.username = "Aladdin";
  e.password = "open sesame";
  e.hmac_secret.clear();
  h = request_headers(e, body);
  EXPECT_EQ(find("Authorization"), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");  // RFC 7617's example
  EXPECT_EQ(find("X-Tagd-Signature"), "");
}

}  // namespace
}  // namespace tagd::notify
