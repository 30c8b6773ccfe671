#include "tagd/notify/event.hpp"

#include <nlohmann/json.hpp>
#include <random>

namespace tagd::notify {

namespace {
constexpr struct {
  EventType type;
  const char* name;
} kNames[] = {
    {EventType::kCreatedPut, "OBJECT_CREATED_PUT"},
    {EventType::kCreatedMultipart, "OBJECT_CREATED_MULTIPART"},
    {EventType::kCreatedCopy, "OBJECT_CREATED_COPY"},
    {EventType::kDeleted, "OBJECT_DELETED"},
};
}  // namespace

const char* event_name(EventType type) noexcept {
  for (const auto& n : kNames) {
    if (n.type == type) return n.name;
  }
  return "OBJECT_UNKNOWN";
}

std::optional<EventType> event_type_from_name(std::string_view name) noexcept {
  for (const auto& n : kNames) {
    if (name == n.name) return n.type;
  }
  return std::nullopt;
}

std::string rfc3339(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto ms = duration_cast<milliseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000 - (ms % 1000 < 0 ? 1 : 0));
  const int millis = static_cast<int>(((ms % 1000) + 1000) % 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
  return buf;
}

std::string new_event_id() {
  thread_local std::mt19937_64 generator{[] {
    std::random_device rd;
    return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  }()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(32, '0');
  for (int half = 0; half < 2; ++half) {
    std::uint64_t v = generator();
    for (int i = 0; i < 16; ++i, v >>= 4) id[half * 16 + i] = kHex[v & 15];
  }
  return id;
}

std::string event_json(const Event& event) {
  // Field order follows Tigris's documented payload; eventId is tagd's addition.
  nlohmann::ordered_json j;
  j["eventVersion"] = "1";
  j["eventSource"] = "tigris";
  j["eventName"] = event_name(event.type);
  j["eventTime"] = rfc3339(event.time);
  j["eventId"] = event.id;
  j["bucket"] = event.bucket;
  j["object"] = {{"key", event.key}, {"size", event.size}, {"eTag", event.etag}};
  // Keys are bytes, not always UTF-8: replace what JSON cannot carry rather than fail.
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

std::string batch_payload(const std::vector<std::string>& encoded_events) {
  std::size_t size = 16;
  for (const auto& e : encoded_events) size += e.size() + 1;
  std::string out;
  out.reserve(size);
  out += "{\"events\":[";
  for (std::size_t i = 0; i < encoded_events.size(); ++i) {
    if (i != 0) out += ',';
    out += encoded_events[i];
  }
  out += "]}";
  return out;
}

}  // namespace tagd::notify
