// The notify.config_file parser. Strict: an unknown field is an error (a typo in a filter
// would otherwise silently widen it to every event).
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <stdexcept>

#include "tagd/notify/settings.hpp"

namespace tagd::notify {

namespace {

using Json = nlohmann::json;

[[noreturn]] void bad(const std::string& where, const std::string& why) {
  throw std::runtime_error(where + ": " + why);
}

void only_fields(const Json& j, const std::string& where, std::initializer_list<const char*> allowed) {
  if (!j.is_object()) bad(where, "must be an object");
  for (const auto& [name, value] : j.items()) {
    bool known = false;
    for (const char* a : allowed) known = known || name == a;
    if (!known) bad(where, "unknown field '" + name + "'");
  }
}

std::string text(const Json& j, const char* field, const std::string& where, bool required = false) {
  if (!j.contains(field)) {
    if (required) bad(where, std::string("missing field '") + field + "'");
    return {};
  }
  if (!j[field].is_string()) bad(where + "." + field, "must be a string");
  return j[field].get<std::string>();
}

std::uint64_t number(const Json& j, const char* field, const std::string& where, std::uint64_t fallback,
                     std::uint64_t min, std::uint64_t max) {
  if (!j.contains(field)) return fallback;
  if (!j[field].is_number_unsigned()) bad(where + "." + field, "must be a non-negative integer");
  auto v = j[field].get<std::uint64_t>();
  if (v < min || v > max) {
    bad(where + "." + field, "out of range [" + std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  return v;
}

std::vector<std::string> strings(const Json& j, const char* field, const std::string& where) {
  std::vector<std::string> out;
  if (!j.contains(field)) return out;
  if (!j[field].is_array()) bad(where + "." + field, "must be an array of strings");
  for (const auto& v : j[field]) {
    if (!v.is_string()) bad(where + "." + field, "must be an array of strings");
    out.push_back(v.get<std::string>());
  }
  return out;
}

Endpoint parse_endpoint(const Json& j, const std::string& where) {
  only_fields(j, where, {"name", "url", "auth", "hmac_secret", "hmac_header", "ca_file", "tls_verify", "filter"});
  Endpoint e;
  e.url = text(j, "url", where, true);
  if (e.url.rfind("http://", 0) != 0 && e.url.rfind("https://", 0) != 0) {
    bad(where + ".url", "must start with http:// or https://");
  }
  e.name = j.contains("name") ? text(j, "name", where) : e.url;
  if (e.name.empty() || e.name.find('\0') != std::string::npos) bad(where + ".name", "must be non-empty, no NUL");
  if (j.contains("auth")) {
    const auto& a = j["auth"];
    const std::string aw = where + ".auth";
    only_fields(a, aw, {"type", "token", "username", "password"});
    const std::string type = text(a, "type", aw, true);
    if (type == "bearer") {
      e.auth = Endpoint::Auth::kBearer;
      e.token = text(a, "token", aw, true);
    } else if (type == "basic") {
      e.auth = Endpoint::Auth::kBasic;
      e.username = text(a, "username", aw, true);
      e.password = text(a, "password", aw);
    } else if (type != "none") {
      bad(aw + ".type", "must be bearer, basic or none");
    }
  }
  e.hmac_secret = text(j, "hmac_secret", where);
  if (j.contains("hmac_header")) e.hmac_header = text(j, "hmac_header", where);
  if (e.hmac_header.empty()) bad(where + ".hmac_header", "must not be empty");
  e.ca_file = text(j, "ca_file", where);
  if (j.contains("tls_verify")) {
    if (!j["tls_verify"].is_boolean()) bad(where + ".tls_verify", "must be true or false");
    e.tls_verify = j["tls_verify"].get<bool>();
  }
  if (j.contains("filter")) {
    const auto& f = j["filter"];
    const std::string fw = where + ".filter";
    only_fields(f, fw, {"buckets", "prefix", "suffix", "events"});
    e.filter.buckets = strings(f, "buckets", fw);
    e.filter.prefix = text(f, "prefix", fw);
    e.filter.suffix = text(f, "suffix", fw);
    for (const auto& name : strings(f, "events", fw)) {
      auto type = event_type_from_name(name);
      if (!type) bad(fw + ".events", "unknown event '" + name + "'");
      e.filter.events.push_back(*type);
    }
  }
  return e;
}

}  // namespace

Settings parse_settings(std::string_view json_text, const std::string& default_outbox_path) {
  Json j = Json::parse(json_text, nullptr, false);
  if (j.is_discarded()) bad("notify config", "not valid JSON");
  only_fields(j, "notify config",
              {"endpoints", "outbox_path", "max_outbox_events", "when_full", "batch_size", "max_attempts",
               "retry_base_ms", "retry_max_ms", "timeout_ms", "max_dead_letters"});
  Settings s;
  if (!j.contains("endpoints") || !j["endpoints"].is_array()) bad("notify config", "'endpoints' must be an array");
  std::set<std::string> names;
  for (std::size_t i = 0; i < j["endpoints"].size(); ++i) {
    auto e = parse_endpoint(j["endpoints"][i], "endpoints[" + std::to_string(i) + "]");
    if (!names.insert(e.name).second) bad("endpoints[" + std::to_string(i) + "].name", "duplicate '" + e.name + "'");
    s.endpoints.push_back(std::move(e));
  }
  s.outbox_path = j.contains("outbox_path") ? text(j, "outbox_path", "notify config") : default_outbox_path;
  if (s.outbox_path.empty()) bad("notify config.outbox_path", "must not be empty");
  s.max_outbox_events = number(j, "max_outbox_events", "notify config", s.max_outbox_events, 1, 1ull << 40);
  if (j.contains("when_full")) {
    auto w = text(j, "when_full", "notify config");
    if (w == "reject")
      s.when_full = WhenFull::kReject;
    else if (w == "drop")
      s.when_full = WhenFull::kDrop;
    else
      bad("notify config.when_full", "must be reject or drop");
  }
  s.batch_size = number(j, "batch_size", "notify config", s.batch_size, 1, 10000);
  s.max_attempts = static_cast<unsigned>(number(j, "max_attempts", "notify config", s.max_attempts, 1, 1000));
  s.retry_base =
      std::chrono::milliseconds(number(j, "retry_base_ms", "notify config", s.retry_base.count(), 1, 3'600'000));
  s.retry_max =
      std::chrono::milliseconds(number(j, "retry_max_ms", "notify config", s.retry_max.count(), 1, 86'400'000));
  if (s.retry_max < s.retry_base) bad("notify config.retry_max_ms", "must be >= retry_base_ms");
  s.timeout = std::chrono::milliseconds(number(j, "timeout_ms", "notify config", s.timeout.count(), 1, 600'000));
  s.max_dead_letters = number(j, "max_dead_letters", "notify config", s.max_dead_letters, 0, 1ull << 40);
  return s;
}

Settings load_settings(const std::string& path, const std::string& default_outbox_path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::stringstream text;
  text << in.rdbuf();
  try {
    return parse_settings(text.str(), default_outbox_path);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
}

}  // namespace tagd::notify
