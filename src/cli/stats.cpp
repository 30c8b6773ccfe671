#include "tagd/cli/stats.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iomanip>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "tagd/cli/http_get.hpp"

namespace tagd::cli {

namespace {

using Json = nlohmann::json;
using Labels = std::map<std::string, std::string>;

bool name_char(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (!first && c >= '0' && c <= '9');
}

Status bad_line(std::string_view line, std::string_view why) {
  return Status(ErrorCode::kInvalidArgument, "metrics: " + std::string(why) + ": '" + std::string(line) + "'");
}

Result<Sample> parse_sample(std::string_view line) {
  Sample s;
  std::size_t i = 0;
  while (i < line.size() && name_char(line[i], i == 0)) ++i;
  if (i == 0) return bad_line(line, "no metric name");
  s.name = std::string(line.substr(0, i));
  if (i < line.size() && line[i] == '{') {
    ++i;
    while (i < line.size() && line[i] != '}') {
      const std::size_t eq = line.find('=', i);
      if (eq == std::string_view::npos || eq + 1 >= line.size() || line[eq + 1] != '"') {
        return bad_line(line, "bad label");
      }
      std::string key(line.substr(i, eq - i));
      std::string value;
      std::size_t j = eq + 2;
      for (; j < line.size() && line[j] != '"'; ++j) {
        if (line[j] == '\\' && j + 1 < line.size()) {
          ++j;
          value.push_back(line[j] == 'n' ? '\n' : line[j]);
        } else {
          value.push_back(line[j]);
        }
      }
      if (j >= line.size()) return bad_line(line, "unterminated label value");
      s.labels.emplace(std::move(key), std::move(value));
      i = j + 1;
      if (i < line.size() && line[i] == ',') ++i;
    }
    if (i >= line.size()) return bad_line(line, "unterminated labels");
    ++i;
  }
  if (i >= line.size() || line[i] != ' ') return bad_line(line, "no value");
  std::string value(line.substr(i + 1));
  if (auto sp = value.find(' '); sp != std::string::npos) value.resize(sp);  // a timestamp follows
  if (value == "+Inf") {
    s.value = std::numeric_limits<double>::infinity();
  } else if (value == "-Inf") {
    s.value = -std::numeric_limits<double>::infinity();
  } else if (value == "NaN") {
    s.value = std::numeric_limits<double>::quiet_NaN();
  } else {
    char* end = nullptr;
    s.value = std::strtod(value.c_str(), &end);
    if (value.empty() || *end != '\0') return bad_line(line, "value is not a number");
  }
  return s;
}

// Queries over one scrape.
class Scrape {
 public:
  explicit Scrape(std::vector<Sample> samples) : samples_(std::move(samples)) {}

  bool has(std::string_view name) const {
    return std::any_of(samples_.begin(), samples_.end(), [&](const Sample& s) { return s.name == name; });
  }
  // The sum of every series of `name` whose labels include `match`.
  double sum(std::string_view name, const Labels& match = {}) const {
    double total = 0;
    for (const auto& s : samples_) {
      if (s.name == name && matches(s, match)) total += s.value;
    }
    return total;
  }
  // Prometheus' histogram_quantile over the series of `name` matching `match`, summed
  // bucket by bucket: linear inside the bucket that holds the rank; a rank in +Inf gives
  // the largest finite bound. NaN when nothing was observed.
  double quantile(std::string_view name, double q, const Labels& match = {}) const {
    std::map<double, double> buckets;  // le -> cumulative count
    const std::string bucket_name = std::string(name) + "_bucket";
    for (const auto& s : samples_) {
      if (s.name != bucket_name || !matches(s, match)) continue;
      auto le = s.labels.find("le");
      if (le == s.labels.end()) continue;
      const double bound =
          le->second == "+Inf" ? std::numeric_limits<double>::infinity() : std::strtod(le->second.c_str(), nullptr);
      buckets[bound] += s.value;
    }
    if (buckets.empty()) return std::nan("");
    const double total = buckets.rbegin()->second;
    if (total <= 0) return std::nan("");
    const double rank = q * total;
    double lower = 0, below = 0;
    for (const auto& [bound, cumulative] : buckets) {
      if (cumulative >= rank) {
        if (std::isinf(bound)) return lower;
        const double in_bucket = cumulative - below;
        return in_bucket <= 0 ? bound : lower + (bound - lower) * (rank - below) / in_bucket;
      }
      lower = bound;
      below = cumulative;
    }
    return lower;
  }

 private:
  static bool matches(const Sample& s, const Labels& match) {
    for (const auto& [k, v] : match) {
      auto it = s.labels.find(k);
      if (it == s.labels.end() || it->second != v) return false;
    }
    return true;
  }
  std::vector<Sample> samples_;
};

std::string bytes_text(double b) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int u = 0;
  while (b >= 1024 && u < 5) {
    b /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", b, kUnits[u]);
  return buf;
}

std::string percent_text(double part, double whole) {
  if (whole <= 0) return "n/a";
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * part / whole);
  return buf;
}

std::string seconds_text(double s) {
  if (std::isnan(s)) return "-";
  char buf[32];
  if (s < 1e-3) {
    std::snprintf(buf, sizeof buf, "%.0f us", s * 1e6);
  } else if (s < 1) {
    std::snprintf(buf, sizeof buf, "%.1f ms", s * 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f s", s);
  }
  return buf;
}

Json number_or_null(double v) {
  return std::isnan(v) ? Json(nullptr) : Json(v);
}

constexpr const char* kResults[] = {"hit", "miss", "revalidated", "bypass", "disabled"};
constexpr const char* kSources[] = {"dram", "disk", "upstream"};
constexpr const char* kOps[] = {"get", "head", "put", "list", "other"};
constexpr const char* kShedReasons[] = {"requests", "bytes", "connections"};
constexpr const char* kClasses[] = {"2xx", "3xx", "4xx", "5xx"};
constexpr std::string_view kNoTopBuckets =
    "not available: tagd keeps no per-bucket series (bucket names are unbounded); the access log has bucket= on "
    "every request";

}  // namespace

Result<std::vector<Sample>> parse_prometheus(std::string_view text) {
  std::vector<Sample> out;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line.front() == '#') continue;
    auto sample = parse_sample(line);
    if (!sample) return sample.error();
    out.push_back(std::move(*sample));
  }
  return out;
}

Result<std::string> stats_report(std::string_view metrics_text, bool json) {
  auto samples = parse_prometheus(metrics_text);
  if (!samples) return samples.error();
  if (samples->empty()) return Status(ErrorCode::kInvalidArgument, "metrics: no samples (is this a tagd /metrics?)");
  const Scrape m(std::move(*samples));

  Json doc;
  doc["requests"] = {{"total", m.sum("tagd_requests_total")},
                     {"in_flight", m.sum("tagd_inflight_requests")},
                     {"open_connections", m.sum("tagd_open_connections")}};
  for (const char* c : kClasses) doc["responses"][c] = m.sum("tagd_responses_total", {{"class", c}});
  for (const char* r : kResults) doc["cache"]["by_result"][r] = m.sum("tagd_cache_requests_total", {{"result", r}});
  // Served from the cache: a hit, or a cached copy the upstream confirmed (revalidated).
  const double hits = m.sum("tagd_cache_requests_total", {{"result", "hit"}});
  const double revalidated = m.sum("tagd_cache_requests_total", {{"result", "revalidated"}});
  const double misses = m.sum("tagd_cache_requests_total", {{"result", "miss"}});
  const double cacheable = hits + revalidated + misses;
  doc["cache"]["hit_ratio"] = cacheable > 0 ? Json((hits + revalidated) / cacheable) : Json(nullptr);
  doc["cache"]["enabled"] = m.sum("tagd_cache_enabled") > 0;
  double served = 0;
  for (const char* s : kSources) {
    const double b = m.sum("tagd_served_bytes_total", {{"source", s}});
    doc["bytes_by_source"][s] = b;
    served += b;
  }
  doc["cache_fill"] = {{"disk_used_bytes", m.sum("tagd_cache_used_bytes")},
                       {"disk_capacity_bytes", m.sum("tagd_cache_capacity_bytes")},
                       {"memory_used_bytes", m.sum("tagd_cache_memory_used_bytes")},
                       {"memory_capacity_bytes", m.sum("tagd_cache_memory_capacity_bytes")},
                       {"memory_promotions_declined", m.sum("tagd_cache_memory_promotions_declined_total")},
                       {"region_evictions", m.sum("tagd_cache_region_evictions_total")},
                       {"evicted_bytes", m.sum("tagd_cache_evicted_bytes_total")}};
  for (const char* op : kOps) {
    const Labels by_op{{"op", op}};
    doc["latency_seconds"][op] = {{"count", m.sum("tagd_request_duration_seconds_count", by_op)},
                                  {"p50", number_or_null(m.quantile("tagd_request_duration_seconds", 0.5, by_op))},
                                  {"p99", number_or_null(m.quantile("tagd_request_duration_seconds", 0.99, by_op))}};
  }
  doc["upstream"] = {{"requests", m.sum("tagd_upstream_requests_total")},
                     {"errors", m.sum("tagd_upstream_errors_total")},
                     {"retries", m.sum("tagd_upstream_retries_total")},
                     {"latency_p50_seconds", number_or_null(m.quantile("tagd_upstream_latency_seconds", 0.5))},
                     {"latency_p99_seconds", number_or_null(m.quantile("tagd_upstream_latency_seconds", 0.99))}};
  for (const char* r : kShedReasons) doc["admission"]["shed"][r] = m.sum("tagd_admission_shed_total", {{"reason", r}});
  doc["admission"]["inflight_response_bytes"] = m.sum("tagd_inflight_response_bytes");
  doc["admission"]["max_inflight_requests"] = m.sum("tagd_max_inflight_requests");
  doc["admission"]["max_inflight_bytes"] = m.sum("tagd_max_inflight_bytes");
  doc["admission"]["max_connections"] = m.sum("tagd_max_connections");
  doc["top_buckets"] = {{"available", false}, {"reason", kNoTopBuckets}};
  if (json) return doc.dump(2) + "\n";

  std::ostringstream out;
  out << std::fixed << std::setprecision(0);  // every number printed bare is a count
  out << "Requests      " << doc["requests"]["total"].get<double>() << " total, "
      << doc["requests"]["in_flight"].get<double>() << " in flight, "
      << doc["requests"]["open_connections"].get<double>() << " connections open\n";
  out << "Responses    ";
  for (const char* c : kClasses) out << " " << c << " " << doc["responses"][c].get<double>();
  out << "\n";
  out << "Cache         ";
  if (!doc["cache"]["enabled"].get<bool>()) out << "(disabled) ";
  out << "hit ratio " << percent_text(hits + revalidated, cacheable) << " (";
  for (std::size_t i = 0; i < std::size(kResults); ++i) {
    out << (i ? ", " : "") << kResults[i] << " " << doc["cache"]["by_result"][kResults[i]].get<double>();
  }
  out << ")\n";
  out << "Bytes served ";
  for (const char* s : kSources) {
    const double b = doc["bytes_by_source"][s].get<double>();
    out << " " << s << " " << bytes_text(b) << " (" << percent_text(b, served) << ")";
  }
  out << "\n";
  const auto& fill = doc["cache_fill"];
  out << "Cache fill    disk " << bytes_text(fill["disk_used_bytes"].get<double>()) << " of "
      << bytes_text(fill["disk_capacity_bytes"].get<double>()) << " ("
      << percent_text(fill["disk_used_bytes"].get<double>(), fill["disk_capacity_bytes"].get<double>()) << "), DRAM "
      << bytes_text(fill["memory_used_bytes"].get<double>()) << " of "
      << bytes_text(fill["memory_capacity_bytes"].get<double>()) << " ("
      << fill["memory_promotions_declined"].get<double>() << " disk reads kept out); "
      << fill["region_evictions"].get<double>()
      << " regions evicted (" << bytes_text(fill["evicted_bytes"].get<double>()) << ")\n";
  out << "Latency      ";
  for (const char* op : kOps) {
    const auto& l = doc["latency_seconds"][op];
    if (l["count"].get<double>() <= 0) continue;
    out << " " << op << " p50 " << seconds_text(l["p50"].is_null() ? std::nan("") : l["p50"].get<double>()) << " p99 "
        << seconds_text(l["p99"].is_null() ? std::nan("") : l["p99"].get<double>())
        << " (n=" << l["count"].get<double>() << ");";
  }
  out << "\n";
  const auto& up = doc["upstream"];
  out << "Upstream      " << up["requests"].get<double>() << " requests, " << up["errors"].get<double>() << " errors, "
      << up["retries"].get<double>() << " retries; time to head p50 "
      << seconds_text(m.quantile("tagd_upstream_latency_seconds", 0.5)) << " p99 "
      << seconds_text(m.quantile("tagd_upstream_latency_seconds", 0.99)) << "\n";
  const auto& adm = doc["admission"];
  out << "Admission     shed:";
  for (const char* r : kShedReasons) out << " " << r << " " << adm["shed"][r].get<double>();
  out << "; in flight " << doc["requests"]["in_flight"].get<double>() << "/"
      << adm["max_inflight_requests"].get<double>() << " requests, "
      << bytes_text(adm["inflight_response_bytes"].get<double>()) << "/"
      << (adm["max_inflight_bytes"].get<double>() > 0 ? bytes_text(adm["max_inflight_bytes"].get<double>())
                                                      : "no limit")
      << ", " << doc["requests"]["open_connections"].get<double>() << "/"
      << (adm["max_connections"].get<double>() > 0 ? std::to_string(adm["max_connections"].get<std::uint64_t>())
                                                   : std::string("no cap"))
      << " connections\n";
  out << "Top buckets   " << kNoTopBuckets << "\n";
  return out.str();
}

int stats_main(const std::vector<std::string>& args) {
  CommonFlags flags;
  // As `tagd warm` and `tagd unpin`: the endpoint a user's shell already points its S3
  // clients at. (`tagd healthcheck` keeps TAG_HTTP_PORT: it runs beside the daemon, whose
  // environment may name another endpoint.)
  if (const char* url = std::getenv("AWS_ENDPOINT_URL"); url != nullptr && *url != '\0') flags.endpoint = url;
  bool json = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string error;
    const int common = parse_common_flag(args, i, flags, error);
    if (common < 0) {
      std::fprintf(stderr, "tagd stats: %s\n", error.c_str());
      return 2;
    }
    if (common > 0) continue;
    if (args[i] == "--json") {
      json = true;
    } else {
      std::fprintf(stderr, "usage: tagd stats [--endpoint HOST:PORT] [--json] [--timeout MS]\n");
      return args[i] == "--help" || args[i] == "-h" ? 0 : 2;
    }
  }
  auto endpoint = parse_endpoint(flags.endpoint);
  if (!endpoint) {
    std::fprintf(stderr, "tagd stats: %s\n", endpoint.error().message().c_str());
    return 2;
  }
  auto reply = http_get(*endpoint, "/metrics", flags.timeout);
  if (!reply) {
    std::fprintf(stderr, "tagd stats: %s\n", reply.error().message().c_str());
    return 1;
  }
  if (reply->status != 200) {
    std::fprintf(stderr, "tagd stats: /metrics answered %d\n", reply->status);
    return 1;
  }
  auto report = stats_report(reply->body, json);
  if (!report) {
    std::fprintf(stderr, "tagd stats: %s\n", report.error().message().c_str());
    return 1;
  }
  std::fputs(report->c_str(), stdout);
  return 0;
}

}  // namespace tagd::cli
