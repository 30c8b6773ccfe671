#include "tagd/notify/notifier.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <condition_variable>
#include <deque>
#include <future>
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

}  // namespace

struct Notifier::Impl {
  Settings settings;
  std::unique_ptr<Transport> transport;
  const Clock& clock;
  std::unique_ptr<Outbox> outbox;
  std::vector<std::unique_ptr<DeliveryWorker>> workers;

  std::mutex mu;
  std::condition_variable cv;
  std::deque<Pending> pending;
  bool stopping = false;
  std::thread writer;

  Impl(Settings s, std::unique_ptr<Transport> t, const Clock& c)
      : settings(std::move(s)), transport(std::move(t)), clock(c) {}

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
      if (s) {
        for (auto& w : workers) w->wake();
      }
      lock.lock();
    }
  }

  void submit(Pending p) {
    {
      std::lock_guard lock(mu);
      if (!stopping) {
        pending.push_back(std::move(p));
        cv.notify_one();
        return;
      }
    }
    p.done->complete(Status(ErrorCode::kServiceUnavailable, "notifications are shutting down"));
  }

  // Entries for every endpoint that takes each event; ids and times filled in.
  std::vector<OutboxEntry> entries_for(std::vector<Event>& events) const {
    std::vector<OutboxEntry> out;
    for (auto& e : events) {
      bool encoded = false;
      std::string json;
      for (const auto& ep : settings.endpoints) {
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

  // When the outbox is full and when_full is drop: counted, logged; true if dropped.
  bool drop_if_full(std::size_t n) const {
    if (settings.when_full != WhenFull::kDrop || outbox->backlog() < settings.max_outbox_events) return false;
    metrics().notify_dropped_events.inc(n);
    spdlog::warn("notify: outbox full ({} events, notify max_outbox_events): {} event(s) dropped (when_full=drop)",
                 outbox->backlog(), n);
    return true;
  }
};

Notifier::Notifier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<Notifier> Notifier::start(Settings settings, std::unique_ptr<Transport> transport, const Clock& clock) {
  auto impl = std::make_unique<Impl>(std::move(settings), std::move(transport), clock);
  impl->outbox = Outbox::open(impl->settings.outbox_path);
  auto& m = metrics();
  m.notify_outbox_events.set(static_cast<std::int64_t>(impl->outbox->backlog()));
  m.notify_dead_letters.set(static_cast<std::int64_t>(impl->outbox->dead_letter_count()));
  for (const auto& name : impl->outbox->queues()) {
    bool configured = false;
    for (const auto& ep : impl->settings.endpoints) configured = configured || ep.name == name;
    if (!configured) {
      spdlog::warn(
          "notify: the outbox holds {} event(s) for endpoint '{}', which is no longer configured; they stay "
          "until it is configured again",
          impl->outbox->backlog(name), name);
    }
  }
  for (const auto& ep : impl->settings.endpoints) {
    impl->workers.push_back(
        std::make_unique<DeliveryWorker>(ep, impl->settings, *impl->outbox, *impl->transport, impl->clock));
  }
  spdlog::info("notify: {} endpoint(s), outbox {} ({} event(s) pending, {} dead letters)",
               impl->settings.endpoints.size(), impl->settings.outbox_path, impl->outbox->backlog(),
               impl->outbox->dead_letter_count());
  for (auto& w : impl->workers) w->start();
  impl->writer = std::thread([p = impl.get()] { p->write_loop(); });
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
  for (auto& w : impl_->workers) w->stop();
}

bool Notifier::wants(std::string_view bucket, std::string_view key, EventType type) const noexcept {
  for (const auto& ep : impl_->settings.endpoints) {
    if (ep.filter.matches(bucket, key, type)) return true;
  }
  return false;
}

Status Notifier::admit() const {
  const auto& s = impl_->settings;
  if (s.when_full != WhenFull::kReject || impl_->outbox->backlog() < s.max_outbox_events) return Status::ok();
  metrics().notify_rejected_writes.inc();
  spdlog::warn(
      "notify: outbox full ({} events, notify max_outbox_events): write refused with SlowDown "
      "(when_full=reject) until deliveries drain it",
      impl_->outbox->backlog());
  return Status(ErrorCode::kSlowDown, "Please reduce your request rate.");
}

asio::awaitable<Status> Notifier::record(std::vector<Event> events) {
  auto entries = impl_->entries_for(events);
  if (entries.empty() || impl_->drop_if_full(entries.size())) co_return Status::ok();
  co_return co_await asio::async_initiate<decltype(asio::use_awaitable), void(Status)>(
      [this, &entries](auto handler) {
        using H = decltype(handler);
        impl_->submit(Pending{std::move(entries), std::make_unique<HandlerCompletion<H>>(std::move(handler))});
      },
      asio::use_awaitable);
}

Status Notifier::record_sync(std::vector<Event> events) {
  auto entries = impl_->entries_for(events);
  if (entries.empty() || impl_->drop_if_full(entries.size())) return Status::ok();
  auto done = std::make_unique<PromiseCompletion>();
  auto result = done->promise.get_future();
  impl_->submit(Pending{std::move(entries), std::move(done)});
  return result.get();
}

const Settings& Notifier::settings() const noexcept {
  return impl_->settings;
}
Outbox& Notifier::outbox() noexcept {
  return *impl_->outbox;
}

}  // namespace tagd::notify
