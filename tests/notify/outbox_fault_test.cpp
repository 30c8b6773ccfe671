// The outbox when its disk fails: RocksDB over a file system that refuses every write
// while a fault is set (ENOSPC, as a full disk does), so the real error path runs: the
// failed WAL write, RocksDB's stopped writes. Recovery is checked across a reopen (a
// restart): RocksDB 7.8's own resume after a failed WAL write is not dependable (see
// src/notify/README.md), so these tests do not wait for it.
#include <gtest/gtest.h>
#include <rocksdb/file_system.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "tagd/core/metrics.hpp"
#include "tagd/notify/notifier.hpp"
#include "tagd/notify/outbox.hpp"
#include "support/wait_for.hpp"

namespace tagd::notify {
namespace {

using namespace std::chrono;

// Every write, flush and sync of a file opened for writing fails while `full` is set.
class FullDiskFile final : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  FullDiskFile(std::unique_ptr<rocksdb::FSWritableFile> file, const std::atomic<bool>& full)
      : FSWritableFileOwnerWrapper(std::move(file)), full_(full) {}
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                           rocksdb::IODebugContext* d) override {
    if (full_) return rocksdb::IOStatus::NoSpace("injected: no space left on device");
    return FSWritableFileOwnerWrapper::Append(data, o, d);
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                           const rocksdb::DataVerificationInfo& v, rocksdb::IODebugContext* d) override {
    if (full_) return rocksdb::IOStatus::NoSpace("injected: no space left on device");
    return FSWritableFileOwnerWrapper::Append(data, o, v, d);
  }
  rocksdb::IOStatus Flush(const rocksdb::IOOptions& o, rocksdb::IODebugContext* d) override {
    if (full_) return rocksdb::IOStatus::NoSpace("injected: no space left on device");
    return FSWritableFileOwnerWrapper::Flush(o, d);
  }
  rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* d) override {
    if (full_) return rocksdb::IOStatus::NoSpace("injected: no space left on device");
    return FSWritableFileOwnerWrapper::Sync(o, d);
  }
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* d) override {
    if (full_) return rocksdb::IOStatus::NoSpace("injected: no space left on device");
    return FSWritableFileOwnerWrapper::Fsync(o, d);
  }

 private:
  const std::atomic<bool>& full_;
};

class FullDiskFileSystem final : public rocksdb::FileSystemWrapper {
 public:
  FullDiskFileSystem() : FileSystemWrapper(rocksdb::FileSystem::Default()) {}
  const char* Name() const override { return "FullDiskFileSystem"; }
  rocksdb::IOStatus NewWritableFile(const std::string& name, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* out,
                                    rocksdb::IODebugContext* d) override {
    if (full) return rocksdb::IOStatus::NoSpace("injected: no space left on device");
    auto s = FileSystemWrapper::NewWritableFile(name, o, out, d);
    if (s.ok()) *out = std::make_unique<FullDiskFile>(std::move(*out), full);
    return s;
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& name, const rocksdb::FileOptions& o,
                                       std::unique_ptr<rocksdb::FSWritableFile>* out,
                                       rocksdb::IODebugContext* d) override {
    if (full) return rocksdb::IOStatus::NoSpace("injected: no space left on device");
    auto s = FileSystemWrapper::ReopenWritableFile(name, o, out, d);
    if (s.ok()) *out = std::make_unique<FullDiskFile>(std::move(*out), full);
    return s;
  }
  std::atomic<bool> full{false};
};

std::vector<std::string> jsons(const std::vector<QueuedEvent>& q) {
  std::vector<std::string> out;
  for (const auto& e : q) out.push_back(e.event_json);
  return out;
}

class OutboxFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("tagd-outbox-fault-" + std::to_string(::getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
  std::shared_ptr<FullDiskFileSystem> fs_ = std::make_shared<FullDiskFileSystem>();
};

TEST_F(OutboxFaultTest, AppendFailsWhileTheDiskIsFullAndNothingOfTheBatchSurvives) {
  {
    auto box = Outbox::open(dir_.string(), fs_);
    ASSERT_TRUE(box->append({{"a", "1"}}));
    fs_->full = true;
    Status s = box->append({{"a", "2"}, {"b", "x"}});
    ASSERT_FALSE(s);
    EXPECT_NE(s.message().find("notification outbox write"), std::string::npos) << s.message();
    EXPECT_EQ(box->backlog(), 1u);  // none of the failed batch is counted
    EXPECT_FALSE(box->append({{"a", "3"}}));
    EXPECT_EQ(box->backlog(), 1u);
    fs_->full = false;
  }
  // After a restart: what was confirmed is there, what was refused is not, and the
  // outbox takes events again.
  auto box = Outbox::open(dir_.string());
  auto a = box->peek("a", 10);
  ASSERT_TRUE(a);
  EXPECT_EQ(jsons(*a), (std::vector<std::string>{"1"}));
  auto b = box->peek("b", 10);
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->empty());
  ASSERT_TRUE(box->append({{"a", "4"}}));
  a = box->peek("a", 10);
  ASSERT_TRUE(a);
  EXPECT_EQ(jsons(*a), (std::vector<std::string>{"1", "4"}));
}

TEST_F(OutboxFaultTest, ARemovalThatFailedLeavesTheEventQueued) {
  {
    auto box = Outbox::open(dir_.string(), fs_);
    ASSERT_TRUE(box->append({{"a", "1"}}));
    auto q = box->peek("a", 10);
    ASSERT_TRUE(q);
    fs_->full = true;
    EXPECT_FALSE(box->remove("a", *q));
    EXPECT_EQ(box->backlog(), 1u);  // still queued: it will be delivered again
    fs_->full = false;
  }
  auto box = Outbox::open(dir_.string());
  auto rest = box->peek("a", 10);
  ASSERT_TRUE(rest);
  EXPECT_EQ(jsons(*rest), (std::vector<std::string>{"1"}));  // at least once, not lost
}

// --- The notifier over a failing outbox: what the gateway sees through record().

class CountingTransport final : public Transport {
 public:
  Status post(const Endpoint&, const std::string& body, const HeaderPairs&, milliseconds) override {
    std::lock_guard lock(mu_);
    const auto j = nlohmann::json::parse(body);
    for (const auto& e : j["events"]) keys_.push_back(e["object"]["key"]);
    return Status::ok();
  }
  std::vector<std::string> keys() {
    std::lock_guard lock(mu_);
    return keys_;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> keys_;
};

// Log lines at warn and above while it lives (the default logger, restored after).
class CapturedLog {
 public:
  CapturedLog() : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(256)), previous_(spdlog::default_logger()) {
    auto logger = std::make_shared<spdlog::logger>("captured", sink_);
    logger->set_level(spdlog::level::warn);
    spdlog::set_default_logger(logger);
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  // Lines of at least `level` containing `text`.
  int count(spdlog::level::level_enum level, const std::string& text) {
    int n = 0;
    for (const auto& m : sink_->last_raw()) {
      if (m.level >= level && std::string_view(m.payload.data(), m.payload.size()).find(text) != std::string_view::npos)
        ++n;
    }
    return n;
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
  std::shared_ptr<spdlog::logger> previous_;
};

using tagd::testing::wait_for;

Event put(const std::string& key) {
  return {EventType::kCreatedPut, "b", key, 1, "e", {}, {}};
}

TEST_F(OutboxFaultTest, RecordFailsCountedAndLoggedNothingClaimedAndARestartRecordsAgain) {
  Settings settings;
  settings.outbox_path = dir_.string();
  Endpoint e;
  e.name = "hook";
  e.url = "http://127.0.0.1:1/";
  settings.endpoints.push_back(e);
  auto transport = std::make_unique<CountingTransport>();
  auto* t = transport.get();
  SystemClock clock;
  auto n = Notifier::start(settings, std::move(transport), clock, Outbox::open(dir_.string(), fs_));
  ASSERT_TRUE(n->record_sync({put("before")}));
  ASSERT_TRUE(wait_for([&] { return n->outbox().backlog() == 0 && t->keys().size() == 1; }));

  auto& m = metrics();
  const auto errors = m.notify_outbox_errors.get();
  const auto recorded = m.notify_events_recorded.get();
  const auto delivered = m.notify_events_delivered.get();
  {
    CapturedLog log;
    fs_->full = true;
    Status s = n->record_sync({put("lost-1"), put("lost-2")});
    ASSERT_FALSE(s);
    EXPECT_EQ(m.notify_outbox_errors.get(), errors + 2);
    EXPECT_EQ(m.notify_events_recorded.get(), recorded);
    EXPECT_EQ(log.count(spdlog::level::warn, "could not be written to the outbox"), 1);
    EXPECT_EQ(n->outbox().backlog(), 0u);
  }
  fs_->full = false;
  // Restart over the same outbox, the disk fixed: new writes record and deliver, and the
  // refused events never appear.
  const auto first_keys = t->keys();
  n.reset();  // destroys the first transport too
  auto transport2 = std::make_unique<CountingTransport>();
  auto* t2 = transport2.get();
  n = Notifier::start(settings, std::move(transport2), clock);
  EXPECT_EQ(n->outbox().backlog(), 0u);
  ASSERT_TRUE(n->record_sync({put("after")}));
  ASSERT_TRUE(wait_for([&] { return n->outbox().backlog() == 0 && t2->keys().size() == 1; }));
  std::this_thread::sleep_for(milliseconds(50));  // anything extra would be posted now
  // The refused events were never queued, so never delivered or counted as delivered.
  EXPECT_EQ(first_keys, (std::vector<std::string>{"before"}));
  EXPECT_EQ(t2->keys(), (std::vector<std::string>{"after"}));
  EXPECT_EQ(m.notify_events_delivered.get(), delivered + 1);
  EXPECT_EQ(m.notify_events_recorded.get(), recorded + 1);
}

}  // namespace
}  // namespace tagd::notify
