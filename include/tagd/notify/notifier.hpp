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
//
// SIGHUP (reload()): the endpoints, filters and limits of the config file are replaced as
// a whole, or not at all when the file does not parse or names another outbox_path (the
// outbox stays open: that needs a restart); tagd_notify_reloads_total{result} counts both.
// An endpoint kept by name keeps its queue and its thread, and its next attempt uses the
// new URL, auth and limits. An added endpoint gets a thread (and the events still queued
// under its name, if any). A removed endpoint's thread stops after its POST in flight,
// and the events still queued for it become dead letters (tagd_notify_dead_lettered_total,
// a warning): nothing would ever deliver them, and they would hold outbox capacity.
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
  // The same over an outbox already open (tests: one whose file system injects faults).
  static std::unique_ptr<Notifier> start(Settings settings, std::unique_ptr<Transport> transport, const Clock& clock,
                                         std::unique_ptr<Outbox> outbox);
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

  // SIGHUP: re-reads `config_file` (`default_outbox_path` as at start-up) and applies it
  // (see above). Never throws; counted and logged (error level when refused).
  [[nodiscard]] Status reload(const std::string& config_file, const std::string& default_outbox_path);
  // The same with the settings already parsed.
  [[nodiscard]] Status reload(Settings settings);

  // The settings in force (a reload replaces them; the snapshot stays valid).
  std::shared_ptr<const Settings> settings() const;
  Outbox& outbox() noexcept;
  // Waits until the threads of endpoints removed by reloads have stopped and their queues
  // were dead-lettered (tests).
  void wait_for_retired();
  // Stops the writer (pending appends complete first) and the delivery threads.
  void stop();

 private:
  struct Impl;
  explicit Notifier(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tagd::notify
