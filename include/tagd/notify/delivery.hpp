#pragma once
// One endpoint's delivery: a thread of its own takes the oldest batch of its queue from
// the outbox, POSTs it, erases it on a 2xx, and otherwise waits the backoff and tries the
// same batch again, until max_attempts make its events dead letters. Request threads never
// wait on it: they only append to the outbox and wake() it.
#include <condition_variable>
#include <functional>
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
  // Everything passed by reference outlives the worker.
  DeliveryWorker(const Endpoint& endpoint, const Settings& settings, Outbox& outbox, Transport& transport,
                 const Clock& clock);
  ~DeliveryWorker();  // stop()
  DeliveryWorker(const DeliveryWorker&) = delete;
  DeliveryWorker& operator=(const DeliveryWorker&) = delete;

  void start();
  void wake();  // new events were appended
  void stop();  // ends the thread after the POST in flight (if any) returns

 private:
  void run();
  // One step: false when there was nothing to send or the batch failed (the caller waits).
  bool deliver_one();

  const Endpoint& endpoint_;
  const Settings& settings_;
  Outbox& outbox_;
  Transport& transport_;
  const Clock& clock_;
  RetryState retry_;
  std::mt19937_64 random_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool woken_ = false;
  std::chrono::system_clock::time_point retry_at_{};
  std::thread thread_;
};

}  // namespace tagd::notify
