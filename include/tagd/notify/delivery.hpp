#pragma once
// One endpoint's delivery: a thread of its own takes the oldest batch of its queue from
// the outbox, POSTs it, erases it on a 2xx, and otherwise waits the backoff and tries the
// same batch again, until max_attempts make its events dead letters. Request threads never
// wait on it: they only append to the outbox and wake() it.
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <thread>

#include "tagd/core/clock.hpp"
#include "tagd/notify/backoff.hpp"
#include "tagd/notify/outbox.hpp"
#include "tagd/notify/settings.hpp"
#include "tagd/notify/transport.hpp"

namespace tagd::notify {

class DeliveryWorker {
 public:
  // `endpoint` points into `*settings`. outbox, transport and clock outlive the worker.
  DeliveryWorker(std::shared_ptr<const Settings> settings, const Endpoint* endpoint, Outbox& outbox,
                 Transport& transport, const Clock& clock);
  ~DeliveryWorker();  // stop()
  DeliveryWorker(const DeliveryWorker&) = delete;
  DeliveryWorker& operator=(const DeliveryWorker&) = delete;

  void start();         // once; later calls do nothing
  void wake();          // new events were appended
  void stop();          // ends the thread after the POST in flight (if any) returns
  void request_stop();  // the same without waiting for the thread

  // A reload: the next attempt uses `endpoint` (same name, in `*settings`) and the new
  // limits. When where or how it posts changed (URL, auth, HMAC, TLS) the backoff and the
  // attempt count start afresh and the next attempt is made at once: the old failures
  // say nothing about the new target. The POST in flight, if any, finishes as it began.
  void update(std::shared_ptr<const Settings> settings, const Endpoint* endpoint);
  const std::string& name() const noexcept { return name_; }

 private:
  void run();
  // One step: false when there was nothing to send or the batch failed (the caller waits).
  bool deliver_one();

  const std::string name_;
  Outbox& outbox_;
  Transport& transport_;
  const Clock& clock_;
  std::mt19937_64 random_;
  std::mutex mu_;  // everything below
  std::condition_variable cv_;
  std::shared_ptr<const Settings> settings_;
  const Endpoint* endpoint_;
  RetryState retry_;
  std::uint64_t generation_ = 0;  // bumped by update() when the target changed
  bool stop_ = false;
  bool woken_ = false;
  bool started_ = false;
  std::chrono::system_clock::time_point retry_at_{};
  std::thread thread_;
};

// Whether a reload changed where or how an endpoint's batches are posted.
bool same_target(const Endpoint& a, const Endpoint& b) noexcept;

}  // namespace tagd::notify
