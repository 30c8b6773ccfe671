// The HTTP cache rules applied to client and upstream headers: Range, the four
// conditionals, HTTP dates, upstream freshness (Cache-Control / Expires / Date), the
// client's Cache-Control / Pragma, and the cache-key decision.
//
// Input: consumed with FuzzedDataProvider (strings up to a newline-free length each).
// Invariants: a satisfiable range lies inside the object (first <= last < size) and its
// blocks are ordered; an unsatisfiable/absent range has no bytes; freshness never
// extends past now + ttl; a cacheable decision has no reason, a bypass has one.
#include <fuzzer/FuzzedDataProvider.h>

#include <boost/beast/http/fields.hpp>

#include "fuzz_common.hpp"
#include "tagd/cache/http_semantics.hpp"

using namespace tagd;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider fdp(data, size);
  const auto object_size = fdp.ConsumeBool() ? fdp.ConsumeIntegralInRange<std::uint64_t>(0, 1 << 20)
                                             : fdp.ConsumeIntegral<std::uint64_t>();
  const std::uint32_t block_size = 1u << fdp.ConsumeIntegralInRange<unsigned>(12, 24);
  const std::string range = fdp.ConsumeRandomLengthString(64);
  const std::string if_match = fdp.ConsumeRandomLengthString(64);
  const std::string if_none_match = fdp.ConsumeRandomLengthString(64);
  const std::string if_modified_since = fdp.ConsumeRandomLengthString(64);
  const std::string if_unmodified_since = fdp.ConsumeRandomLengthString(64);
  const std::string etag = fdp.ConsumeRandomLengthString(48);
  const std::string last_modified = fdp.ConsumeRandomLengthString(48);
  const std::string cache_control = fdp.ConsumeRandomLengthString(64);
  const std::string expires = fdp.ConsumeRandomLengthString(48);
  const std::string date = fdp.ConsumeRandomLengthString(48);
  const std::string pragma = fdp.ConsumeRandomLengthString(16);
  const std::uint8_t present = fdp.ConsumeIntegral<std::uint8_t>();
  const auto now = std::chrono::system_clock::time_point(
      std::chrono::seconds(fdp.ConsumeIntegralInRange<std::int64_t>(0, 2145916800)));  // 1970..2038
  const auto ttl = std::chrono::seconds(fdp.ConsumeIntegralInRange<std::int64_t>(0, 10 * 365 * 86400));
  std::vector<std::pair<std::string, std::string>> query;
  std::vector<std::pair<std::string, std::string>> headers;
  while (fdp.remaining_bytes() > 0 && query.size() + headers.size() < 8) {
    if (fdp.ConsumeBool()) {
      query.emplace_back(fdp.ConsumeRandomLengthString(24), fdp.ConsumeRandomLengthString(24));
    } else {
      headers.emplace_back(fdp.ConsumeRandomLengthString(48), fdp.ConsumeRandomLengthString(24));
    }
  }

  const auto r = cache::parse_range(range, object_size);
  if (r.kind == cache::RangeKind::kSatisfiable) {
    TAGD_FUZZ_CHECK(r.range.first <= r.range.last);
    TAGD_FUZZ_CHECK(r.range.last < object_size);
    TAGD_FUZZ_CHECK(r.range.length() <= object_size);
    const auto blocks = cache::blocks_for(r.range, block_size);
    TAGD_FUZZ_CHECK(blocks.first <= blocks.last);
    TAGD_FUZZ_CHECK(blocks.last <= (object_size - 1) / block_size);
  }

  cache::ConditionalHeaders h;
  if (present & 1) h.if_match = &if_match;
  if (present & 2) h.if_none_match = &if_none_match;
  if (present & 4) h.if_modified_since = &if_modified_since;
  if (present & 8) h.if_unmodified_since = &if_unmodified_since;
  const auto outcome = cache::evaluate_conditionals(h, etag, last_modified);
  if ((present & 15) == 0) TAGD_FUZZ_CHECK(outcome == cache::ConditionalOutcome::kProceed);

  (void)cache::parse_http_date(range);

  const auto f = cache::freshness(cache_control, expires, date, now, ttl);
  TAGD_FUZZ_CHECK(f.until <= now + ttl);

  (void)cache::client_directive(cache_control, pragma);

  const auto decision = cache::cache_key_for(query, headers);
  TAGD_FUZZ_CHECK(decision.cacheable == decision.reason.empty());
  {
    // The data path's form (the request's own fields) decides exactly alike.
    boost::beast::http::fields fields;
    bool representable = true;
    for (const auto& [n, v] : headers) {
      // Not headers a parser would produce: an empty name, or a value with leading or
      // trailing whitespace (RFC 9110 strips it, and Beast's fields trim it on insert, so
      // only the reason text, which quotes the value, could differ).
      const auto ows = [](char c) { return c == ' ' || c == '\t'; };
      if (n.empty() || (!v.empty() && (ows(v.front()) || ows(v.back())))) representable = false;
      if (representable) fields.insert(n, v);
    }
    if (representable) {
      const auto same = cache::cache_key_for(query, fields);
      TAGD_FUZZ_CHECK(same.cacheable == decision.cacheable && same.reason == decision.reason &&
                      same.variant == decision.variant && same.checksum_mode == decision.checksum_mode);
    }
  }
  if (decision.cacheable) {
    // The variant encoding is injective: it parses back to itself.
    TAGD_FUZZ_CHECK(cache::make_variant(cache::parse_variant(decision.variant)) == decision.variant);
  }
  cache::VariantParts parts;
  if (present & 16) parts.version_id = if_match;
  if (present & 32) parts.snapshot = if_none_match;
  const auto variant = cache::make_variant(parts);
  const auto parsed = cache::parse_variant(variant);
  TAGD_FUZZ_CHECK(parsed.version_id == parts.version_id);
  TAGD_FUZZ_CHECK(parsed.snapshot == parts.snapshot);
  (void)cache::parse_variant(range);

  // An upstream's answer to a fill (Content-Range from the wire).
  if (auto cr = cache::parse_content_range(expires)) {
    TAGD_FUZZ_CHECK(cr->first <= cr->last);
    TAGD_FUZZ_CHECK(cr->last < cr->size);
  }
  if (r.kind == cache::RangeKind::kSatisfiable) {
    std::string why;
    const cache::FillExpectation expected{r.range.first, r.range.last, object_size, etag};
    const int status = (present & 64) ? 206 : 200;
    const auto verdict = cache::check_fill_response(status, expires, date, last_modified, expected, why);
    if (verdict == cache::FillVerdict::kOk) {
      // Only an answer naming the expected object (quotes are not significant).
      auto unquote = [](std::string_view e) {
        if (e.size() >= 2 && e.front() == '"' && e.back() == '"') e = e.substr(1, e.size() - 2);
        return e;
      };
      TAGD_FUZZ_CHECK(!last_modified.empty() && unquote(last_modified) == unquote(etag));
    }
  }
  return 0;
}
