#include "tagd/core/metrics.hpp"

#include <array>
#include <cstddef>
#include <string_view>
#include <type_traits>

namespace tagd {

Metrics& metrics() {
  static Metrics instance;
  return instance;
}

namespace {

// Compile-time checks on the list: exported names are valid Prometheus metric names,
// label names valid label names, and no exported name is declared twice.
#define TAGD_METRIC_NAME(member, prom_name, help) std::string_view(prom_name),
#define TAGD_METRIC_FAMILY_NAME(family, Kind, prom_name, label, help) std::string_view(prom_name),
constexpr std::array kExportedNames{
    TAGD_ALL_METRICS(TAGD_METRIC_NAME, TAGD_METRIC_NAME, TAGD_METRIC_FAMILY_NAME, TAGD_METRIC_IGNORE)};
#undef TAGD_METRIC_NAME
#undef TAGD_METRIC_FAMILY_NAME

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
TAGD_ALL_METRICS(TAGD_METRIC_IGNORE, TAGD_METRIC_IGNORE, TAGD_METRIC_FAMILY_LABEL_OK, TAGD_METRIC_IGNORE)
#undef TAGD_METRIC_FAMILY_LABEL_OK

// Number of LABELLED entries that belong to Family.
template <class Family>
constexpr std::size_t family_size() {
  std::size_t n = 0;
#define TAGD_METRIC_COUNT_MEMBER(member, family, label_value) \
  if (std::is_same_v<metric_family::family, Family>) ++n;
  TAGD_ALL_METRICS(TAGD_METRIC_IGNORE, TAGD_METRIC_IGNORE, TAGD_METRIC_IGNORE, TAGD_METRIC_COUNT_MEMBER)
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
  TAGD_ALL_METRICS(TAGD_METRIC_IGNORE, TAGD_METRIC_IGNORE, TAGD_METRIC_IGNORE, TAGD_METRIC_RENDER_MEMBER)
#undef TAGD_METRIC_RENDER_MEMBER
}

}  // namespace

std::string Metrics::render_prometheus() const {
  std::string out;
  out.reserve(8192);
#define TAGD_METRIC_RENDER_SINGLE(member, prom_name, help)   \
  header(out, prom_name, help, decltype(member)::kPromType); \
  sample(out, prom_name, member.get());
#define TAGD_METRIC_RENDER_FAMILY(family, Kind, prom_name, label, help) \
  render_family<metric_family::family>(out, *this);
  TAGD_ALL_METRICS(TAGD_METRIC_RENDER_SINGLE, TAGD_METRIC_RENDER_SINGLE, TAGD_METRIC_RENDER_FAMILY, TAGD_METRIC_IGNORE)
#undef TAGD_METRIC_RENDER_SINGLE
#undef TAGD_METRIC_RENDER_FAMILY
  return out;
}

}  // namespace tagd
