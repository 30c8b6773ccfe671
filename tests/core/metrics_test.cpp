#include "tagd/core/metrics.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace tagd {
namespace {

// One series as declared in TAGD_ALL_METRICS: how it is rendered and how to bump it.
struct Declared {
  std::string family;  // exported name
  std::string series;  // exported name plus {label="value"} for family members
  bool gauge;
  std::int64_t (*read)(const Metrics&);
  void (*bump)(Metrics&, std::int64_t);  // inc() a counter by n, set() a gauge to n
};

template <class Family>
std::string family_series(std::string_view value) {
  return std::string(Family::name) + "{" + std::string(Family::label_name) + "=\"" + std::string(value) + "\"}";
}

void bump(Counter& c, std::int64_t n) {
  c.inc(static_cast<std::uint64_t>(n));
}
void bump(Gauge& g, std::int64_t n) {
  g.set(n);
}

std::vector<Declared> declared() {
  std::vector<Declared> out;
#define TEST_SINGLE(member, prom_name, help)                                                 \
  out.push_back({prom_name, prom_name, std::is_same_v<decltype(Metrics::member), Gauge>,     \
                 [](const Metrics& m) { return static_cast<std::int64_t>(m.member.get()); }, \
                 [](Metrics& m, std::int64_t n) { bump(m.member, n); }});
#define TEST_LABELLED(member, family, label_value)                                                            \
  out.push_back({std::string(metric_family::family::name), family_series<metric_family::family>(label_value), \
                 std::is_same_v<metric_family::family::type, Gauge>,                                          \
                 [](const Metrics& m) { return static_cast<std::int64_t>(m.member.get()); },                  \
                 [](Metrics& m, std::int64_t n) { bump(m.member, n); }});
  TAGD_ALL_METRICS(TEST_SINGLE, TEST_SINGLE, TAGD_METRIC_IGNORE, TEST_LABELLED)
#undef TEST_SINGLE
#undef TEST_LABELLED
  return out;
}

struct Parsed {
  std::vector<std::string> help_names, type_names;           // in order of appearance
  std::map<std::string, std::string> help, type;             // family -> help text / type
  std::vector<std::pair<std::string, std::string>> samples;  // series -> value, in order
  std::vector<std::string> sample_families;                  // family of each sample
  std::vector<std::string> errors;
};

// A strict reader for the subset of the Prometheus text format tagd emits.
Parsed parse(const std::string& text) {
  static const std::regex kHelp(R"(# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (\S.*))");
  static const std::regex kType(R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge))");
  static const std::regex kSample(
      R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*")*\})? (-?[0-9]+))");
  Parsed p;
  if (text.empty() || text.back() != '\n') p.errors.push_back("output does not end with a newline");
  std::istringstream in(text);
  std::string line;
  std::smatch m;
  while (std::getline(in, line)) {
    if (std::regex_match(line, m, kHelp)) {
      p.help_names.push_back(m[1]);
      p.help[m[1]] = m[2];
    } else if (std::regex_match(line, m, kType)) {
      p.type_names.push_back(m[1]);
      p.type[m[1]] = m[2];
    } else if (std::regex_match(line, m, kSample)) {
      p.samples.emplace_back(std::string(m[1]) + std::string(m[2]), m[4]);
      p.sample_families.push_back(m[1]);
    } else {
      p.errors.push_back("unparsable line: '" + line + "'");
    }
  }
  return p;
}

TEST(Metrics, RenderParsesAsPrometheusText) {
  Metrics m;
  for (const auto& d : declared()) d.bump(m, 3);
  auto p = parse(m.render_prometheus());
  EXPECT_TRUE(p.errors.empty()) << ::testing::PrintToString(p.errors);
  EXPECT_FALSE(p.samples.empty());
}

TEST(Metrics, OneHelpAndOneTypePerFamilyBeforeItsSamples) {
  Metrics m;
  const std::string text = m.render_prometheus();
  auto p = parse(text);
  ASSERT_TRUE(p.errors.empty()) << ::testing::PrintToString(p.errors);

  std::set<std::string> families;
  for (const auto& d : declared()) families.insert(d.family);
  EXPECT_EQ(std::multiset<std::string>(p.help_names.begin(), p.help_names.end()),
            std::multiset<std::string>(families.begin(), families.end()));
  EXPECT_EQ(std::multiset<std::string>(p.type_names.begin(), p.type_names.end()),
            std::multiset<std::string>(families.begin(), families.end()));

  // Every family is "# HELP", "# TYPE", then all its samples, contiguous.
  std::istringstream in(text);
  std::string line, current;
  std::set<std::string> closed;
  enum { kWantHelp, kWantType, kInSamples } state = kWantHelp;
  while (std::getline(in, line)) {
    if (line.rfind("# HELP ", 0) == 0) {
      EXPECT_NE(state, kWantType) << line;
      if (!current.empty()) closed.insert(current);
      current = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_FALSE(closed.count(current)) << "family rendered twice: " << current;
      state = kWantType;
    } else if (line.rfind("# TYPE ", 0) == 0) {
      EXPECT_EQ(state, kWantType) << line;
      EXPECT_EQ(line.substr(7, line.find(' ', 7) - 7), current) << line;
      state = kInSamples;
    } else {
      EXPECT_NE(state, kWantHelp) << "sample before any HELP: " << line;
      EXPECT_EQ(line.substr(0, line.find_first_of("{ ")), current) << "sample outside its family: " << line;
    }
  }
  EXPECT_EQ(state, kInSamples);

  for (const auto& [name, type] : p.type) {
    if (type == "counter") {
      EXPECT_TRUE(name.ends_with("_total")) << name;
    }
  }
}

TEST(Metrics, EveryDeclaredMetricRendersItsValueOnce) {
  Metrics m;
  auto decl = declared();
  // Distinct values, so a series wired to the wrong member is caught.
  for (std::size_t i = 0; i < decl.size(); ++i) decl[i].bump(m, static_cast<std::int64_t>(1000 + i));
  auto p = parse(m.render_prometheus());
  ASSERT_TRUE(p.errors.empty()) << ::testing::PrintToString(p.errors);

  std::map<std::string, std::string> rendered;
  for (const auto& [series, value] : p.samples) {
    EXPECT_TRUE(rendered.emplace(series, value).second) << "rendered twice: " << series;
  }
  EXPECT_EQ(rendered.size(), decl.size()) << "rendered series that are not declared, or missing ones";
  for (std::size_t i = 0; i < decl.size(); ++i) {
    const auto& d = decl[i];
    EXPECT_EQ(d.read(m), static_cast<std::int64_t>(1000 + i)) << d.series;
    auto it = rendered.find(d.series);
    ASSERT_NE(it, rendered.end()) << "not rendered: " << d.series;
    EXPECT_EQ(it->second, std::to_string(1000 + i)) << d.series;
    EXPECT_EQ(p.type[d.family], d.gauge ? "gauge" : "counter") << d.series;
  }
}

TEST(Metrics, CountersAccumulateAndGaugesGoNegative) {
  Metrics m;
  m.requests_total.inc();
  m.requests_total.inc(41);
  m.cache_hits.inc(2);
  m.inflight_requests.add(3);
  m.inflight_requests.add(-5);
  const std::string text = m.render_prometheus();
  EXPECT_NE(text.find("\ntagd_requests_total 42\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\ntagd_cache_requests_total{result=\"hit\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\ntagd_inflight_requests -2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\ntagd_cache_requests_total{result=\"miss\"} 0\n"), std::string::npos) << text;
}

// The labelled families, spelled out: integration tests, dashboards and docs use these.
TEST(Metrics, LabelledFamiliesRenderAllMembers) {
  Metrics m;
  m.responses_2xx.inc(1);
  m.responses_3xx.inc(2);
  m.responses_4xx.inc(3);
  m.responses_5xx.inc(4);
  m.cache_hits.inc(5);
  m.cache_misses.inc(6);
  m.cache_revalidated.inc(7);
  m.cache_bypass.inc(8);
  m.cache_disabled.inc(9);
  const std::string text = m.render_prometheus();
  EXPECT_NE(text.find("# HELP tagd_responses_total Responses by status class\n"
                      "# TYPE tagd_responses_total counter\n"
                      "tagd_responses_total{class=\"2xx\"} 1\n"
                      "tagd_responses_total{class=\"3xx\"} 2\n"
                      "tagd_responses_total{class=\"4xx\"} 3\n"
                      "tagd_responses_total{class=\"5xx\"} 4\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("# HELP tagd_cache_requests_total Object GET/HEAD outcomes (same source as X-Cache)\n"
                      "# TYPE tagd_cache_requests_total counter\n"
                      "tagd_cache_requests_total{result=\"hit\"} 5\n"
                      "tagd_cache_requests_total{result=\"miss\"} 6\n"
                      "tagd_cache_requests_total{result=\"revalidated\"} 7\n"
                      "tagd_cache_requests_total{result=\"bypass\"} 8\n"
                      "tagd_cache_requests_total{result=\"disabled\"} 9\n"),
            std::string::npos)
      << text;
}

// The exported names are an interface: renaming one in TAGD_ALL_METRICS must fail here.
TEST(Metrics, ExportedNamesAndTypesArePinned) {
  const std::map<std::string, std::string> expected = {
      {"tagd_requests_total", "counter"},
      {"tagd_responses_total", "counter"},
      {"tagd_request_body_bytes_total", "counter"},
      {"tagd_response_body_bytes_total", "counter"},
      {"tagd_auth_failures_total", "counter"},
      {"tagd_policy_denials_total", "counter"},
      {"tagd_body_verification_failures_total", "counter"},
      {"tagd_slow_down_total", "counter"},
      {"tagd_client_timeouts_total", "counter"},
      {"tagd_client_aborts_total", "counter"},
      {"tagd_upstream_requests_total", "counter"},
      {"tagd_upstream_retries_total", "counter"},
      {"tagd_upstream_errors_total", "counter"},
      {"tagd_upstream_truncated_bodies_total", "counter"},
      {"tagd_upstream_connect_errors_total", "counter"},
      {"tagd_upstream_tls_errors_total", "counter"},
      {"tagd_upstream_connections_opened_total", "counter"},
      {"tagd_upstream_connections_reused_total", "counter"},
      {"tagd_cache_requests_total", "counter"},
      {"tagd_cache_hit_bytes_total", "counter"},
      {"tagd_cache_disk_read_bytes_total", "counter"},
      {"tagd_cache_fill_bytes_total", "counter"},
      {"tagd_cache_fills_started_total", "counter"},
      {"tagd_cache_fills_completed_total", "counter"},
      {"tagd_cache_fills_failed_total", "counter"},
      {"tagd_cache_fills_rejected_total", "counter"},
      {"tagd_cache_joined_fills_total", "counter"},
      {"tagd_cache_checksum_failures_total", "counter"},
      {"tagd_cache_write_errors_total", "counter"},
      {"tagd_cache_stale_served_total", "counter"},
      {"tagd_cache_invalidations_total", "counter"},
      {"tagd_cache_changed_resets_total", "counter"},
      {"tagd_cache_enabled", "gauge"},
      {"tagd_inflight_requests", "gauge"},
      {"tagd_open_connections", "gauge"},
      {"tagd_io_uring_enabled", "gauge"},
      {"tagd_io_uring_sockets", "gauge"},
      {"tagd_disk_io_uring", "gauge"},
      {"tagd_disk_direct_io", "gauge"},
      {"tagd_disk_reads_in_flight", "gauge"},
      {"tagd_draining", "gauge"},
  };
  Metrics m;
  auto p = parse(m.render_prometheus());
  ASSERT_TRUE(p.errors.empty()) << ::testing::PrintToString(p.errors);
  EXPECT_EQ(p.type, expected);
}

TEST(Metrics, GlobalInstanceIsShared) {
  EXPECT_EQ(&metrics(), &metrics());
  const std::uint64_t before = metrics().auth_failures.get();
  metrics().auth_failures.inc();
  EXPECT_EQ(metrics().auth_failures.get(), before + 1);
}

}  // namespace
}  // namespace tagd
