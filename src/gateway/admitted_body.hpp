#pragma once
// Internal to the gateway module: the response bytes admission control counts
// (limits.max_inflight_bytes, docs/configuration.md "Admission").
//
// In-flight bytes are the body bytes of responses being sent that have not been handed
// to the socket yet, each response counting at most kAdmissionWindow of them. Not the
// whole Content-Length: one large download would otherwise hold the limit on its own for
// minutes; a window is what tagd commits to a response in the near term (one coalesced
// fetch at the default cache.max_fetch) and what competes for the link with the next
// request. Bodies of unknown length (chunked relays: listings, errors) count nothing.
// Fills are bounded separately, by cache.fill_budget.
#include <cstdint>
#include <optional>

#include "tagd/core/body_source.hpp"

namespace tagd::gateway {

inline constexpr std::uint64_t kAdmissionWindow = 8ull << 20;

// Wraps a body on its way to the client and keeps tagd_inflight_response_bytes in step:
// it adds the response's window when built, takes off each piece once the writer comes
// back for the next one (the writer reads again only after the client took the last
// piece), and takes off what is left when destroyed (body ended, failed or abandoned).
class AdmittedBody final : public BodySource {
 public:
  AdmittedBody(BodySource& inner, std::optional<std::uint64_t> length);
  ~AdmittedBody() override;
  AdmittedBody(const AdmittedBody&) = delete;
  AdmittedBody& operator=(const AdmittedBody&) = delete;

  [[nodiscard]] boost::asio::awaitable<Result<std::size_t>> read(std::span<char> out) override;
  [[nodiscard]] boost::asio::awaitable<Result<std::span<const char>>> next(std::span<char> scratch) override;
  [[nodiscard]] std::optional<Result<std::span<const char>>> try_next(std::span<char> scratch) override;
  [[nodiscard]] PieceFile lend_piece_file() override { return inner_.lend_piece_file(); }
  [[nodiscard]] std::optional<std::uint64_t> length() const override { return inner_.length(); }

  // What this response counts in the gauge now.
  std::uint64_t counted() const noexcept { return counted_; }

 private:
  void sent(std::uint64_t n);

  BodySource& inner_;
  std::uint64_t unsent_ = 0;
  std::uint64_t counted_ = 0;
  std::uint64_t last_piece_ = 0;  // handed out by the last next()/read(), not yet known sent
};

}  // namespace tagd::gateway
