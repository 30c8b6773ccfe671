#include "tagd/notify/delivery.hpp"

#include <spdlog/spdlog.h>

#include "tagd/core/metrics.hpp"

namespace tagd::notify {

bool same_target(const Endpoint& a, const Endpoint& b) noexcept {
  return a.url == b.url && a.auth == b.auth && a.token == b.token && a.username == b.username &&
         a.password == b.password && a.hmac_secret == b.hmac_secret && a.hmac_header == b.hmac_header &&
         a.ca_file == b.ca_file && a.tls_verify == b.tls_verify;
}

DeliveryWorker::DeliveryWorker(std::shared_ptr<const Settings> settings, const Endpoint* endpoint, Outbox& outbox,
                               Transport& transport, const Clock& clock)
    : name_(endpoint->name),
      outbox_(outbox),
      transport_(transport),
      clock_(clock),
      random_(std::random_device{}()),
      settings_(std::move(settings)),
      endpoint_(endpoint),
      retry_(settings_->max_attempts, settings_->retry_base, settings_->retry_max) {}

DeliveryWorker::~DeliveryWorker() {
  stop();
}

void DeliveryWorker::start() {
  std::lock_guard lock(mu_);
  if (started_) return;
  started_ = true;
  thread_ = std::thread([this] { run(); });
}

void DeliveryWorker::wake() {
  {
    std::lock_guard lock(mu_);
    woken_ = true;
  }
  cv_.notify_one();
}

void DeliveryWorker::request_stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
}

void DeliveryWorker::stop() {
  request_stop();
  if (thread_.joinable()) thread_.join();
}

void DeliveryWorker::update(std::shared_ptr<const Settings> settings, const Endpoint* endpoint) {
  {
    std::lock_guard lock(mu_);
    const bool retarget = !same_target(*endpoint_, *endpoint);
    settings_ = std::move(settings);
    endpoint_ = endpoint;
    retry_.set_limits(settings_->max_attempts, settings_->retry_base, settings_->retry_max);
    if (retarget) {
      ++generation_;
      retry_.on_success();
      retry_at_ = {};
      woken_ = true;
    }
  }
  cv_.notify_one();
}

void DeliveryWorker::run() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    const auto now = clock_.now();
    if (now < retry_at_) {
      // Backing off: new events do not shorten the wait (the receiver is what failed);
      // a reload that retargets the endpoint does (update() clears retry_at_).
      const auto until = retry_at_;
      cv_.wait_for(lock, until - now, [&] { return stop_ || retry_at_ != until; });
      continue;
    }
    woken_ = false;
    lock.unlock();
    const bool sent = deliver_one();
    lock.lock();
    if (!sent && clock_.now() >= retry_at_ && !woken_) {
      // Nothing queued (or the outbox could not be read): wait for an append. The
      // periodic wake-up is a backstop against a missed notification.
      cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stop_ || woken_; });
    }
  }
}

bool DeliveryWorker::deliver_one() {
  std::shared_ptr<const Settings> settings;
  const Endpoint* endpoint = nullptr;
  std::uint64_t generation = 0;
  {
    std::lock_guard lock(mu_);
    settings = settings_;  // keeps *endpoint alive through this attempt
    endpoint = endpoint_;
    generation = generation_;
  }
  auto batch = outbox_.peek(name_, settings->batch_size);
  if (!batch) {
    spdlog::warn("notify: endpoint {}: cannot read the outbox: {}", name_, batch.error().message());
    return false;
  }
  if (batch->empty()) return false;
  std::vector<std::string> encoded;
  encoded.reserve(batch->size());
  for (const auto& e : *batch) encoded.push_back(e.event_json);
  const std::string body = batch_payload(encoded);
  Status s = transport_.post(*endpoint, body, request_headers(*endpoint, body), settings->timeout);
  auto& m = metrics();
  if (s) {
    {
      std::lock_guard lock(mu_);
      retry_.on_success();
    }
    m.notify_events_delivered.inc(batch->size());
    if (Status r = outbox_.remove(name_, *batch); !r) {
      // Not erased: the same batch would go out again at once, in a loop, while the
      // outbox cannot write; wait for the next append (or a second) instead.
      spdlog::warn("notify: endpoint {}: delivered {} event(s) but cannot erase them (they will be sent again): {}",
                   name_, batch->size(), r.message());
      return false;
    }
    m.notify_outbox_events.set(static_cast<std::int64_t>(outbox_.backlog()));
    return true;
  }
  m.notify_delivery_failures.inc();
  const double unit = std::uniform_real_distribution<double>(0.0, 1.0)(random_);
  std::unique_lock lock(mu_);
  if (generation != generation_) {
    // A reload retargeted the endpoint while this POST was in flight: its failure says
    // nothing about the new target, which is tried at once.
    return false;
  }
  const auto attempt = retry_.failures() + 1;
  const auto max_attempts = settings_->max_attempts;
  auto decision = retry_.on_failure(clock_.now(), unit);
  if (decision.dead_letter) {
    lock.unlock();
    m.notify_dead_lettered.inc(batch->size());
    spdlog::warn("notify: endpoint {}: {} event(s) given up after {} attempts (dead letters): {}", name_, batch->size(),
                 attempt, s.message());
    if (Status r = outbox_.dead_letter(name_, *batch, settings->max_dead_letters); !r) {
      spdlog::warn("notify: endpoint {}: cannot move events to the dead letters: {}", name_, r.message());
    }
    m.notify_outbox_events.set(static_cast<std::int64_t>(outbox_.backlog()));
    m.notify_dead_letters.set(static_cast<std::int64_t>(outbox_.dead_letter_count()));
    return true;
  }
  retry_at_ = decision.retry_at;
  lock.unlock();
  const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(decision.retry_at - clock_.now());
  spdlog::warn("notify: endpoint {}: delivery of {} event(s) failed (attempt {} of {}), next try in {} ms: {}", name_,
               batch->size(), attempt, max_attempts, wait.count(), s.message());
  return false;
}

}  // namespace tagd::notify
