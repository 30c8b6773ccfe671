// SIGHUP for notifications (Notifier::reload): endpoints added, removed, retargeted; a
// file that does not load keeps what is in force. Real threads, a transport that answers
// per URL.
#include <gtest/gtest.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "tagd/core/metrics.hpp"
#include "tagd/notify/notifier.hpp"
#include "tagd/notify/outbox.hpp"
#include "support/wait_for.hpp"

namespace tagd::notify {
namespace {

using namespace std::chrono;

struct Post {
  std::string endpoint;
  std::string url;
  std::vector<std::string> keys;
  bool ok = false;
};

// Answers 2xx for URLs in `up`, fails the rest; a URL in `held` blocks its POST until
// release() (a POST in flight during a reload).
class UrlTransport final : public Transport {
 public:
  Status post(const Endpoint& endpoint, const std::string& body, const HeaderPairs&, milliseconds) override {
    std::unique_lock lock(mu_);
    if (held_.count(endpoint.url) > 0) {
      ++waiting_;
      cv_.notify_all();
      cv_.wait(lock, [&] { return held_.count(endpoint.url) == 0; });
      --waiting_;
    }
    Post p{endpoint.name, endpoint.url, {}, up_.count(endpoint.url) > 0};
    const auto j = nlohmann::json::parse(body);
    for (const auto& e : j["events"]) p.keys.push_back(e["object"]["key"]);
    posts_.push_back(p);
    if (!p.ok) return Status(ErrorCode::kBadGateway, "webhook answered 500");
    return Status::ok();
  }
  void set_up(const std::string& url) {
    std::lock_guard lock(mu_);
    up_.insert(url);
  }
  void hold(const std::string& url) {
    std::lock_guard lock(mu_);
    held_.insert(url);
  }
  void release(const std::string& url) {
    std::lock_guard lock(mu_);
    held_.erase(url);
    cv_.notify_all();
  }
  bool wait_until_held(milliseconds limit = milliseconds(5000)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, limit, [&] { return waiting_ > 0; });
  }
  std::vector<Post> posts() {
    std::lock_guard lock(mu_);
    return posts_;
  }
  // Keys delivered (2xx) to an endpoint name.
  std::multiset<std::string> delivered(const std::string& endpoint) {
    std::multiset<std::string> out;
    for (const auto& p : posts()) {
      if (p.ok && p.endpoint == endpoint) out.insert(p.keys.begin(), p.keys.end());
    }
    return out;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::set<std::string> up_, held_;
  int waiting_ = 0;
  std::vector<Post> posts_;
};

using tagd::testing::wait_for;

Event put(const std::string& key) {
  return {EventType::kCreatedPut, "b", key, 1, "e", {}, {}};
}

Endpoint endpoint(const std::string& name, const std::string& url) {
  Endpoint e;
  e.name = name;
  e.url = url;
  return e;
}

constexpr const char* kUp = "http://127.0.0.1:1/up";
constexpr const char* kDown = "http://127.0.0.1:1/down";
constexpr const char* kOther = "http://127.0.0.1:1/other";

class ReloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("tagd-reload-" + std::to_string(::getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    settings_.outbox_path = (dir_ / "outbox").string();
    settings_.max_attempts = 1000;
    // Long enough that a retry inside a test can only come from a reload resetting it.
    settings_.retry_base = milliseconds(60000);
    settings_.retry_max = milliseconds(60000);
    auto t = std::make_unique<UrlTransport>();
    transport_ = t.get();
    transport_->set_up(kUp);
    transport_->set_up(kOther);
    owned_transport_ = std::move(t);
  }
  void TearDown() override {
    notifier_.reset();
    std::filesystem::remove_all(dir_);
  }
  Notifier& start() {
    notifier_ = Notifier::start(settings_, std::move(owned_transport_), clock_);
    return *notifier_;
  }
  Settings with(std::vector<Endpoint> endpoints) const {
    Settings s = settings_;
    s.endpoints = std::move(endpoints);
    return s;
  }

  std::filesystem::path dir_;
  Settings settings_;
  SystemClock clock_;
  UrlTransport* transport_ = nullptr;
  std::unique_ptr<UrlTransport> owned_transport_;
  std::unique_ptr<Notifier> notifier_;
};

TEST_F(ReloadTest, ANewUrlIsTriedAtOnceWithAFreshAttemptCount) {
  settings_.endpoints = {endpoint("hook", kDown)};
  auto& n = start();
  ASSERT_TRUE(n.record_sync({put("k1")}));
  ASSERT_TRUE(wait_for([&] { return transport_->posts().size() == 1; }));  // failed; next try in >= 30 s
  const auto ok_before = metrics().notify_reloads_ok.get();
  ASSERT_TRUE(n.reload(with({endpoint("hook", kUp)})));
  EXPECT_EQ(metrics().notify_reloads_ok.get(), ok_before + 1);
  // Same name: same queue, delivered to the new URL well before the old backoff ends.
  ASSERT_TRUE(wait_for([&] { return n.outbox().backlog() == 0; }));
  auto posts = transport_->posts();
  ASSERT_EQ(posts.size(), 2u);
  EXPECT_EQ(posts[1].url, kUp);
  EXPECT_EQ(posts[1].keys, std::vector<std::string>{"k1"});
}

TEST_F(ReloadTest, UnchangedTargetKeepsItsBackoff) {
  settings_.endpoints = {endpoint("hook", kDown)};
  auto& n = start();
  ASSERT_TRUE(n.record_sync({put("k1")}));
  ASSERT_TRUE(wait_for([&] { return transport_->posts().size() == 1; }));
  // Only a filter changed: the receiver that failed is not hit again early.
  auto e = endpoint("hook", kDown);
  e.filter.prefix = "k";
  ASSERT_TRUE(n.reload(with({e})));
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(transport_->posts().size(), 1u);
  EXPECT_EQ(n.outbox().backlog(), 1u);
  EXPECT_FALSE(n.wants("b", "x", EventType::kCreatedPut));  // the new filter is in force
  EXPECT_TRUE(n.wants("b", "k2", EventType::kCreatedPut));
}

TEST_F(ReloadTest, ARemovedEndpointsQueueBecomesDeadLettersAndAnAddedOneGetsNewEvents) {
  settings_.endpoints = {endpoint("keep", kUp), endpoint("gone", kDown)};
  auto& n = start();
  ASSERT_TRUE(n.record_sync({put("a"), put("b"), put("c")}));
  ASSERT_TRUE(wait_for([&] { return n.outbox().backlog() == 3; }));  // keep drained, gone did not
  const auto dead_before = metrics().notify_dead_lettered.get();
  ASSERT_TRUE(n.reload(with({endpoint("keep", kUp), endpoint("added", kOther)})));
  n.wait_for_retired();
  EXPECT_EQ(n.outbox().backlog("gone"), 0u);
  auto dead = n.outbox().dead_letters("gone", 10);
  ASSERT_TRUE(dead);
  EXPECT_EQ(dead->size(), 3u);
  EXPECT_EQ(metrics().notify_dead_lettered.get(), dead_before + 3);
  EXPECT_EQ(metrics().notify_endpoints.get(), 2);
  EXPECT_EQ(n.settings()->endpoints.size(), 2u);

  ASSERT_TRUE(n.record_sync({put("d")}));
  ASSERT_TRUE(wait_for([&] { return n.outbox().backlog() == 0; }));
  EXPECT_EQ(transport_->delivered("keep"), (std::multiset<std::string>{"a", "b", "c", "d"}));
  EXPECT_EQ(transport_->delivered("added"), (std::multiset<std::string>{"d"}));
  for (const auto& p : transport_->posts()) {
    if (p.endpoint == "gone") {
      EXPECT_EQ(p.keys.size(), 3u);  // only the first, failed try
    }
  }
}

TEST_F(ReloadTest, RemovedWithAPostInFlightThenAddedBackLosesNothing) {
  settings_.endpoints = {endpoint("hook", kDown)};
  transport_->hold(kDown);
  auto& n = start();
  ASSERT_TRUE(n.record_sync({put("a")}));
  ASSERT_TRUE(transport_->wait_until_held());
  // Removed while its POST hangs, then configured again (now reachable) before that POST
  // returned: the queue must not be dead-lettered, and only one thread may deliver it.
  ASSERT_TRUE(n.reload(with({})));
  ASSERT_TRUE(n.reload(with({endpoint("hook", kUp)})));
  ASSERT_TRUE(n.record_sync({put("b")}));
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_TRUE(transport_->delivered("hook").empty());  // the new thread waits for the old one
  transport_->release(kDown);
  n.wait_for_retired();
  ASSERT_TRUE(wait_for([&] { return n.outbox().backlog() == 0; }));
  EXPECT_EQ(transport_->delivered("hook"), (std::multiset<std::string>{"a", "b"}));
  EXPECT_EQ(n.outbox().dead_letter_count(), 0u);
}

TEST_F(ReloadTest, AFileThatDoesNotLoadKeepsTheEndpointsInForce) {
  settings_.endpoints = {endpoint("hook", kUp)};
  auto& n = start();
  std::filesystem::create_directories(dir_);
  const auto path = (dir_ / "notify.json").string();
  const auto failed_before = metrics().notify_reloads_failed.get();
  { std::ofstream(path) << R"({"endpoints": [{"name": "hook", "url": "ftp://nope"}]})"; }
  Status s = n.reload(path, settings_.outbox_path);
  EXPECT_FALSE(s);
  EXPECT_NE(s.message().find("http:// or https://"), std::string::npos) << s.message();
  EXPECT_FALSE(n.reload((dir_ / "missing.json").string(), settings_.outbox_path));
  // Another outbox_path: refused whole (the outbox stays open until a restart).
  {
    std::ofstream(path) << R"({"endpoints": [{"name": "other", "url": "http://127.0.0.1:1/other"}],
                              "outbox_path": "/elsewhere"})";
  }
  s = n.reload(path, settings_.outbox_path);
  EXPECT_FALSE(s);
  EXPECT_NE(s.message().find("restart"), std::string::npos) << s.message();
  EXPECT_EQ(metrics().notify_reloads_failed.get(), failed_before + 3);
  ASSERT_EQ(n.settings()->endpoints.size(), 1u);
  EXPECT_EQ(n.settings()->endpoints[0].url, kUp);
  ASSERT_TRUE(n.record_sync({put("still")}));
  ASSERT_TRUE(wait_for([&] { return n.outbox().backlog() == 0; }));
  EXPECT_EQ(transport_->delivered("hook"), (std::multiset<std::string>{"still"}));
  // A good file afterwards is applied (the default outbox path matches the one in use).
  { std::ofstream(path) << R"({"endpoints": [{"name": "other", "url": "http://127.0.0.1:1/other"}]})"; }
  ASSERT_TRUE(n.reload(path, settings_.outbox_path));
  EXPECT_EQ(n.settings()->endpoints[0].name, "other");
}

}  // namespace
}  // namespace tagd::notify
