#include "tagd/cli/stats.hpp"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tagd/cli/healthcheck.hpp"
#include "tagd/cli/http_get.hpp"
#include "tagd/core/cache_outcome.hpp"
#include "tagd/core/metrics.hpp"

namespace tagd::cli {
namespace {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using asio::ip::tcp;

// A tagd-shaped scrape: rendered by the real renderer from known observations.
std::string scrape() {
  static Metrics m;  // static: Metrics is large; built once for all tests
  static const bool filled = [] {
    m.requests_total.inc(120);
    m.cache_hits.inc(90);
    m.cache_misses.inc(10);
    m.cache_bypass.inc(4);
    m.cache_enabled.set(1);
    m.served_bytes_dram.inc(1ull << 30);
    m.served_bytes_disk.inc(512ull << 20);
    m.served_bytes_upstream.inc(512ull << 20);
    m.cache_used_bytes.set(3ll << 30);
    m.cache_capacity_bytes.set(4ll << 30);
    m.cache_memory_used_bytes.set(256ll << 20);
    m.cache_memory_capacity_bytes.set(512ll << 20);
    m.cache_memory_promotions_declined.inc(42);
    m.shed_bytes.inc(7);
    m.max_inflight_requests.set(1024);
    for (int i = 0; i < 99; ++i) {
      m.request_duration.at(metric_label::Op::kGet, CacheOutcome::kHit).observe(std::chrono::milliseconds(1));
    }
    m.request_duration.at(metric_label::Op::kGet, CacheOutcome::kMiss).observe(std::chrono::seconds(2));
    m.upstream_latency.at().observe(std::chrono::milliseconds(20));
    return true;
  }();
  (void)filled;
  return m.render_prometheus();
}

TEST(Stats, ParsesEverySampleTagdRenders) {
  auto samples = parse_prometheus(scrape());
  ASSERT_TRUE(samples) << samples.error().message();
  bool found = false;
  for (const auto& s : *samples) {
    if (s.name == "tagd_request_duration_seconds_bucket" && s.labels.at("op") == "get" &&
        s.labels.at("result") == "hit" && s.labels.at("le") == "0.001") {
      EXPECT_EQ(s.value, 99);
      found = true;
    }
  }
  EXPECT_TRUE(found);
}

TEST(Stats, RefusesTextThatIsNotMetrics) {
  EXPECT_FALSE(parse_prometheus("tagd_x{a=\"b\" 1\n"));
  EXPECT_FALSE(parse_prometheus("<html>oops</html>\n"));
  EXPECT_FALSE(parse_prometheus("tagd_x one\n"));
  EXPECT_FALSE(stats_report("# only comments\n", false));
}

TEST(Stats, JsonReportComputesRatiosAndQuantiles) {
  auto report = stats_report(scrape(), true);
  ASSERT_TRUE(report) << report.error().message();
  auto doc = nlohmann::json::parse(*report);
  EXPECT_DOUBLE_EQ(doc["cache"]["hit_ratio"].get<double>(), 0.9);  // bypass is not a cacheable read
  EXPECT_EQ(doc["cache"]["by_result"]["bypass"].get<double>(), 4);
  EXPECT_EQ(doc["bytes_by_source"]["dram"].get<double>(), 1024.0 * 1024 * 1024);
  EXPECT_EQ(doc["bytes_by_source"]["upstream"].get<double>(), 512.0 * 1024 * 1024);
  EXPECT_EQ(doc["cache_fill"]["disk_used_bytes"].get<double>(), 3.0 * (1ull << 30));
  EXPECT_EQ(doc["cache_fill"]["memory_promotions_declined"].get<double>(), 42);
  // 99 observations of 1 ms (bucket 0.0005..0.001) and one of 2 s, interpolated the way
  // Prometheus' histogram_quantile does.
  const auto& get = doc["latency_seconds"]["get"];
  EXPECT_EQ(get["count"].get<double>(), 100);
  EXPECT_NEAR(get["p50"].get<double>(), 0.0005 + 0.0005 * 50 / 99, 1e-12);
  EXPECT_NEAR(get["p99"].get<double>(), 0.001, 1e-12);
  EXPECT_TRUE(doc["latency_seconds"]["put"]["p50"].is_null());  // nothing observed
  EXPECT_NEAR(doc["upstream"]["latency_p50_seconds"].get<double>(), 0.01 + 0.015 * 0.5, 1e-12);
  EXPECT_EQ(doc["admission"]["shed"]["bytes"].get<double>(), 7);
  EXPECT_FALSE(doc["top_buckets"]["available"].get<bool>());
}

TEST(Stats, TextReportIsReadable) {
  auto report = stats_report(scrape(), false);
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_NE(report->find("hit ratio 90.0% (hit 90, miss 10, revalidated 0, bypass 4, disabled 0)"), std::string::npos)
      << *report;
  EXPECT_NE(report->find("dram 1.0 GiB (50.0%) disk 512.0 MiB (25.0%) upstream 512.0 MiB (25.0%)"), std::string::npos)
      << *report;
  EXPECT_NE(report->find("disk 3.0 GiB of 4.0 GiB (75.0%), DRAM 256.0 MiB of 512.0 MiB (42 disk reads kept out)"),
            std::string::npos)
      << *report;
  EXPECT_NE(report->find("get p50 753 us p99 1.0 ms (n=100)"), std::string::npos) << *report;
  EXPECT_NE(report->find("Top buckets   not available"), std::string::npos) << *report;
  EXPECT_EQ(report->find("e+"), std::string::npos) << "counts must not print in exponent form: " << *report;
}

// One HTTP server on 127.0.0.1 answering `count` requests with `status` and `body`.
class CannedServer {
 public:
  CannedServer(int status, std::string body, int count = 1) : acceptor_(ctx_, tcp::endpoint(tcp::v4(), 0)) {
    thread_ = std::thread([this, status, body = std::move(body), count] {
      for (int i = 0; i < count; ++i) {
        tcp::socket socket(ctx_);
        boost::system::error_code ec;
        acceptor_.accept(socket, ec);
        if (ec) return;
        boost::beast::flat_buffer buffer;
        bhttp::request<bhttp::string_body> req;
        bhttp::read(socket, buffer, req, ec);
        if (ec) continue;
        targets_.push_back(std::string(req.target()));
        bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(status), 11};
        res.body() = body;
        res.prepare_payload();
        bhttp::write(socket, res, ec);
      }
    });
  }
  ~CannedServer() {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    thread_.join();
  }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()); }
  const std::vector<std::string>& targets() const { return targets_; }

 private:
  asio::io_context ctx_;
  tcp::acceptor acceptor_;
  std::vector<std::string> targets_;
  std::thread thread_;
};

TEST(Endpoint, AcceptsWhatAwsEndpointUrlHolds) {
  auto plain = parse_endpoint("127.0.0.1:8080");
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(plain->host, "127.0.0.1");
  EXPECT_EQ(plain->port, "8080");
  auto url = parse_endpoint("http://localhost:9000/");
  ASSERT_TRUE(url.has_value());
  EXPECT_EQ(url->host, "localhost");
  EXPECT_EQ(url->port, "9000");
  auto no_port = parse_endpoint("http://tagd.internal");  // a URL: its scheme's port
  ASSERT_TRUE(no_port.has_value());
  EXPECT_EQ(no_port->host, "tagd.internal");
  EXPECT_EQ(no_port->port, "80");
  auto v6 = parse_endpoint("http://[::1]");
  ASSERT_TRUE(v6.has_value());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, "80");
  EXPECT_FALSE(parse_endpoint("localhost").has_value());  // not a URL: the port is required
  auto tls = parse_endpoint("https://tagd.internal:8080");
  ASSERT_FALSE(tls.has_value());
  EXPECT_NE(tls.error().message().find("plain HTTP only"), std::string::npos) << tls.error().message();
}

TEST(StatsMain, ReadsMetricsFromTheEndpoint) {
  const std::string endpoint = [] {
    CannedServer server(200, scrape());
    std::string ep = server.endpoint();
    ::testing::internal::CaptureStdout();
    EXPECT_EQ(stats_main({"--endpoint", ep}), 0);
    const std::string out = ::testing::internal::GetCapturedStdout();
    EXPECT_NE(out.find("hit ratio 90.0%"), std::string::npos) << out;
    return ep;
  }();
  // The server is gone: nothing answers there any more.
  EXPECT_EQ(stats_main({"--endpoint", endpoint, "--timeout", "2000"}), 1);
}

TEST(StatsMain, JsonFlagAndBadUsage) {
  {
    CannedServer server(200, scrape());
    ::testing::internal::CaptureStdout();
    EXPECT_EQ(stats_main({"--json", "--endpoint=http://" + server.endpoint()}), 0);
    const std::string out = ::testing::internal::GetCapturedStdout();
    EXPECT_DOUBLE_EQ(nlohmann::json::parse(out)["cache"]["hit_ratio"].get<double>(), 0.9) << out;
    EXPECT_EQ(server.targets(), std::vector<std::string>{"/metrics"});
  }
  EXPECT_EQ(stats_main({"--nope"}), 2);
  EXPECT_EQ(stats_main({"--endpoint", "no-port"}), 2);
  EXPECT_EQ(stats_main({"--timeout", "soon"}), 2);
  {
    CannedServer server(200, "<html>not metrics</html>\n");
    EXPECT_EQ(stats_main({"--endpoint", server.endpoint()}), 1);
  }
}

TEST(Healthcheck, ZeroOnlyWhenTheEndpointAnswers200) {
  {
    CannedServer server(200, "ok\n");
    EXPECT_EQ(healthcheck_main({"--endpoint", server.endpoint()}), 0);
    EXPECT_EQ(server.targets(), std::vector<std::string>{"/health"});
  }
  {
    CannedServer server(503, "not ready\n");
    EXPECT_EQ(healthcheck_main({"--ready", "--endpoint", server.endpoint()}), 1);
    EXPECT_EQ(server.targets(), std::vector<std::string>{"/ready"});
  }
  EXPECT_EQ(healthcheck_main({"--bogus"}), 2);
}

}  // namespace
}  // namespace tagd::cli
