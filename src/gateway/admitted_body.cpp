#include "admitted_body.hpp"

#include <algorithm>
#include <utility>

#include "tagd/core/metrics.hpp"

namespace tagd::gateway {

namespace asio = boost::asio;

AdmittedBody::AdmittedBody(BodySource& inner, std::optional<std::uint64_t> length)
    : inner_(inner), unsent_(length.value_or(0)), counted_(std::min(unsent_, kAdmissionWindow)) {
  if (counted_ > 0) metrics().inflight_response_bytes.add(static_cast<std::int64_t>(counted_));
}

AdmittedBody::~AdmittedBody() {
  if (counted_ > 0) metrics().inflight_response_bytes.add(-static_cast<std::int64_t>(counted_));
}

void AdmittedBody::sent(std::uint64_t n) {
  unsent_ -= std::min(n, unsent_);
  const std::uint64_t now = std::min(unsent_, kAdmissionWindow);
  if (now != counted_) {
    metrics().inflight_response_bytes.add(static_cast<std::int64_t>(now) - static_cast<std::int64_t>(counted_));
    counted_ = now;
  }
}

asio::awaitable<Result<std::size_t>> AdmittedBody::read(std::span<char> out) {
  sent(std::exchange(last_piece_, 0));
  auto n = co_await inner_.read(out);
  if (n) last_piece_ = *n;
  co_return n;
}

std::optional<Result<std::span<const char>>> AdmittedBody::try_next(std::span<char> scratch) {
  // The last piece is known sent either way (the writer is back for more); a nullopt
  // leaves nothing else changed for the next() that follows.
  sent(std::exchange(last_piece_, 0));
  auto piece = inner_.try_next(scratch);
  if (piece && *piece) last_piece_ = (*piece)->size();
  return piece;
}

asio::awaitable<Result<std::span<const char>>> AdmittedBody::next(std::span<char> scratch) {
  sent(std::exchange(last_piece_, 0));
  auto piece = co_await inner_.next(scratch);
  if (piece) last_piece_ = piece->size();
  co_return piece;
}

}  // namespace tagd::gateway
