#pragma once
// The durable outbox: events waiting for delivery, one queue per endpoint, in a small
// RocksDB database of its own (not the cache index: the cache may be disabled, dropped
// when its format changes, or wiped by an operator, and none of that may lose a pending
// notification; the notify module also must not reach into the cache's index).
//
// Keys: 'q' endpoint '\0' seq(8 bytes big-endian) → one event's JSON (queued);
//       'd' endpoint '\0' seq → the same, given up on (dead letter).
// backlog() is lock-free (the gateway reads it before every write it forwards).
// append() is one WriteBatch written with sync=true (fsync before it returns); removals
// after delivery are not synced (a removal lost in a crash means one more delivery, which
// at-least-once allows).
// Threading: every method may be called from any thread (RocksDB is thread-safe; the
// counters and the per-queue read floor are under one mutex).
//
// A failed write (disk full, I/O error) stops RocksDB's writes, and every later write
// fails until RocksDB's own recovery resumes them (ENOSPC only, not dependably) or tagd
// restarts. tagd does not call DB::Resume() or reopen the database itself: after a failed
// WAL write both abort in an assert-enabled librocksdb 7.8 (Debian's).
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tagd/core/status.hpp"

namespace rocksdb {
class DB;
class Env;
class FileSystem;
}  // namespace rocksdb

namespace tagd::notify {

struct OutboxEntry {
  std::string endpoint;
  std::string event_json;
};

struct QueuedEvent {
  std::uint64_t seq = 0;
  std::string event_json;
};

class Outbox {
 public:
  // Opens (creating) the database at `path`. Throws std::runtime_error (start-up).
  // `file_system`: the file system RocksDB uses (tests pass one that injects faults);
  // null is the default (POSIX) one.
  static std::unique_ptr<Outbox> open(const std::string& path,
                                      std::shared_ptr<rocksdb::FileSystem> file_system = nullptr);
  ~Outbox();
  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;

  // All entries in one synced batch: all are durable when this returns ok, none otherwise.
  [[nodiscard]] Status append(const std::vector<OutboxEntry>& entries);
  // The oldest `max` queued events of `endpoint`, oldest first.
  [[nodiscard]] Result<std::vector<QueuedEvent>> peek(const std::string& endpoint, std::size_t max);
  // Delivered: erased from the queue.
  [[nodiscard]] Status remove(const std::string& endpoint, const std::vector<QueuedEvent>& events);
  // Given up on: moved to the endpoint's dead letters; beyond `max_dead_letters` in all,
  // the oldest dead letters of this endpoint are erased.
  [[nodiscard]] Status dead_letter(const std::string& endpoint, const std::vector<QueuedEvent>& events,
                                   std::uint64_t max_dead_letters);
  [[nodiscard]] Result<std::vector<QueuedEvent>> dead_letters(const std::string& endpoint, std::size_t max);

  std::uint64_t backlog() const;  // queued events, all endpoints
  std::uint64_t backlog(const std::string& endpoint) const;
  std::uint64_t dead_letter_count() const;
  // Endpoints with queued events (after open(): also those no longer configured).
  std::vector<std::string> queues() const;

 private:
  Outbox(std::unique_ptr<rocksdb::Env> env, std::unique_ptr<rocksdb::DB> db);
  void scan();

  std::unique_ptr<rocksdb::Env> env_;  // outlives db_ (declared first, destroyed last)
  std::unique_ptr<rocksdb::DB> db_;
  std::mutex append_mu_;
  mutable std::mutex mu_;
  std::atomic<std::uint64_t> total_queued_{0};
  std::uint64_t next_seq_ = 1;
  std::map<std::string, std::uint64_t> queued_;  // endpoint → events queued
  std::map<std::string, std::uint64_t> floor_;   // endpoint → lowest seq possibly queued
  std::map<std::string, std::uint64_t> dead_;    // endpoint → dead letters kept
};

}  // namespace tagd::notify
