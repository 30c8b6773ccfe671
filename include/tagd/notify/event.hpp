#pragma once
// One object notification as tagd records and delivers it: Tigris's webhook shape
// (eventVersion "1", eventSource "tigris", eventName, eventTime, bucket, object {key, size,
// eTag}) plus an eventId, so a receiver can drop the duplicates at-least-once delivery
// produces. Pure: the caller supplies the time and the id.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tagd::notify {

enum class EventType { kCreatedPut, kCreatedMultipart, kCreatedCopy, kDeleted };

// "OBJECT_CREATED_PUT", "OBJECT_CREATED_MULTIPART", "OBJECT_CREATED_COPY", "OBJECT_DELETED".
const char* event_name(EventType type) noexcept;
std::optional<EventType> event_type_from_name(std::string_view name) noexcept;

struct Event {
  EventType type = EventType::kCreatedPut;
  std::string bucket;
  std::string key;
  std::uint64_t size = 0;
  std::string etag;  // without the quotes; empty for deletions
  std::chrono::system_clock::time_point time;
  std::string id;  // unique per event (new_event_id())
};

// RFC 3339 in UTC with milliseconds: "2026-12-05T19:57:28.123Z".
std::string rfc3339(std::chrono::system_clock::time_point t);

// 32 lower-case hex characters from a per-thread generator seeded by std::random_device.
std::string new_event_id();

// One element of the "events" array, as compact JSON.
std::string event_json(const Event& event);

// {"events":[...]} around already-encoded elements (what the outbox stores).
std::string batch_payload(const std::vector<std::string>& encoded_events);

}  // namespace tagd::notify
