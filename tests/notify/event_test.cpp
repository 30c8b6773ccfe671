#include "tagd/notify/event.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>

namespace tagd::notify {
namespace {

using namespace std::chrono;

TEST(NotifyEvent, Rfc3339IsUtcWithMilliseconds) {
  // 2026-12-05T19:57:28.123Z
  system_clock::time_point t{milliseconds(1796500648123)};
  EXPECT_EQ(rfc3339(t), "2026-12-05T19:57:28.123Z");
  EXPECT_EQ(rfc3339(system_clock::time_point{}), "1970-01-01T00:00:00.000Z");
}

TEST(NotifyEvent, NamesRoundTrip) {
  for (auto t : {EventType::kCreatedPut, EventType::kCreatedMultipart, EventType::kCreatedCopy, EventType::kDeleted}) {
    EXPECT_EQ(event_type_from_name(event_name(t)), t);
  }
  EXPECT_EQ(event_type_from_name("OBJECT_CREATED"), std::nullopt);
}

TEST(NotifyEvent, JsonHasTigrisShapeAndAnId) {
  Event e{EventType::kCreatedMultipart,
          "ckpt",
          "run1/step-100/.metadata",
          4096,
          "abc-3",
          system_clock::time_point{milliseconds(1000)},
          "0123456789abcdef0123456789abcdef"};
  auto j = nlohmann::json::parse(event_json(e));
  EXPECT_EQ(j["eventVersion"], "1");
  EXPECT_EQ(j["eventSource"], "tigris");
  EXPECT_EQ(j["eventName"], "OBJECT_CREATED_MULTIPART");
  EXPECT_EQ(j["eventTime"], "1970-01-01T00:00:01.000Z");
  EXPECT_EQ(j["eventId"], "0123456789abcdef0123456789abcdef");
  EXPECT_EQ(j["bucket"], "ckpt");
  EXPECT_EQ(j["object"]["key"], "run1/step-100/.metadata");
  EXPECT_EQ(j["object"]["size"], 4096);
  EXPECT_EQ(j["object"]["eTag"], "abc-3");
}

TEST(NotifyEvent, KeysThatAreNotUtf8DoNotBreakTheJson) {
  Event e{EventType::kDeleted, "b", std::string("bad\xff\xfe", 5), 0, "", {}, "id"};
  auto j = nlohmann::json::parse(event_json(e));
  EXPECT_EQ(j["object"]["key"].get<std::string>().substr(0, 3), "bad");
}

TEST(NotifyEvent, BatchPayloadWrapsEvents) {
  auto j = nlohmann::json::parse(batch_payload({R"({"a":1})", R"({"b":2})"}));
  ASSERT_EQ(j["events"].size(), 2u);
  EXPECT_EQ(j["events"][1]["b"], 2);
  EXPECT_EQ(batch_payload({}), R"({"events":[]})");
}

TEST(NotifyEvent, IdsAreUniqueHex) {
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) {
    auto id = new_event_id();
    ASSERT_EQ(id.size(), 32u);
    ASSERT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos);
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 1000u);
}

}  // namespace
}  // namespace tagd::notify
