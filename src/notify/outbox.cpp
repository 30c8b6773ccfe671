#include "tagd/notify/outbox.hpp"

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <filesystem>
#include <stdexcept>

namespace tagd::notify {

namespace {

constexpr char kQueued = 'q';
constexpr char kDead = 'd';

std::string prefix(char space, const std::string& endpoint) {
  std::string k;
  k.reserve(endpoint.size() + 2);
  k += space;
  k += endpoint;
  k += '\0';
  return k;
}

std::string key(char space, const std::string& endpoint, std::uint64_t seq) {
  std::string k = prefix(space, endpoint);
  for (int shift = 56; shift >= 0; shift -= 8) k += static_cast<char>((seq >> shift) & 0xff);
  return k;
}

// Splits a key into (space, endpoint, seq); false for a key of another shape.
bool split(const rocksdb::Slice& k, char& space, std::string& endpoint, std::uint64_t& seq) {
  if (k.size() < 10) return false;
  space = k.data()[0];
  const std::size_t nul = k.size() - 9;
  if (k.data()[nul] != '\0') return false;
  endpoint.assign(k.data() + 1, nul - 1);
  seq = 0;
  for (std::size_t i = nul + 1; i < k.size(); ++i) seq = (seq << 8) | static_cast<unsigned char>(k.data()[i]);
  return true;
}

Status failed(const rocksdb::Status& s, const char* what) {
  return Status(ErrorCode::kInternalError, std::string("notification outbox ") + what + ": " + s.ToString());
}

}  // namespace

std::unique_ptr<Outbox> Outbox::open(const std::string& path, std::shared_ptr<rocksdb::FileSystem> file_system) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) throw std::runtime_error("cannot create notification outbox " + path + ": " + ec.message());
  rocksdb::Options options;
  options.create_if_missing = true;
  // A small database: a little memory, one background job.
  options.write_buffer_size = 8 << 20;
  options.max_background_jobs = 1;
  options.keep_log_file_num = 2;
  std::unique_ptr<rocksdb::Env> env;
  if (file_system) {
    env = rocksdb::NewCompositeEnv(std::move(file_system));
    options.env = env.get();
  }
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, path, &raw);
  if (!s.ok()) throw std::runtime_error("cannot open notification outbox " + path + ": " + s.ToString());
  std::unique_ptr<Outbox> outbox(new Outbox(std::move(env), std::unique_ptr<rocksdb::DB>(raw)));
  outbox->scan();
  return outbox;
}

Outbox::Outbox(std::unique_ptr<rocksdb::Env> env, std::unique_ptr<rocksdb::DB> db)
    : env_(std::move(env)), db_(std::move(db)) {}
Outbox::~Outbox() = default;

void Outbox::scan() {
  std::lock_guard lock(mu_);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  char space = 0;
  std::string endpoint;
  std::uint64_t seq = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (!split(it->key(), space, endpoint, seq)) continue;
    next_seq_ = std::max(next_seq_, seq + 1);
    if (space == kQueued) {
      total_queued_.fetch_add(1, std::memory_order_relaxed);
      if (queued_[endpoint]++ == 0) floor_[endpoint] = seq;
    } else if (space == kDead) {
      ++dead_[endpoint];
    }
  }
}

Status Outbox::append(const std::vector<OutboxEntry>& entries) {
  if (entries.empty()) return Status::ok();
  // Appends are serialized (seq order = commit order, so a queue never gains a seq below
  // one already peeked); mu_ is not held across the fsync, so counters stay readable.
  std::lock_guard write_lock(append_mu_);
  std::uint64_t first = 0;
  {
    std::lock_guard lock(mu_);
    first = next_seq_;
  }
  rocksdb::WriteBatch batch;
  std::uint64_t seq = first;
  for (const auto& e : entries) batch.Put(key(kQueued, e.endpoint, seq++), e.event_json);
  rocksdb::WriteOptions sync;
  sync.sync = true;
  rocksdb::Status s = db_->Write(sync, &batch);
  if (!s.ok()) return failed(s, "write");
  std::lock_guard lock(mu_);
  seq = first;
  for (const auto& e : entries) {
    if (queued_[e.endpoint]++ == 0 && floor_.find(e.endpoint) == floor_.end()) floor_[e.endpoint] = seq;
    ++seq;
  }
  next_seq_ = seq;
  total_queued_.fetch_add(entries.size(), std::memory_order_relaxed);
  return Status::ok();
}

Result<std::vector<QueuedEvent>> Outbox::peek(const std::string& endpoint, std::size_t max) {
  std::uint64_t floor = 0;
  {
    std::lock_guard lock(mu_);
    auto it = floor_.find(endpoint);
    if (it != floor_.end()) floor = it->second;
  }
  // Seeking to the floor skips the tombstones of everything already delivered.
  const std::string p = prefix(kQueued, endpoint);
  std::vector<QueuedEvent> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  char space = 0;
  std::string name;
  std::uint64_t seq = 0;
  for (it->Seek(key(kQueued, endpoint, floor)); it->Valid() && out.size() < max && it->key().starts_with(p);
       it->Next()) {
    if (!split(it->key(), space, name, seq) || name != endpoint) continue;
    out.push_back({seq, it->value().ToString()});
  }
  if (!it->status().ok()) return failed(it->status(), "read");
  return out;
}

Status Outbox::remove(const std::string& endpoint, const std::vector<QueuedEvent>& events) {
  if (events.empty()) return Status::ok();
  rocksdb::WriteBatch batch;
  for (const auto& e : events) batch.Delete(key(kQueued, endpoint, e.seq));
  std::lock_guard lock(mu_);
  rocksdb::Status s = db_->Write(rocksdb::WriteOptions(), &batch);
  if (!s.ok()) return failed(s, "delete");
  auto& n = queued_[endpoint];
  const std::uint64_t gone = std::min<std::uint64_t>(n, events.size());
  n -= gone;
  total_queued_.fetch_sub(gone, std::memory_order_relaxed);
  floor_[endpoint] = std::max(floor_[endpoint], events.back().seq + 1);
  return Status::ok();
}

Status Outbox::dead_letter(const std::string& endpoint, const std::vector<QueuedEvent>& events,
                           std::uint64_t max_dead_letters) {
  if (events.empty()) return Status::ok();
  rocksdb::WriteBatch batch;
  for (const auto& e : events) {
    batch.Delete(key(kQueued, endpoint, e.seq));
    if (max_dead_letters > 0) batch.Put(key(kDead, endpoint, e.seq), e.event_json);
  }
  std::lock_guard lock(mu_);
  std::uint64_t dead_total = 0;
  for (const auto& [_, n] : dead_) dead_total += n;
  std::uint64_t kept = max_dead_letters > 0 ? events.size() : 0;
  // Over the cap: this endpoint's oldest dead letters make room.
  std::uint64_t excess = dead_total + kept > max_dead_letters ? dead_total + kept - max_dead_letters : 0;
  std::uint64_t erased = 0;
  if (excess > 0) {
    const std::string p = prefix(kDead, endpoint);
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
    for (it->Seek(p); it->Valid() && erased < excess && it->key().starts_with(p); it->Next()) {
      batch.Delete(it->key());
      ++erased;
    }
  }
  rocksdb::Status s = db_->Write(rocksdb::WriteOptions(), &batch);
  if (!s.ok()) return failed(s, "dead-letter");
  auto& n = queued_[endpoint];
  const std::uint64_t gone = std::min<std::uint64_t>(n, events.size());
  n -= gone;
  total_queued_.fetch_sub(gone, std::memory_order_relaxed);
  floor_[endpoint] = std::max(floor_[endpoint], events.back().seq + 1);
  auto& d = dead_[endpoint];
  d = d + kept - std::min(d + kept, erased);
  return Status::ok();
}

Result<std::vector<QueuedEvent>> Outbox::dead_letters(const std::string& endpoint, std::size_t max) {
  const std::string p = prefix(kDead, endpoint);
  std::vector<QueuedEvent> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  char space = 0;
  std::string name;
  std::uint64_t seq = 0;
  for (it->Seek(p); it->Valid() && out.size() < max && it->key().starts_with(p); it->Next()) {
    if (!split(it->key(), space, name, seq) || name != endpoint) continue;
    out.push_back({seq, it->value().ToString()});
  }
  if (!it->status().ok()) return failed(it->status(), "read");
  return out;
}

std::uint64_t Outbox::backlog() const {
  return total_queued_.load(std::memory_order_relaxed);
}

std::uint64_t Outbox::backlog(const std::string& endpoint) const {
  std::lock_guard lock(mu_);
  auto it = queued_.find(endpoint);
  return it == queued_.end() ? 0 : it->second;
}

std::uint64_t Outbox::dead_letter_count() const {
  std::lock_guard lock(mu_);
  std::uint64_t total = 0;
  for (const auto& [_, n] : dead_) total += n;
  return total;
}

std::vector<std::string> Outbox::queues() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const auto& [name, n] : queued_) {
    if (n > 0) out.push_back(name);
  }
  return out;
}

}  // namespace tagd::notify
