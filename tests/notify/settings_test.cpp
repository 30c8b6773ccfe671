#include "tagd/notify/settings.hpp"

#include <gtest/gtest.h>

namespace tagd::notify {
namespace {

TEST(NotifySettings, ParsesEndpointsAndLimits) {
  auto s = parse_settings(R"({
    "endpoints": [
      {"name": "a", "url": "https://hooks.example/x", "auth": {"type": "bearer", "token": "t0k"},
       "hmac_secret": "s3cret", "filter": {"buckets": ["ckpt"], "prefix": "run1/", "suffix": ".metadata",
                                           "events": ["OBJECT_CREATED_PUT", "OBJECT_DELETED"]}},
      {"url": "http://127.0.0.1:9000/", "auth": {"type": "basic", "username": "u", "password": "p"}}
    ],
    "max_outbox_events": 10, "when_full": "drop", "batch_size": 5, "max_attempts": 3,
    "retry_base_ms": 20, "retry_max_ms": 400, "timeout_ms": 2000, "max_dead_letters": 7})",
                          "/tmp/default-outbox");
  ASSERT_EQ(s.endpoints.size(), 2u);
  EXPECT_EQ(s.endpoints[0].name, "a");
  EXPECT_EQ(s.endpoints[0].auth, Endpoint::Auth::kBearer);
  EXPECT_EQ(s.endpoints[0].token, "t0k");
  EXPECT_EQ(s.endpoints[0].hmac_header, "X-Tagd-Signature");
  EXPECT_EQ(s.endpoints[0].filter.events.size(), 2u);
  EXPECT_EQ(s.endpoints[1].name, "http://127.0.0.1:9000/");  // the URL when unnamed
  EXPECT_EQ(s.endpoints[1].auth, Endpoint::Auth::kBasic);
  EXPECT_EQ(s.outbox_path, "/tmp/default-outbox");
  EXPECT_EQ(s.max_outbox_events, 10u);
  EXPECT_EQ(s.when_full, WhenFull::kDrop);
  EXPECT_EQ(s.batch_size, 5u);
  EXPECT_EQ(s.max_attempts, 3u);
  EXPECT_EQ(s.retry_base.count(), 20);
  EXPECT_EQ(s.retry_max.count(), 400);
  EXPECT_EQ(s.timeout.count(), 2000);
  EXPECT_EQ(s.max_dead_letters, 7u);
}

TEST(NotifySettings, DefaultsMatchTigrisTimeout) {
  auto s = parse_settings(R"({"endpoints": []})", "/x");
  EXPECT_EQ(s.timeout.count(), 10000);
  EXPECT_EQ(s.when_full, WhenFull::kReject);
}

TEST(NotifySettings, RefusesWhatWouldSilentlyWidenOrBreakDelivery) {
  const char* bad[] = {
      R"({"endpoints": [{"url": "http://h/", "filter": {"prefx": "a/"}}]})",  // typo in a filter
      R"({"endpoints": [{"url": "ftp://h/"}]})",
      R"({"endpoints": [{"url": "http://h/", "filter": {"events": ["OBJECT_CREATED"]}}]})",
      R"({"endpoints": [{"url": "http://h/", "auth": {"type": "bearer"}}]})",
      R"({"endpoints": [{"name": "x", "url": "http://h/"}, {"name": "x", "url": "http://i/"}]})",
      R"({"endpoints": [], "when_full": "block"})",
      R"({"endpoints": [], "retry_base_ms": 100, "retry_max_ms": 10})",
      R"({"endpoints": {}})",
      R"(not json)",
  };
  for (const char* text : bad) {
    EXPECT_THROW(parse_settings(text, "/x"), std::runtime_error) << text;
  }
}

TEST(NotifyFilter, EveryConditionMustHold) {
  Filter f;
  EXPECT_TRUE(f.matches("any", "thing", EventType::kDeleted));  // unset: everything
  f.buckets = {"ckpt", "data"};
  f.prefix = "run1/";
  f.suffix = ".metadata";
  f.events = {EventType::kCreatedCopy};
  EXPECT_TRUE(f.matches("ckpt", "run1/.metadata", EventType::kCreatedCopy));
  EXPECT_FALSE(f.matches("other", "run1/.metadata", EventType::kCreatedCopy));
  EXPECT_FALSE(f.matches("ckpt", "run2/.metadata", EventType::kCreatedCopy));
  EXPECT_FALSE(f.matches("ckpt", "run1/shard-0.distcp", EventType::kCreatedCopy));
  EXPECT_FALSE(f.matches("ckpt", "run1/.metadata", EventType::kCreatedPut));
  EXPECT_FALSE(f.matches("ckpt", "run1", EventType::kCreatedCopy));  // shorter than the prefix
}

}  // namespace
}  // namespace tagd::notify
