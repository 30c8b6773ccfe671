#pragma once
// What notifications are sent where: the file named by notify.config_file (JSON), parsed
// at start-up and again on SIGHUP, like the credentials file (errors throw
// std::runtime_error naming the field; nothing on the data path throws).
//
//   {"endpoints": [{"name": "pipeline", "url": "https://hooks.example/tagd",
//                   "auth": {"type": "bearer", "token": "..."},      (or basic: username/password)
//                   "hmac_secret": "...", "hmac_header": "X-Tagd-Signature",
//                   "ca_file": "/etc/ssl/extra.pem", "tls_verify": true,
//                   "filter": {"buckets": ["ckpt"], "prefix": "run1/", "suffix": ".metadata",
//                              "events": ["OBJECT_CREATED_PUT", "OBJECT_CREATED_COPY"]}}],
//    "outbox_path": "/var/tmp/tagd-cache/notify.v1", "max_outbox_events": 1000000,
//    "when_full": "reject", "batch_size": 100, "max_attempts": 12, "retry_base_ms": 1000,
//    "retry_max_ms": 300000, "timeout_ms": 10000, "max_dead_letters": 100000}
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tagd/notify/event.hpp"

namespace tagd::notify {

struct Filter {
  std::vector<std::string> buckets;  // empty: every bucket
  std::string prefix;
  std::string suffix;
  std::vector<EventType> events;  // empty: every event type

  bool matches(std::string_view bucket, std::string_view key, EventType type) const noexcept;
};

struct Endpoint {
  std::string name;  // identifies its queue in the outbox: renaming an endpoint orphans its backlog
  std::string url;   // http:// or https://
  enum class Auth { kNone, kBearer, kBasic } auth = Auth::kNone;
  std::string token;  // bearer
  std::string username, password;
  std::string hmac_secret;  // empty: no signature header
  std::string hmac_header = "X-Tagd-Signature";
  std::string ca_file;
  bool tls_verify = true;
  Filter filter;
};

// When the outbox holds max_outbox_events: refuse new writes that would produce an event
// (503 SlowDown before anything is forwarded, so no event is ever lost), or forward them
// and drop their events (counted, logged).
enum class WhenFull { kReject, kDrop };

struct Settings {
  std::vector<Endpoint> endpoints;
  std::string outbox_path;  // default: <cache.disk_path>/notify.v1
  std::uint64_t max_outbox_events = 1'000'000;
  WhenFull when_full = WhenFull::kReject;
  std::size_t batch_size = 100;
  unsigned max_attempts = 12;  // then the batch's events are dead letters
  std::chrono::milliseconds retry_base{1000};
  std::chrono::milliseconds retry_max{300000};
  std::chrono::milliseconds timeout{10000};
  std::uint64_t max_dead_letters = 100'000;  // the oldest are erased beyond it
};

// Parses the file's text. `default_outbox_path` applies when the file names none.
// Throws std::runtime_error.
Settings parse_settings(std::string_view json_text, const std::string& default_outbox_path);
Settings load_settings(const std::string& path, const std::string& default_outbox_path);

}  // namespace tagd::notify
