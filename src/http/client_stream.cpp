#include "tagd/http/client_stream.hpp"

#include <time.h>

#include <boost/asio/steady_timer.hpp>

namespace tagd::http {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

struct ConnectionDeadline::State {
  State(const asio::any_io_executor& executor, asio::ip::tcp::socket& s) : timer(executor), socket(&s) {}
  asio::steady_timer timer;
  asio::ip::tcp::socket* socket;  // null once the connection is gone
  Clock::time_point deadline = Clock::time_point::max();
  Clock::time_point armed_at = Clock::time_point::max();  // the timer's expiry while waiting
  bool waiting = false;
  bool expired = false;
  Clock::duration recancel_period{};  // while expired: how long until the socket is cancelled again
};

namespace {
// After a deadline passed, the socket is cancelled again at these intervals until a new
// deadline is set: a step of a composed operation (a TLS record already buffered, a
// speculative recv that completed at once) may have been queued rather than waiting on
// the socket when it was cancelled, and what it starts next would wait unbounded.
constexpr Clock::duration kFirstRecancel = std::chrono::milliseconds(50);
constexpr Clock::duration kMaxRecancel = std::chrono::seconds(1);
}  // namespace

ConnectionDeadline::ConnectionDeadline(const asio::any_io_executor& executor, asio::ip::tcp::socket& socket)
    : state_(std::make_shared<State>(executor, socket)) {}

ConnectionDeadline::~ConnectionDeadline() {
  state_->socket = nullptr;
  state_->timer.cancel();
}

void ConnectionDeadline::arm(const std::shared_ptr<State>& state) { wait_until(state, state->deadline); }

void ConnectionDeadline::wait_until(const std::shared_ptr<State>& state, std::chrono::steady_clock::time_point t) {
  // Re-arming a waiting timer cancels its wait: that handler sees the new expiry and
  // leaves the new wait in charge.
  state->armed_at = t;
  state->waiting = true;
  state->timer.expires_at(t);
  state->timer.async_wait([state](const boost::system::error_code&) { on_timer(state); });
}

void ConnectionDeadline::on_timer(const std::shared_ptr<State>& state) {
  if (state->socket == nullptr) return;  // the connection is gone
  const auto now = Clock::now();
  if (state->armed_at > now && state->armed_at != Clock::time_point::max()) return;  // superseded
  state->waiting = false;
  state->armed_at = Clock::time_point::max();
  boost::system::error_code ignored;
  if (state->expired) {
    // No new deadline since it passed: whatever started on the socket since is cancelled too.
    state->socket->cancel(ignored);
    state->recancel_period = std::min(state->recancel_period * 2, kMaxRecancel);
    wait_until(state, now + state->recancel_period);
    return;
  }
  if (state->deadline == Clock::time_point::max()) return;  // expires_never since
  if (state->deadline > now) {
    arm(state);  // extended since: wait for the latest deadline
    return;
  }
  state->expired = true;
  state->socket->cancel(ignored);
  state->recancel_period = kFirstRecancel;
  wait_until(state, now + state->recancel_period);
}

namespace {
// The coarse monotonic clock (the same clock as steady_clock, read without the TSC): a
// deadline set up to a scheduler tick early is no loss for timeouts of seconds, and this
// runs for every read and write.
Clock::time_point coarse_now() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return Clock::time_point(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec));
}
}  // namespace

void ConnectionDeadline::expires_after(Clock::duration d) {
  State& s = *state_;
  s.deadline = coarse_now() + d;
  s.expired = false;
  // A wait already outstanding for an earlier time covers this deadline (it moves itself
  // on); a later one (an idle wait when a shorter header timeout starts) must come forward.
  if (!s.waiting || s.deadline < s.armed_at) arm(state_);
}

void ConnectionDeadline::expires_never() {
  state_->deadline = Clock::time_point::max();
  state_->expired = false;
}

bool ConnectionDeadline::expired() const noexcept { return state_->expired; }

}  // namespace tagd::http
