#include "tagd/core/metrics.hpp"

#include <array>
#include <charconv>
#include <cstddef>
#include <string_view>
#include <type_traits>
#include <utility>

#include "tagd/core/cache_outcome.hpp"

namespace tagd {

Metrics& metrics() {
  static Metrics instance;
  return instance;
}

namespace {

// The request-duration histogram is indexed by CacheOutcome's value: the label list must
// stay in the enum's order.
static_assert(static_cast<std::size_t>(CacheOutcome::kNone) == 0 && static_cast<std::size_t>(CacheOutcome::kHit) == 1 &&
                  static_cast<std::size_t>(CacheOutcome::kMiss) == 2 &&
                  static_cast<std::size_t>(CacheOutcome::kRevalidated) == 3 &&
                  static_cast<std::size_t>(CacheOutcome::kBypass) == 4 &&
                  static_cast<std::size_t>(CacheOutcome::kDisabled) == 5 &&
                  metric_label::CacheResult::values.size() == 6,
              "metric_label::CacheResult must list CacheOutcome's values in order");

// Compile-time checks on the list: exported names are valid Prometheus metric names,
// label names valid label names, and no exported name is declared twice.
#define TAGD_METRIC_NAME(member, prom_name, help) std::string_view(prom_name),
#define TAGD_METRIC_FAMILY_NAME(family, Kind, prom_name, label, help) std::string_view(prom_name),
#define TAGD_METRIC_HISTOGRAM_NAME(member, prom_name, help, ...) std::string_view(prom_name),
constexpr std::array kExportedNames{TAGD_ALL_METRICS(TAGD_METRIC_NAME, TAGD_METRIC_NAME, TAGD_METRIC_FAMILY_NAME,
                                                     TAGD_METRIC_IGNORE, TAGD_METRIC_HISTOGRAM_NAME)};
#undef TAGD_METRIC_NAME
#undef TAGD_METRIC_FAMILY_NAME
#undef TAGD_METRIC_HISTOGRAM_NAME

constexpr bool valid_name(std::string_view s, bool allow_colon) {
  if (s.empty()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (allow_colon && c == ':') ||
                    (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

constexpr bool names_valid_and_unique() {
  const std::size_t n = kExportedNames.size();
  for (std::size_t i = 0; i < n; ++i) {
    if (!valid_name(kExportedNames[i], true) || kExportedNames[i].substr(0, 5) != "tagd_") return false;
    for (std::size_t j = i + 1; j < n; ++j) {
      if (kExportedNames[i] == kExportedNames[j]) return false;
    }
  }
  return true;
}
static_assert(names_valid_and_unique(), "TAGD_ALL_METRICS: exported names must be unique, valid and start with tagd_");

#define TAGD_METRIC_FAMILY_LABEL_OK(family, Kind, prom_name, label, help) \
  static_assert(valid_name(label, false), "TAGD_ALL_METRICS: bad label name for " prom_name);
TAGD_ALL_METRICS(TAGD_METRIC_IGNORE, TAGD_METRIC_IGNORE, TAGD_METRIC_FAMILY_LABEL_OK, TAGD_METRIC_IGNORE,
                 TAGD_METRIC_IGNORE)
#undef TAGD_METRIC_FAMILY_LABEL_OK

// A histogram's label names: valid, distinct, and never "le" (the bucket label).
template <class Vec>
constexpr bool histogram_labels_ok() {
  for (std::size_t i = 0; i < Vec::kDims; ++i) {
    if (!valid_name(Vec::kLabelNames[i], false) || Vec::kLabelNames[i] == "le") return false;
    for (std::size_t j = i + 1; j < Vec::kDims; ++j) {
      if (Vec::kLabelNames[i] == Vec::kLabelNames[j]) return false;
    }
  }
  return true;
}
#define TAGD_METRIC_HISTOGRAM_LABELS_OK(member, prom_name, help, ...)            \
  static_assert(histogram_labels_ok<decltype(std::declval<Metrics>().member)>(), \
                "TAGD_ALL_METRICS: bad histogram label names for " prom_name);
TAGD_ALL_METRICS(TAGD_METRIC_IGNORE, TAGD_METRIC_IGNORE, TAGD_METRIC_IGNORE, TAGD_METRIC_IGNORE,
                 TAGD_METRIC_HISTOGRAM_LABELS_OK)
#undef TAGD_METRIC_HISTOGRAM_LABELS_OK

// Number of LABELLED entries that belong to Family.
template <class Family>
constexpr std::size_t family_size() {
  std::size_t n = 0;
#define TAGD_METRIC_COUNT_MEMBER(member, family, label_value) \
  if (std::is_same_v<metric_family::family, Family>) ++n;
  TAGD_ALL_METRICS(TAGD_METRIC_IGNORE, TAGD_METRIC_IGNORE, TAGD_METRIC_IGNORE, TAGD_METRIC_COUNT_MEMBER,
                   TAGD_METRIC_IGNORE)
#undef TAGD_METRIC_COUNT_MEMBER
  return n;
}

void header(std::string& out, std::string_view name, std::string_view help, std::string_view type) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

template <class Value>
void sample(std::string& out, std::string_view name, Value value) {
  out.append(name).append(" ").append(std::to_string(value)).append("\n");
}

template <class Value>
void sample(std::string& out, std::string_view name, std::string_view label, std::string_view label_value,
            Value value) {
  out.append(name).append("{").append(label).append("=\"").append(label_value).append("\"} ");
  out.append(std::to_string(value)).append("\n");
}

// HELP/TYPE once, then every member of the family, wherever it stands in the list.
template <class Family>
void render_family(std::string& out, const Metrics& m) {
  static_assert(family_size<Family>() > 0, "TAGD_ALL_METRICS: a FAMILY needs at least one LABELLED member");
  header(out, Family::name, Family::help, Family::type::kPromType);
#define TAGD_METRIC_RENDER_MEMBER(member, family, label_value)                  \
  if constexpr (std::is_same_v<metric_family::family, Family>) {                \
    sample(out, Family::name, Family::label_name, label_value, m.member.get()); \
  }
  TAGD_ALL_METRICS(TAGD_METRIC_IGNORE, TAGD_METRIC_IGNORE, TAGD_METRIC_IGNORE, TAGD_METRIC_RENDER_MEMBER,
                   TAGD_METRIC_IGNORE)
#undef TAGD_METRIC_RENDER_MEMBER
}

// Seconds, shortest exact decimal form (Prometheus parses any float).
void append_seconds(std::string& out, std::uint64_t ns) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, static_cast<double>(ns) / 1e9);
  if (ec != std::errc()) {
    out.append("0");
    return;
  }
  out.append(buf, end);
}

// name_bucket{labels...,le="..."} (cumulative), name_sum{labels} and name_count{labels}
// for every series, in series order. Every series is rendered, observed or not: a series
// that appears mid-way loses its first increments to rate().
template <class Vec>
void render_histogram(std::string& out, std::string_view name, std::string_view help, const Vec& vec) {
  header(out, name, help, Vec::kPromType);
  std::string labels;
  for (std::size_t s = 0; s < Vec::kSeries; ++s) {
    const auto values = Vec::label_values(s);
    labels.clear();
    for (std::size_t d = 0; d < Vec::kDims; ++d) {
      if (d > 0) labels.push_back(',');
      labels.append(Vec::kLabelNames[d]).append("=\"").append(values[d]).append("\"");
    }
    const Histogram& h = vec.series(s);
    std::uint64_t cumulative = 0;
    for (std::size_t b = 0; b <= Histogram::kBuckets; ++b) {
      cumulative += h.in_bucket(b);
      out.append(name).append("_bucket{").append(labels);
      if (!labels.empty()) out.push_back(',');
      out.append("le=\"").append(b < Histogram::kBuckets ? kLatencyBuckets[b].le : "+Inf").append("\"} ");
      out.append(std::to_string(cumulative)).append("\n");
    }
    const std::string braces = labels.empty() ? std::string() : "{" + labels + "}";
    out.append(name).append("_sum").append(braces).append(" ");
    append_seconds(out, h.sum_ns());
    out.append("\n");
    out.append(name).append("_count").append(braces).append(" ").append(std::to_string(cumulative)).append("\n");
  }
}

}  // namespace

std::string Metrics::render_prometheus() const {
  std::string out;
  out.reserve(64 * 1024);
#define TAGD_METRIC_RENDER_SINGLE(member, prom_name, help)   \
  header(out, prom_name, help, decltype(member)::kPromType); \
  sample(out, prom_name, member.get());
#define TAGD_METRIC_RENDER_FAMILY(family, Kind, prom_name, label, help) \
  render_family<metric_family::family>(out, *this);
#define TAGD_METRIC_RENDER_HISTOGRAM(member, prom_name, help, ...) render_histogram(out, prom_name, help, member);
  TAGD_ALL_METRICS(TAGD_METRIC_RENDER_SINGLE, TAGD_METRIC_RENDER_SINGLE, TAGD_METRIC_RENDER_FAMILY, TAGD_METRIC_IGNORE,
                   TAGD_METRIC_RENDER_HISTOGRAM)
#undef TAGD_METRIC_RENDER_SINGLE
#undef TAGD_METRIC_RENDER_FAMILY
#undef TAGD_METRIC_RENDER_HISTOGRAM
  return out;
}

}  // namespace tagd
