#include "tagd/notify/notifier.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "tagd/core/metrics.hpp"
#include "tagd/notify/delivery.hpp"
#include "tagd/notify/outbox.hpp"

namespace tagd::notify {

namespace asio = boost::asio;

namespace {

// A completion waiting for its append: type-erased, move-only (an awaitable's handler
// cannot be copied into a std::function).
struct Completion {
  virtual ~Completion() = default;
  virtual void complete(Status status) = 0;
};

template <class Handler>
struct HandlerCompletion final : Completion {
  explicit HandlerCompletion(Handler h)
      : handler(std::move(h)), work(asio::make_work_guard(asio::get_associated_executor(handler))) {}
  void complete(Status status) override {
    // Resumed on the waiting coroutine's own executor (its event loop), never here.
    auto ex = work.get_executor();
    asio::post(ex, [h = std::move(handler), s = std::move(status)]() mutable { h(std::move(s)); });
    work.reset();
  }
  Handler handler;
  asio::executor_work_guard<asio::associated_executor_t<Handler>> work;
};

struct PromiseCompletion final : Completion {
  std::promise<Status> promise;
  void complete(Status status) override { promise.set_value(std::move(status)); }
};

struct Pending {
  std::vector<OutboxEntry> entries;
  std::unique_ptr<Completion> done;
};

// An endpoint a reload removed: its thread is stopped, then its queue is dead-lettered
// once every append that may still carry events for it has been written.
struct Retiring {
  std::string name;
  std::unique_ptr<DeliveryWorker> worker;
  std::uint64_t flush_target = 0;  // appends submitted before the reload
};

}  // namespace

struct Notifier::Impl {
  std::unique_ptr<Transport> transport;
  const Clock& clock;
  std::unique_ptr<Outbox> outbox;

  // The settings in force and the writer's queue, under one mutex: an append's entries
  // are worked out and queued under it, so a reload knows which appends were routed by
  // the settings it replaced (those submitted before it swapped them).
  mutable std::mutex mu;
  std::condition_variable cv;       // the writer: pending or stopping
  std::condition_variable flushed;  // `written` advanced
  std::shared_ptr<const Settings> settings;
  std::deque<Pending> pending;
  std::uint64_t submitted = 0;  // appends queued, ever
  std::uint64_t written = 0;    // appends the writer finished (ok or not)
  bool stopping = false;
  std::thread writer;

  // Delivery threads, by endpoint name (lock order: workers_mu, then a worker's own).
  std::mutex workers_mu;
  std::condition_variable retire_cv;
  std::condition_variable retired_cv;
  std::map<std::string, std::unique_ptr<DeliveryWorker>> workers;
  std::deque<Retiring> retiring;
  bool retirer_stop = false;
  std::thread retirer;

  std::mutex reload_mu;  // one reload at a time

  Impl(std::shared_ptr<const Settings> s, std::unique_ptr<Transport> t, const Clock& c)
      : transport(std::move(t)), clock(c), settings(std::move(s)) {}

  std::shared_ptr<const Settings> current() const {
    std::lock_guard lock(mu);
    return settings;
  }

  void wake_workers() {
    std::lock_guard lock(workers_mu);
    for (auto& [_, w] : workers) w->wake();
  }

  // Group commit: every append waiting when the writer wakes goes into one synced batch.
  void write_loop() {
    std::unique_lock lock(mu);
    for (;;) {
      cv.wait(lock, [this] { return stopping || !pending.empty(); });
      if (pending.empty()) return;  // stopping, and nothing left to write
      std::deque<Pending> batch;
      batch.swap(pending);
      lock.unlock();
      std::vector<OutboxEntry> all;
      for (auto& p : batch) {
        for (auto& e : p.entries) all.push_back(std::move(e));
      }
      Status s = outbox->append(all);
      auto& m = metrics();
      if (s) {
        m.notify_events_recorded.inc(all.size());
        m.notify_outbox_events.set(static_cast<std::int64_t>(outbox->backlog()));
      } else {
        m.notify_outbox_errors.inc(all.size());
        spdlog::warn("notify: {} event(s) could not be written to the outbox; the writes are answered 503: {}",
                     all.size(), s.message());
      }
      for (auto& p : batch) p.done->complete(s);
      if (s) wake_workers();
      lock.lock();
      written += batch.size();
      flushed.notify_all();
    }
  }

  // Queues the entries of `events` for the writer, or completes `done` at once: nothing
  // matched, the outbox is full and when_full is drop (counted, logged), or stopping.
  void submit(std::vector<Event> events, std::unique_ptr<Completion> done) {
    Status immediate = Status::ok();
    std::size_t dropped = 0;
    std::uint64_t backlog = 0;
    {
      std::lock_guard lock(mu);
      if (stopping) {
        immediate = Status(ErrorCode::kServiceUnavailable, "notifications are shutting down");
      } else if (auto entries = entries_for(*settings, events); !entries.empty()) {
        backlog = outbox->backlog();
        if (settings->when_full == WhenFull::kDrop && backlog >= settings->max_outbox_events) {
          dropped = entries.size();
        } else {
          pending.push_back(Pending{std::move(entries), std::move(done)});
          ++submitted;
          cv.notify_one();
          return;
        }
      }
    }
    if (dropped > 0) {
      metrics().notify_dropped_events.inc(dropped);
      spdlog::warn("notify: outbox full ({} events, notify max_outbox_events): {} event(s) dropped (when_full=drop)",
                   backlog, dropped);
    }
    done->complete(std::move(immediate));
  }

  // Entries for every endpoint that takes each event; ids and times filled in.
  std::vector<OutboxEntry> entries_for(const Settings& s, std::vector<Event>& events) const {
    std::vector<OutboxEntry> out;
    for (auto& e : events) {
      bool encoded = false;
      std::string json;
      for (const auto& ep : s.endpoints) {
        if (!ep.filter.matches(e.bucket, e.key, e.type)) continue;
        if (!encoded) {
          if (e.id.empty()) e.id = new_event_id();
          if (e.time == std::chrono::system_clock::time_point{}) e.time = clock.now();
          json = event_json(e);
          encoded = true;
        }
        out.push_back({ep.name, json});
      }
    }
    return out;
  }

  // The queue of an endpoint a reload removed, moved to its dead letters.
  void dead_letter_queue(const std::string& name) {
    const auto s = current();
    std::uint64_t moved = 0;
    for (;;) {
      auto batch = outbox->peek(name, 1000);
      if (!batch) {
        spdlog::warn("notify: endpoint {} (removed): cannot read its queue: {}", name, batch.error().message());
        break;
      }
      if (batch->empty()) break;
      if (Status r = outbox->dead_letter(name, *batch, s->max_dead_letters); !r) {
        spdlog::warn("notify: endpoint {} (removed): cannot move its queue to the dead letters: {}", name, r.message());
        break;
      }
      moved += batch->size();
    }
    if (moved == 0) return;
    auto& m = metrics();
    m.notify_dead_lettered.inc(moved);
    m.notify_outbox_events.set(static_cast<std::int64_t>(outbox->backlog()));
    m.notify_dead_letters.set(static_cast<std::int64_t>(outbox->dead_letter_count()));
    spdlog::warn("notify: endpoint {} was removed by a reload: its {} undelivered event(s) are dead letters now", name,
                 moved);
  }

  void retire_loop() {
    std::unique_lock lock(workers_mu);
    for (;;) {
      retire_cv.wait(lock, [this] { return retirer_stop || !retiring.empty(); });
      if (retiring.empty()) return;  // stopping, and nothing left to retire
      // The front stays queued until done: a reload that adds the name back meanwhile
      // sees it and leaves the new thread for this loop to start.
      DeliveryWorker* worker = retiring.front().worker.get();
      const std::string name = retiring.front().name;
      const std::uint64_t target = retiring.front().flush_target;
      lock.unlock();
      worker->stop();  // after its POST in flight, if any
      {
        std::unique_lock wl(mu);
        flushed.wait(wl, [&] { return written >= target; });
      }
      lock.lock();
      const bool configured_again = workers.count(name) > 0;
      lock.unlock();
      if (!configured_again) dead_letter_queue(name);
      lock.lock();
      retiring.pop_front();
      auto again = workers.find(name);
      const bool still_retiring =
          std::any_of(retiring.begin(), retiring.end(), [&](const Retiring& r) { return r.name == name; });
      if (again != workers.end() && !still_retiring) again->second->start();
      retired_cv.notify_all();
    }
  }
};

Notifier::Notifier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<Notifier> Notifier::start(Settings settings, std::unique_ptr<Transport> transport, const Clock& clock) {
  auto outbox = Outbox::open(settings.outbox_path);
  return start(std::move(settings), std::move(transport), clock, std::move(outbox));
}

std::unique_ptr<Notifier> Notifier::start(Settings settings, std::unique_ptr<Transport> transport, const Clock& clock,
                                          std::unique_ptr<Outbox> outbox) {
  auto shared = std::make_shared<const Settings>(std::move(settings));
  auto impl = std::make_unique<Impl>(shared, std::move(transport), clock);
  impl->outbox = std::move(outbox);
  auto& m = metrics();
  m.notify_outbox_events.set(static_cast<std::int64_t>(impl->outbox->backlog()));
  m.notify_dead_letters.set(static_cast<std::int64_t>(impl->outbox->dead_letter_count()));
  m.notify_endpoints.set(static_cast<std::int64_t>(shared->endpoints.size()));
  for (const auto& name : impl->outbox->queues()) {
    bool configured = false;
    for (const auto& ep : shared->endpoints) configured = configured || ep.name == name;
    if (!configured) {
      spdlog::warn(
          "notify: the outbox holds {} event(s) for endpoint '{}', which is no longer configured; they stay "
          "until it is configured again",
          impl->outbox->backlog(name), name);
    }
  }
  for (const auto& ep : shared->endpoints) {
    impl->workers.emplace(ep.name,
                          std::make_unique<DeliveryWorker>(shared, &ep, *impl->outbox, *impl->transport, impl->clock));
  }
  spdlog::info("notify: {} endpoint(s), outbox {} ({} event(s) pending, {} dead letters)", shared->endpoints.size(),
               shared->outbox_path, impl->outbox->backlog(), impl->outbox->dead_letter_count());
  for (auto& [_, w] : impl->workers) w->start();
  impl->writer = std::thread([p = impl.get()] { p->write_loop(); });
  impl->retirer = std::thread([p = impl.get()] { p->retire_loop(); });
  return std::unique_ptr<Notifier>(new Notifier(std::move(impl)));
}

Notifier::~Notifier() {
  stop();
}

void Notifier::stop() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_one();
  if (impl_->writer.joinable()) impl_->writer.join();
  {
    std::lock_guard lock(impl_->workers_mu);
    impl_->retirer_stop = true;
  }
  impl_->retire_cv.notify_all();
  if (impl_->retirer.joinable()) impl_->retirer.join();
  for (auto& [_, w] : impl_->workers) w->stop();
}

bool Notifier::wants(std::string_view bucket, std::string_view key, EventType type) const noexcept {
  std::lock_guard lock(impl_->mu);
  for (const auto& ep : impl_->settings->endpoints) {
    if (ep.filter.matches(bucket, key, type)) return true;
  }
  return false;
}

Status Notifier::admit() const {
  const auto s = impl_->current();
  if (s->when_full != WhenFull::kReject || impl_->outbox->backlog() < s->max_outbox_events) return Status::ok();
  metrics().notify_rejected_writes.inc();
  spdlog::warn(
      "notify: outbox full ({} events, notify max_outbox_events): write refused with SlowDown "
      "(when_full=reject) until deliveries drain it",
      impl_->outbox->backlog());
  return Status(ErrorCode::kSlowDown, "Please reduce your request rate.");
}

asio::awaitable<Status> Notifier::record(std::vector<Event> events) {
  co_return co_await asio::async_initiate<decltype(asio::use_awaitable), void(Status)>(
      [this, &events](auto handler) {
        using H = decltype(handler);
        impl_->submit(std::move(events), std::make_unique<HandlerCompletion<H>>(std::move(handler)));
      },
      asio::use_awaitable);
}

Status Notifier::record_sync(std::vector<Event> events) {
  auto done = std::make_unique<PromiseCompletion>();
  auto result = done->promise.get_future();
  impl_->submit(std::move(events), std::move(done));
  return result.get();
}

Status Notifier::reload(const std::string& config_file, const std::string& default_outbox_path) {
  Settings settings;
  try {
    settings = load_settings(config_file, default_outbox_path);
  } catch (const std::exception& e) {
    metrics().notify_reloads_failed.inc();
    spdlog::error("notify: reload refused, keeping the {} endpoint(s) in use: {}", impl_->current()->endpoints.size(),
                  e.what());
    return Status(ErrorCode::kInvalidArgument, e.what());
  }
  return reload(std::move(settings));
}

Status Notifier::reload(Settings settings) {
  std::lock_guard reload_lock(impl_->reload_mu);
  auto& m = metrics();
  const auto old = impl_->current();
  if (settings.outbox_path != old->outbox_path) {
    // The outbox stays open (a second one would split the queues): a restart moves it.
    const std::string why = "outbox_path " + settings.outbox_path + " differs from the one in use (" +
                            old->outbox_path + "); moving the outbox needs a restart";
    m.notify_reloads_failed.inc();
    spdlog::error("notify: reload refused, keeping the {} endpoint(s) in use: {}", old->endpoints.size(), why);
    return Status(ErrorCode::kInvalidArgument, why);
  }
  auto next = std::make_shared<const Settings>(std::move(settings));
  std::uint64_t target = 0;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping) return Status(ErrorCode::kServiceUnavailable, "notifications are shutting down");
    impl_->settings = next;
    target = impl_->submitted;
  }
  std::vector<std::string> added, removed, retargeted;
  {
    std::lock_guard lock(impl_->workers_mu);
    for (auto it = impl_->workers.begin(); it != impl_->workers.end();) {
      const bool kept = std::any_of(next->endpoints.begin(), next->endpoints.end(),
                                    [&](const Endpoint& e) { return e.name == it->first; });
      if (kept) {
        ++it;
        continue;
      }
      removed.push_back(it->first);
      it->second->request_stop();  // it finishes its POST in flight; the retirer joins it
      impl_->retiring.push_back({it->first, std::move(it->second), target});
      it = impl_->workers.erase(it);
    }
    for (const auto& ep : next->endpoints) {
      if (auto it = impl_->workers.find(ep.name); it != impl_->workers.end()) {
        for (const auto& before : old->endpoints) {
          if (before.name == ep.name && !same_target(before, ep)) retargeted.push_back(ep.name);
        }
        it->second->update(next, &ep);
        continue;
      }
      added.push_back(ep.name);
      auto w = std::make_unique<DeliveryWorker>(next, &ep, *impl_->outbox, *impl_->transport, impl_->clock);
      // Removed by an earlier reload and not retired yet: the retirer starts it once the
      // old thread is gone (two threads must not deliver one queue).
      const bool wait = std::any_of(impl_->retiring.begin(), impl_->retiring.end(),
                                    [&](const Retiring& r) { return r.name == ep.name; });
      if (!wait) w->start();
      impl_->workers.emplace(ep.name, std::move(w));
    }
  }
  impl_->retire_cv.notify_all();
  m.notify_reloads_ok.inc();
  m.notify_endpoints.set(static_cast<std::int64_t>(next->endpoints.size()));
  auto list = [](const std::vector<std::string>& v) {
    std::string out;
    for (const auto& n : v) out += (out.empty() ? "" : ", ") + n;
    return out.empty() ? std::string("none") : out;
  };
  spdlog::info("notify: reloaded: {} endpoint(s); added: {}; removed: {}; new URL or credentials: {}",
               next->endpoints.size(), list(added), list(removed), list(retargeted));
  return Status::ok();
}

std::shared_ptr<const Settings> Notifier::settings() const {
  return impl_->current();
}

Outbox& Notifier::outbox() noexcept {
  return *impl_->outbox;
}

void Notifier::wait_for_retired() {
  std::unique_lock lock(impl_->workers_mu);
  impl_->retired_cv.wait(lock, [this] { return impl_->retiring.empty(); });
}

}  // namespace tagd::notify
