#include "tagd/notify/delivery.hpp"

#include <spdlog/spdlog.h>

#include "tagd/core/metrics.hpp"

namespace tagd::notify {

DeliveryWorker::DeliveryWorker(const Endpoint& endpoint, const Settings& settings, Outbox& outbox, Transport& transport,
                               const Clock& clock)
    : endpoint_(endpoint),
      settings_(settings),
      outbox_(outbox),
      transport_(transport),
      clock_(clock),
      retry_(settings.max_attempts, settings.retry_base, settings.retry_max),
      random_(std::random_device{}()) {}

DeliveryWorker::~DeliveryWorker() {
  stop();
}

void DeliveryWorker::start() {
  thread_ = std::thread([this] { run(); });
}

void DeliveryWorker::wake() {
  {
    std::lock_guard lock(mu_);
    woken_ = true;
  }
  cv_.notify_one();
}

void DeliveryWorker::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void DeliveryWorker::run() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    const auto now = clock_.now();
    if (now < retry_at_) {
      // Backing off: new events do not shorten the wait (the receiver is what failed).
      cv_.wait_for(lock, retry_at_ - now, [this] { return stop_; });
      continue;
    }
    woken_ = false;
    lock.unlock();
    const bool sent = deliver_one();
    lock.lock();
    if (!sent && now >= retry_at_) {
      // Nothing queued (or the outbox could not be read): wait for an append. The
      // periodic wake-up is a backstop against a missed notification.
      cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stop_ || woken_; });
    }
  }
}

bool DeliveryWorker::deliver_one() {
  auto batch = outbox_.peek(endpoint_.name, settings_.batch_size);
  if (!batch) {
    spdlog::warn("notify: endpoint {}: cannot read the outbox: {}", endpoint_.name, batch.error().message());
    return false;
  }
  if (batch->empty()) return false;
  std::vector<std::string> encoded;
  encoded.reserve(batch->size());
  for (const auto& e : *batch) encoded.push_back(e.event_json);
  const std::string body = batch_payload(encoded);
  Status s = transport_.post(endpoint_, body, request_headers(endpoint_, body), settings_.timeout);
  auto& m = metrics();
  if (s) {
    retry_.on_success();
    if (Status r = outbox_.remove(endpoint_.name, *batch); !r) {
      spdlog::warn("notify: endpoint {}: delivered {} event(s) but cannot erase them (they will be sent again): {}",
                   endpoint_.name, batch->size(), r.message());
    }
    m.notify_events_delivered.inc(batch->size());
    m.notify_outbox_events.set(static_cast<std::int64_t>(outbox_.backlog()));
    return true;
  }
  m.notify_delivery_failures.inc();
  const double unit = std::uniform_real_distribution<double>(0.0, 1.0)(random_);
  const auto attempt = retry_.failures() + 1;
  auto decision = retry_.on_failure(clock_.now(), unit);
  if (decision.dead_letter) {
    m.notify_dead_lettered.inc(batch->size());
    spdlog::warn("notify: endpoint {}: {} event(s) given up after {} attempts (dead letters): {}", endpoint_.name,
                 batch->size(), attempt, s.message());
    if (Status r = outbox_.dead_letter(endpoint_.name, *batch, settings_.max_dead_letters); !r) {
      spdlog::warn("notify: endpoint {}: cannot move events to the dead letters: {}", endpoint_.name, r.message());
    }
    m.notify_outbox_events.set(static_cast<std::int64_t>(outbox_.backlog()));
    m.notify_dead_letters.set(static_cast<std::int64_t>(outbox_.dead_letter_count()));
    return true;
  }
  const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(decision.retry_at - clock_.now());
  spdlog::warn("notify: endpoint {}: delivery of {} event(s) failed (attempt {} of {}), next try in {} ms: {}",
               endpoint_.name, batch->size(), attempt, settings_.max_attempts, wait.count(), s.message());
  std::lock_guard lock(mu_);
  retry_at_ = decision.retry_at;
  return false;
}

}  // namespace tagd::notify
