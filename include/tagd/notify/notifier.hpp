#pragma once
// Upload notifications: the facade the gateway uses. After the upstream confirmed a write,
// the gateway calls record() and answers the client only when it returns: by then the
// events are fsynced in the outbox. Delivery runs on one thread per endpoint and never
// touches an event loop.
//
// record() does not do the RocksDB write on the caller's event loop: a single writer
// thread takes every pending append, writes them as one synced batch (group commit: many
// concurrent writes share one fsync) and resumes each waiting coroutine on its own
// executor. The request path waits for its own append only.
#include <boost/asio/awaitable.hpp>
#include <memory>
#include <string>
#include <vector>

#include "tagd/core/clock.hpp"
#include "tagd/core/status.hpp"
#include "tagd/notify/event.hpp"
#include "tagd/notify/settings.hpp"
#include "tagd/notify/transport.hpp"

namespace tagd::notify {

class Outbox;

class Notifier {
 public:
  // Opens the outbox and starts the writer and one delivery thread per endpoint. Throws
  // std::runtime_error (start-up). `clock` outlives the notifier.
  static std::unique_ptr<Notifier> start(Settings settings, std::unique_ptr<Transport> transport, const Clock& clock);
  ~Notifier();  // stop()
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  // Whether any endpoint wants this event (the gateway skips all extra work otherwise).
  bool wants(std::string_view bucket, std::string_view key, EventType type) const noexcept;
  // Before a write that would produce events is forwarded: kSlowDown when the outbox is
  // full and when_full is reject (counted, logged), ok otherwise.
  [[nodiscard]] Status admit() const;
  // Durably queues `events` for every endpoint whose filter takes them (ids and times are
  // filled in when empty). Ok when they are on disk, or when none matched, or when they
  // were dropped because the outbox is full and when_full is drop (counted, logged).
  [[nodiscard]] boost::asio::awaitable<Status> record(std::vector<Event> events);
  // The same, blocking (tests and tools; never on an event loop).
  [[nodiscard]] Status record_sync(std::vector<Event> events);

  const Settings& settings() const noexcept;
  Outbox& outbox() noexcept;
  // Stops the writer (pending appends complete first) and the delivery threads.
  void stop();

 private:
  struct Impl;
  explicit Notifier(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tagd::notify
