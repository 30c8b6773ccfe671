#include "tagd/core/metrics.hpp"

#include <gtest/gtest.h>

#include <array>
#include <chrono>

#include <cstdint>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tagd/core/cache_outcome.hpp"

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
  TAGD_ALL_METRICS(TEST_SINGLE, TEST_SINGLE, TAGD_METRIC_IGNORE, TEST_LABELLED, TAGD_METRIC_IGNORE)
#undef TEST_SINGLE
#undef TEST_LABELLED
  return out;
}

// The exported names of the HISTOGRAM entries.
std::set<std::string> declared_histograms() {
  std::set<std::string> out;
#define TEST_HISTOGRAM(member, prom_name, help, ...) out.insert(prom_name);
  TAGD_ALL_METRICS(TAGD_METRIC_IGNORE, TAGD_METRIC_IGNORE, TAGD_METRIC_IGNORE, TAGD_METRIC_IGNORE, TEST_HISTOGRAM)
#undef TEST_HISTOGRAM
  return out;
}

struct Parsed {
  std::vector<std::string> help_names, type_names;           // in order of appearance
  std::map<std::string, std::string> help, type;             // family -> help text / type
  std::vector<std::pair<std::string, std::string>> samples;  // series -> value, in order
  std::vector<std::string> sample_families;                  // metric name of each sample
  std::vector<std::string> errors;
};

// A strict reader for the subset of the Prometheus text format tagd emits.
Parsed parse(const std::string& text) {
  static const std::regex kHelp(R"(# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (\S.*))");
  static const std::regex kType(R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram))");
  static const std::regex kSample(
      R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*")*\})? (-?[0-9]+(\.[0-9]+)?(e-?[0-9]+)?))");
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

// The family a sample belongs to: its name, or for a histogram's _bucket/_sum/_count the
// histogram's name.
std::string family_of(const std::string& sample_name, const std::map<std::string, std::string>& types) {
  for (std::string_view suffix : {"_bucket", "_sum", "_count"}) {
    if (sample_name.ends_with(suffix)) {
      std::string base = sample_name.substr(0, sample_name.size() - suffix.size());
      if (auto it = types.find(base); it != types.end() && it->second == "histogram") return base;
    }
  }
  return sample_name;
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

  std::set<std::string> families = declared_histograms();
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
      EXPECT_EQ(family_of(line.substr(0, line.find_first_of("{ ")), p.type), current)
          << "sample outside its family: " << line;
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
  for (std::size_t i = 0; i < p.samples.size(); ++i) {
    const auto& [series, value] = p.samples[i];
    if (p.type[family_of(p.sample_families[i], p.type)] == "histogram") continue;  // (tests below)
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
      {"tagd_request_duration_seconds", "histogram"},
      {"tagd_upstream_latency_seconds", "histogram"},
      {"tagd_served_bytes_total", "counter"},
      {"tagd_admission_shed_total", "counter"},
      {"tagd_inflight_response_bytes", "gauge"},
      {"tagd_max_connections", "gauge"},
      {"tagd_max_inflight_requests", "gauge"},
      {"tagd_max_inflight_bytes", "gauge"},
      {"tagd_cache_capacity_bytes", "gauge"},
      {"tagd_cache_used_bytes", "gauge"},
      {"tagd_cache_memory_capacity_bytes", "gauge"},
      {"tagd_cache_memory_used_bytes", "gauge"},
      {"tagd_cache_memory_promotions_declined_total", "counter"},
      {"tagd_cache_region_evictions_total", "counter"},
      {"tagd_cache_evicted_bytes_total", "counter"},
  };
  Metrics m;
  auto p = parse(m.render_prometheus());
  ASSERT_TRUE(p.errors.empty()) << ::testing::PrintToString(p.errors);
  // Every pinned name is still there with its type (new metrics may be added freely).
  for (const auto& [name, type] : expected) {
    auto it = p.type.find(name);
    ASSERT_NE(it, p.type.end()) << "renamed or removed: " << name;
    EXPECT_EQ(it->second, type) << name;
  }
}

TEST(Metrics, GlobalInstanceIsShared) {
  EXPECT_EQ(&metrics(), &metrics());
  const std::uint64_t before = metrics().auth_failures.get();
  metrics().auth_failures.inc();
  EXPECT_EQ(metrics().auth_failures.get(), before + 1);
}

// Bucket bounds are inclusive (Prometheus' le), buckets render cumulatively, _count is the
// +Inf bucket and _sum is in seconds.
TEST(Histogram, ObservationsLandInTheirBucketsAndRenderCumulatively) {
  Metrics m;
  auto& h = m.upstream_latency.at();
  h.observe(std::chrono::nanoseconds(0));      // first bucket
  h.observe(std::chrono::milliseconds(1));     // exactly a bound: in le="0.001"
  h.observe(std::chrono::microseconds(1001));  // just above: le="0.0025"
  h.observe(std::chrono::seconds(100));        // beyond the last bound: +Inf only
  h.observe(std::chrono::nanoseconds(-5));     // a clock step backwards counts as 0
  EXPECT_EQ(h.count(), 5u);
  EXPECT_EQ(h.in_bucket(0), 2u);
  EXPECT_EQ(h.in_bucket(3), 1u);
  EXPECT_EQ(h.in_bucket(4), 1u);
  EXPECT_EQ(h.in_bucket(Histogram::kBuckets), 1u);
  const std::string text = m.render_prometheus();
  EXPECT_NE(text.find("# HELP tagd_upstream_latency_seconds "), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE tagd_upstream_latency_seconds histogram\n"
                      "tagd_upstream_latency_seconds_bucket{le=\"0.0001\"} 2\n"
                      "tagd_upstream_latency_seconds_bucket{le=\"0.00025\"} 2\n"
                      "tagd_upstream_latency_seconds_bucket{le=\"0.0005\"} 2\n"
                      "tagd_upstream_latency_seconds_bucket{le=\"0.001\"} 3\n"
                      "tagd_upstream_latency_seconds_bucket{le=\"0.0025\"} 4\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("tagd_upstream_latency_seconds_bucket{le=\"60\"} 4\n"
                      "tagd_upstream_latency_seconds_bucket{le=\"+Inf\"} 5\n"
                      "tagd_upstream_latency_seconds_sum 100.002001\n"
                      "tagd_upstream_latency_seconds_count 5\n"),
            std::string::npos)
      << text;
}

TEST(Histogram, BoundsIncreaseAndMatchTheirLabels) {
  for (std::size_t i = 0; i < kLatencyBuckets.size(); ++i) {
    if (i > 0) {
      EXPECT_LT(kLatencyBuckets[i - 1].upper_ns, kLatencyBuckets[i].upper_ns);
    }
    EXPECT_DOUBLE_EQ(std::stod(std::string(kLatencyBuckets[i].le)) * 1e9,
                     static_cast<double>(kLatencyBuckets[i].upper_ns))
        << kLatencyBuckets[i].le;
  }
}

// The labelled histogram: one series per (op, result), all rendered, each observation in
// exactly the series its indices name.
TEST(Histogram, LabelledSeriesAreTheCrossProductOfTheirDimensions) {
  using Vec = decltype(Metrics::request_duration);
  static_assert(Vec::kSeries == 5 * 6);
  Metrics m;
  m.request_duration.at(metric_label::Op::kGet, CacheOutcome::kHit).observe(std::chrono::microseconds(300));
  m.request_duration.at(metric_label::Op::kPut, CacheOutcome::kNone).observe(std::chrono::seconds(2));
  m.request_duration.at(metric_label::Op::kPut, CacheOutcome::kNone).observe(std::chrono::seconds(2));
  // Out of range clamps to the last value of that dimension.
  m.request_duration.at(std::size_t{99}, std::size_t{99}).observe(std::chrono::seconds(1));
  EXPECT_EQ(Vec::label_values(0), (std::array<std::string_view, 2>{"get", "none"}));
  EXPECT_EQ(Vec::label_values(1), (std::array<std::string_view, 2>{"get", "hit"}));
  EXPECT_EQ(Vec::label_values(Vec::kSeries - 1), (std::array<std::string_view, 2>{"other", "disabled"}));
  const std::string text = m.render_prometheus();
  auto p = parse(text);
  ASSERT_TRUE(p.errors.empty()) << ::testing::PrintToString(p.errors);
  std::map<std::string, std::string> counts;
  for (const auto& [series, value] : p.samples) {
    if (series.rfind("tagd_request_duration_seconds_count{", 0) == 0) counts[series] = value;
  }
  EXPECT_EQ(counts.size(), Vec::kSeries);
  std::uint64_t total = 0;
  for (const auto& [series, value] : counts) total += std::stoull(value);
  EXPECT_EQ(total, 4u);
  EXPECT_EQ(counts["tagd_request_duration_seconds_count{op=\"get\",result=\"hit\"}"], "1");
  EXPECT_EQ(counts["tagd_request_duration_seconds_count{op=\"put\",result=\"none\"}"], "2");
  EXPECT_EQ(counts["tagd_request_duration_seconds_count{op=\"other\",result=\"disabled\"}"], "1");
  EXPECT_NE(text.find("tagd_request_duration_seconds_bucket{op=\"get\",result=\"hit\",le=\"0.00025\"} 0\n"
                      "tagd_request_duration_seconds_bucket{op=\"get\",result=\"hit\",le=\"0.0005\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("tagd_request_duration_seconds_sum{op=\"put\",result=\"none\"} 4\n"), std::string::npos);
}

// Observations from many threads at once are all counted (relaxed atomics, no lost update).
TEST(Histogram, ConcurrentObservationsAreAllCounted) {
  Metrics m;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&m, t] {
      for (int i = 0; i < 10000; ++i) m.upstream_latency.at().observe(std::chrono::microseconds(100 * (t + 1)));
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(m.upstream_latency.at().count(), 40000u);
  EXPECT_EQ(m.upstream_latency.at().sum_ns(), std::uint64_t{10000} * (100'000 + 200'000 + 300'000 + 400'000));
}

}  // namespace
}  // namespace tagd
