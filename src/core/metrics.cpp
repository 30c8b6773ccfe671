#include "tagd/core/metrics.hpp"

#include <sstream>

namespace tagd {

Metrics& metrics() {
  static Metrics instance;
  return instance;
}

std::string Metrics::render_prometheus() const {
  std::ostringstream out;
  auto counter = [&](const char* name, const char* help, const Counter& c, const char* labels = "") {
    out << "# HELP tagd_" << name << " " << help << "\n# TYPE tagd_" << name << " counter\n"
        << "tagd_" << name << labels << " " << c.get() << "\n";
  };
  auto gauge = [&](const char* name, const char* help, const Gauge& g) {
    out << "# HELP tagd_" << name << " " << help << "\n# TYPE tagd_" << name << " gauge\n"
        << "tagd_" << name << " " << g.get() << "\n";
  };
  counter("requests_total", "Requests received", requests_total);
  out << "# HELP tagd_responses_total Responses by status class\n# TYPE tagd_responses_total counter\n"
      << "tagd_responses_total{class=\"2xx\"} " << responses_2xx.get() << "\n"
      << "tagd_responses_total{class=\"3xx\"} " << responses_3xx.get() << "\n"
      << "tagd_responses_total{class=\"4xx\"} " << responses_4xx.get() << "\n"
      << "tagd_responses_total{class=\"5xx\"} " << responses_5xx.get() << "\n";
  counter("request_body_bytes_total", "Payload bytes received from clients", request_body_bytes);
  counter("response_body_bytes_total", "Body bytes sent to clients", response_body_bytes);
  counter("auth_failures_total", "Requests refused by signature checks", auth_failures);
  counter("policy_denials_total", "Requests refused by key policy", policy_denials);
  counter("body_verification_failures_total", "Uploads aborted on a digest or chunk signature mismatch",
          body_verification_failures);
  counter("slow_down_total", "Requests refused with SlowDown (max_inflight_requests)", slow_down_rejections);
  counter("client_timeouts_total", "Connections cut because the client was too slow", client_timeouts);
  counter("client_aborts_total", "Clients that went away mid-response", client_aborts);
  counter("upstream_requests_total", "Requests sent upstream", upstream_requests);
  counter("upstream_retries_total", "Upstream attempts retried", upstream_retries);
  counter("upstream_errors_total", "Requests answered 502/503/504 because of the upstream", upstream_errors);
  counter("upstream_truncated_bodies_total", "Upstream responses that ended early", upstream_truncated_bodies);
  counter("upstream_connect_errors_total", "Failed upstream connects", upstream_connect_errors);
  counter("upstream_tls_errors_total", "Failed upstream TLS handshakes", upstream_tls_errors);
  counter("upstream_connections_opened_total", "Upstream connections opened", upstream_connections_opened);
  counter("upstream_connections_reused_total", "Upstream requests on a kept-alive connection",
          upstream_connections_reused);
  out << "# HELP tagd_cache_requests_total Object GET/HEAD outcomes (same source as X-Cache)\n"
      << "# TYPE tagd_cache_requests_total counter\n"
      << "tagd_cache_requests_total{result=\"hit\"} " << cache_hits.get() << "\n"
      << "tagd_cache_requests_total{result=\"miss\"} " << cache_misses.get() << "\n"
      << "tagd_cache_requests_total{result=\"revalidated\"} " << cache_revalidated.get() << "\n"
      << "tagd_cache_requests_total{result=\"bypass\"} " << cache_bypass.get() << "\n"
      << "tagd_cache_requests_total{result=\"disabled\"} " << cache_disabled.get() << "\n";
  counter("cache_hit_bytes_total", "Body bytes served from the cache", cache_hit_bytes);
  counter("cache_fill_bytes_total", "Bytes fetched from upstream into the cache", cache_fill_bytes);
  counter("cache_fills_started_total", "Fills started", cache_fills_started);
  counter("cache_fills_completed_total", "Fills that completed", cache_fills_completed);
  counter("cache_fills_failed_total", "Fills that failed or were truncated (nothing partial published)",
          cache_fills_failed);
  counter("cache_fills_rejected_total", "Objects served but not cached: fill budget spent", cache_fills_rejected);
  counter("cache_joined_fills_total", "Waits on a fill in progress (object head or block being fetched)",
          cache_joined_fills);
  counter("cache_checksum_failures_total", "Corrupt cache blocks detected (dropped and refetched)",
          cache_checksum_failures);
  counter("cache_write_errors_total", "Cache device write failures (disk full, I/O error)", cache_write_errors);
  counter("cache_stale_served_total", "Stale entries served because the upstream failed", cache_stale_served);
  counter("cache_invalidations_total", "Entries invalidated by writes through tagd", cache_invalidations);
  counter("cache_changed_resets_total",
          "Responses cut (connection reset) because the object changed upstream after the head was sent",
          cache_changed_resets);
  gauge("cache_enabled", "1 if the cache is in use", cache_enabled);
  gauge("inflight_requests", "Requests in flight", inflight_requests);
  gauge("open_connections", "Client connections open", open_connections);
  gauge("io_uring_enabled", "1 if io_uring is in use, 0 if tagd fell back", io_uring_enabled);
  gauge("draining", "1 while shutting down", draining);
  return out.str();
}

}  // namespace tagd
