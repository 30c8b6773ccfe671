// The io_uring device.
//
// Synchronous calls (start-up, fills) share one mutex-guarded ring. Asynchronous reads go
// through one ring per io_context, owned by an execution_context service (UringLoop) and
// driven by that loop: the ring signals an eventfd on every completion, the loop watches
// the eventfd like a socket, reaps the completions and resumes each reader.
//
// Why not Asio's own io_uring backend (random_access_file::async_read_some_at)? It keeps at
// most one read in flight per file object and op type: the next read is queued in user
// space until the previous one completes (io_uring_service::start_op). Measured: 64
// concurrent reads on one file object cost 64 io_uring_enter calls of one SQE each, one
// after another. A hit path needs many reads in flight per loop.
//
// A loop's ring is used by the thread running that io_context only, hence no lock: tagd
// runs each io_context on one thread. Where an io_context is not available (another kind
// of executor) or its ring cannot be set up (io_uring refused at run time), reads fall back
// to a pread thread pool the device creates on first need.
#include <liburing.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/append.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>

#include "block_device_file.hpp"
#include "tagd/cache/block_device.hpp"
#include "tagd/core/metrics.hpp"

namespace tagd::cache {

namespace asio = boost::asio;

namespace {

// Whether any loop had to fall back: tagd_disk_io_uring then stays 0.
std::atomic<bool> g_ring_fallback{false};
std::atomic<bool> g_inject_ring_failure{false};  // inject_uring_ring_setup_failure()
// Bumped whenever a loop's ring service goes away, so a thread's cached service pointer is
// never trusted for a new io_context that happens to reuse a dead one's address.
std::atomic<std::uint64_t> g_ring_epoch{0};

// A read submitted to a loop's ring; user_data of its SQE. Owns the completion handler:
// completing it resumes the reader, deleting it (at shutdown) drops the reader.
class UringOp {
 public:
  virtual ~UringOp() = default;
  virtual void complete(int result) = 0;  // consumes *this

  int fd = -1;
  std::uint64_t offset = 0;
  std::byte* data = nullptr;
  unsigned length = 0;
  UringOp* next = nullptr;  // in UringLoop's waiting list
};

template <class Handler>
class UringOpFor final : public UringOp {
 public:
  explicit UringOpFor(Handler handler) : handler_(std::move(handler)) {}
  void complete(int result) override {
    Handler handler = std::move(handler_);
    delete this;
    // Inline when the reader's executor is this loop (the usual case); a strand elsewhere
    // gets it posted.
    asio::dispatch(asio::append(std::move(handler), result));
  }

 private:
  Handler handler_;
};

class UringLoop final : public asio::execution_context::service {
 public:
  static asio::execution_context::id id;

  explicit UringLoop(asio::io_context& io);
  ~UringLoop() override;

  bool ready() const noexcept { return ready_; }
  const std::string& failure() const noexcept { return failure_; }

  // Completes with the CQE's result: bytes read, or -errno.
  template <class Token>
  auto async_read(int fd, std::uint64_t offset, std::span<std::byte> out, Token&& token) {
    auto initiation = [this, fd, offset, out](auto handler) {
      auto* op = new UringOpFor<decltype(handler)>(std::move(handler));
      op->fd = fd;
      op->offset = offset;
      op->data = out.data();
      // A longer read comes back short; the base resumes it.
      op->length = static_cast<unsigned>(std::min<std::size_t>(out.size(), kMaxLength));
      start(op);
    };
    return asio::async_initiate<Token, void(int)>(std::move(initiation), token);
  }

 private:
  static constexpr unsigned kEntries = 256;
  static constexpr unsigned kSubmitBatch = 32;
  static constexpr std::size_t kMaxLength = 1u << 30;

  void shutdown() override;
  void start(UringOp* op);
  bool prepare(UringOp* op);
  void start_waiting();
  void submit();
  void schedule_submit();
  void arm();
  void on_event(const boost::system::error_code& ec);
  void reap();
  void fail(std::string why);

  asio::io_context* io_ = nullptr;
  io_uring ring_{};
  bool ring_open_ = false;
  bool ready_ = false;
  bool stopped_ = false;
  std::string failure_;
  std::unique_ptr<asio::posix::stream_descriptor> event_;  // the eventfd the ring signals
  std::uint64_t event_count_ = 0;
  bool armed_ = false;               // a read of the eventfd is pending
  bool submit_posted_ = false;       // a deferred io_uring_submit is queued on the loop
  unsigned unsubmitted_ = 0;         // SQEs prepared and not yet submitted
  std::size_t in_ring_ = 0;          // SQEs prepared and not yet reaped
  std::size_t max_in_ring_ = 0;      // the CQ's size: more in flight could overflow it
  UringOp* waiting_head_ = nullptr;  // reads beyond max_in_ring_ (or with no free SQE)
  UringOp* waiting_tail_ = nullptr;
};

asio::execution_context::id UringLoop::id;

UringLoop::UringLoop(asio::io_context& io) : asio::execution_context::service(io), io_(&io) {
  if (g_inject_ring_failure.load(std::memory_order_relaxed)) {
    fail("io_uring_queue_init: Operation not permitted (injected)");
    return;
  }
  int rc = io_uring_queue_init(kEntries, &ring_, 0);
  if (rc < 0) {
    fail(std::string("io_uring_queue_init: ") + std::strerror(-rc));
    return;
  }
  ring_open_ = true;
  if (io_uring_probe* probe = io_uring_get_probe_ring(&ring_)) {
    const bool has_read = io_uring_opcode_supported(probe, IORING_OP_READ) != 0;
    io_uring_free_probe(probe);
    if (!has_read) {
      fail("the kernel's io_uring has no IORING_OP_READ");
      return;
    }
  }
  const int efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (efd < 0) {
    fail(std::string("eventfd: ") + std::strerror(errno));
    return;
  }
  rc = io_uring_register_eventfd(&ring_, efd);
  if (rc < 0) {
    ::close(efd);
    fail(std::string("io_uring_register_eventfd: ") + std::strerror(-rc));
    return;
  }
  try {
    event_ = std::make_unique<asio::posix::stream_descriptor>(*io_, efd);
  } catch (const std::exception& e) {
    ::close(efd);
    fail(std::string("eventfd watch: ") + e.what());
    return;
  }
  max_in_ring_ = ring_.cq.ring_entries;
  ready_ = true;
  if (!g_ring_fallback.load(std::memory_order_relaxed)) metrics().disk_io_uring.set(1);
}

void UringLoop::fail(std::string why) {
  failure_ = std::move(why);
  if (ring_open_) io_uring_queue_exit(&ring_);
  ring_open_ = false;
}

UringLoop::~UringLoop() {
  if (ring_open_) io_uring_queue_exit(&ring_);
}

// Runs while the io_context is destroyed, before its scheduler drops the handlers still
// queued. The kernel may still be writing into readers' buffers, and those buffers live in
// the readers' coroutine frames, which go away with their handlers: so wait for every read
// to come back before dropping a single handler.
void UringLoop::shutdown() {
  stopped_ = true;
  g_ring_epoch.fetch_add(1, std::memory_order_release);
  event_.reset();
  while (in_ring_ > 0) {
    io_uring_cqe* cqe = nullptr;
    if (io_uring_peek_cqe(&ring_, &cqe) != 0) {
      // Submits what a deferred submit would have, and waits.
      const int rc = io_uring_submit_and_wait(&ring_, 1);
      if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
        // Cannot tell when the kernel is done with the buffers: leak the readers (and with
        // them their buffers) rather than free memory the kernel may still write.
        spdlog::error("io_uring loop shutdown: {} reads abandoned ({})", in_ring_, std::strerror(-rc));
        return;
      }
      continue;
    }
    auto* op = static_cast<UringOp*>(io_uring_cqe_get_data(cqe));
    io_uring_cqe_seen(&ring_, cqe);
    --in_ring_;
    delete op;
  }
  while (UringOp* op = waiting_head_) {
    waiting_head_ = op->next;
    delete op;
  }
  waiting_tail_ = nullptr;
}

void UringLoop::start(UringOp* op) {
  // Reads queued earlier go first.
  if (waiting_head_ == nullptr && prepare(op)) return;
  op->next = nullptr;
  if (waiting_tail_ != nullptr) {
    waiting_tail_->next = op;
  } else {
    waiting_head_ = op;
  }
  waiting_tail_ = op;
  schedule_submit();
}

bool UringLoop::prepare(UringOp* op) {
  if (in_ring_ >= max_in_ring_) return false;
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) {
    submit();
    sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) return false;
  }
  io_uring_prep_read(sqe, op->fd, op->data, op->length, op->offset);
  io_uring_sqe_set_data(sqe, op);
  ++in_ring_;
  ++unsubmitted_;
  // Reads started by the same round of handlers go to the kernel in one io_uring_enter.
  if (unsubmitted_ >= kSubmitBatch) {
    submit();
  } else {
    schedule_submit();
  }
  arm();
  return true;
}

void UringLoop::start_waiting() {
  while (UringOp* op = waiting_head_) {
    if (!prepare(op)) return;
    waiting_head_ = op->next;
    if (waiting_head_ == nullptr) waiting_tail_ = nullptr;
  }
}

void UringLoop::submit() {
  if (unsubmitted_ == 0) return;
  int rc = 0;
  do {
    rc = io_uring_submit(&ring_);
  } while (rc == -EINTR);
  if (rc >= 0) {
    // What the kernel did not take stays in the SQ for the next submit.
    unsubmitted_ -= std::min<unsigned>(unsubmitted_, static_cast<unsigned>(rc));
  } else {
    spdlog::debug("io_uring_submit: {}; retrying", std::strerror(-rc));
  }
  if (unsubmitted_ > 0) schedule_submit();
}

void UringLoop::schedule_submit() {
  if (submit_posted_ || stopped_) return;
  submit_posted_ = true;
  asio::post(*io_, [this] {
    submit_posted_ = false;
    submit();
    start_waiting();
  });
}

// The eventfd is read (not merely polled): a speculative read finds a completion signalled
// while no read was pending, which an edge-triggered poll would miss. Pending only while
// reads are in flight, so an idle loop's run() can return.
void UringLoop::arm() {
  if (armed_ || stopped_ || (in_ring_ == 0 && waiting_head_ == nullptr)) return;
  armed_ = true;
  event_->async_read_some(asio::buffer(&event_count_, sizeof event_count_),
                          [this](const boost::system::error_code& ec, std::size_t) { on_event(ec); });
}

void UringLoop::on_event(const boost::system::error_code& ec) {
  armed_ = false;
  if (ec == asio::error::operation_aborted || stopped_) return;
  if (ec) spdlog::error("io_uring loop: reading the eventfd: {}", ec.message());
  reap();
  arm();
}

void UringLoop::reap() {
  io_uring_cqe* cqe = nullptr;
  while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
    auto* op = static_cast<UringOp*>(io_uring_cqe_get_data(cqe));
    const int result = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    --in_ring_;
    op->complete(result);  // may start more reads on this loop
  }
  start_waiting();
}

// The io_context an executor runs on, if it is one of the executors tagd's loops hand their
// coroutines (any_io_executor cannot say so in general). A strand is deliberately not
// unwrapped: it suggests an io_context run by several threads, which a loop's ring
// (no lock) must not be shared by.
asio::io_context* io_context_of(const asio::any_io_executor& executor) {
  using Plain = asio::io_context::executor_type;
  using Tracked = asio::io_context::basic_executor_type<std::allocator<void>, 4>;  // outstanding_work.tracked
  if (const auto* e = executor.target<Plain>()) return &e->context();
  if (const auto* e = executor.target<Tracked>()) return &e->context();
  return nullptr;
}

// The ring service of the awaiting coroutine's io_context, or nullptr where there is none.
// asio::use_service locks the context's service registry: a thread remembers its last
// answer instead.
UringLoop* loop_for(const asio::any_io_executor& executor) {
  struct Cached {
    const asio::execution_context* context = nullptr;
    UringLoop* loop = nullptr;
    std::uint64_t epoch = 0;
  };
  thread_local Cached cached;
  const asio::execution_context* context = &asio::query(executor, asio::execution::context);
  const std::uint64_t epoch = g_ring_epoch.load(std::memory_order_acquire);
  if (cached.context == context && cached.epoch == epoch) return cached.loop;
  UringLoop* loop = nullptr;
  if (asio::io_context* io = io_context_of(executor)) loop = &asio::use_service<UringLoop>(*io);
  cached = {context, loop, epoch};
  return loop;
}

class UringBlockDevice final : public BlockDevice {
 public:
  UringBlockDevice(std::unique_ptr<detail::CacheFile> file, std::uint64_t size, unsigned pread_threads)
      : file_(std::move(file)), size_(size), pread_threads_(pread_threads) {}
  ~UringBlockDevice() override {
    if (ring_open_) io_uring_queue_exit(&ring_);
  }

  Status init() {
    int rc = io_uring_queue_init(64, &ring_, 0);
    if (rc < 0) return detail::errno_status("io_uring_queue_init", -rc);
    ring_open_ = true;
    // Registering the file saves an fget/fput per operation.
    if (io_uring_register_files(&ring_, &file_->fd, 1) == 0) registered_ = true;
    return Status::ok();
  }

  std::uint64_t size() const noexcept override { return size_; }
  std::size_t alignment() const noexcept override { return file_->alignment; }
  const char* kind() const noexcept override { return "io_uring"; }
  bool direct() const noexcept override { return file_->direct; }

 protected:
  Result<std::size_t> read_impl(std::uint64_t offset, std::span<std::byte> out) override {
    return transfer(true, offset, out.data(), out.size());
  }
  Result<std::size_t> write_impl(std::uint64_t offset, std::span<const std::byte> data) override {
    return transfer(false, offset, const_cast<std::byte*>(data.data()), data.size());
  }
  Status sync_impl() override {
    std::lock_guard lock(mu_);
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    io_uring_prep_fsync(sqe, registered_ ? 0 : file_->fd, IORING_FSYNC_DATASYNC);
    if (registered_) sqe->flags |= IOSQE_FIXED_FILE;
    int res = 0;
    if (Status s = submit_and_wait(res); !s) return s;
    return res < 0 ? detail::errno_status("io_uring fsync", -res) : Status::ok();
  }

  asio::awaitable<Result<std::size_t>> async_read_impl(std::uint64_t offset, std::span<std::byte> out) override {
    auto executor = co_await asio::this_coro::executor;
    UringLoop* loop = usable_loop(executor);
    if (loop == nullptr) {
      Result<std::size_t> r = co_await fallback_pool().read(file_->fd, offset, out);
      co_return r;
    }
    for (;;) {
      const int result = co_await loop->async_read(file_->fd, offset, out, asio::use_awaitable);
      if (result >= 0) co_return static_cast<std::size_t>(result);
      if (result != -EINTR && result != -EAGAIN) co_return detail::errno_status("io_uring read", -result);
    }
  }

 private:
  UringLoop* usable_loop(const asio::any_io_executor& executor) {
    UringLoop* loop = loop_for(executor);
    if (loop == nullptr || loop->ready()) return loop;
    if (!warned_.exchange(true, std::memory_order_relaxed)) {
      spdlog::warn("io_uring unavailable for an event loop's cache reads ({}): using a pread thread pool",
                   loop->failure());
    }
    g_ring_fallback.store(true, std::memory_order_relaxed);
    metrics().disk_io_uring.set(0);
    return nullptr;
  }

  detail::PreadPool& fallback_pool() {
    std::call_once(pool_once_, [this] { pool_ = std::make_unique<detail::PreadPool>(pread_threads_); });
    return *pool_;
  }

  Status submit_and_wait(int& res) {
    int rc = io_uring_submit(&ring_);
    if (rc < 0) return detail::errno_status("io_uring_submit", -rc);
    io_uring_cqe* cqe = nullptr;
    do {
      rc = io_uring_wait_cqe(&ring_, &cqe);
    } while (rc == -EINTR);
    if (rc < 0) return detail::errno_status("io_uring_wait_cqe", -rc);
    res = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    return Status::ok();
  }

  // One transfer; the base resumes a short one.
  Result<std::size_t> transfer(bool is_read, std::uint64_t offset, std::byte* buf, std::size_t len) {
    std::lock_guard lock(mu_);
    const auto length = static_cast<unsigned>(std::min<std::size_t>(len, 1u << 30));
    for (;;) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      int fd = registered_ ? 0 : file_->fd;
      if (is_read) {
        io_uring_prep_read(sqe, fd, buf, length, offset);
      } else {
        io_uring_prep_write(sqe, fd, buf, length, offset);
      }
      if (registered_) sqe->flags |= IOSQE_FIXED_FILE;
      int res = 0;
      if (Status s = submit_and_wait(res); !s) return s;
      if (res == -EINTR || res == -EAGAIN) continue;
      if (res < 0) return detail::errno_status(is_read ? "io_uring read" : "io_uring write", -res);
      return static_cast<std::size_t>(res);
    }
  }

  std::unique_ptr<detail::CacheFile> file_;
  std::uint64_t size_;
  unsigned pread_threads_;
  io_uring ring_{};  // synchronous calls only
  bool ring_open_ = false;
  bool registered_ = false;
  std::mutex mu_;
  std::atomic<bool> warned_{false};
  std::once_flag pool_once_;
  std::unique_ptr<detail::PreadPool> pool_;  // asynchronous reads where a loop has no ring
};

}  // namespace

Result<std::unique_ptr<BlockDevice>> open_uring_device(const FileDeviceOptions& options) {
  auto file = detail::open_cache_file(options);
  if (!file) return file.error();
  auto device = std::make_unique<UringBlockDevice>(std::move(file.value()), options.size, options.pread_threads);
  if (Status s = device->init(); !s) return s;
  return std::unique_ptr<BlockDevice>(std::move(device));
}

void inject_uring_ring_setup_failure(bool fail) {
  g_inject_ring_failure.store(fail, std::memory_order_relaxed);
  if (!fail) g_ring_fallback.store(false, std::memory_order_relaxed);
}

}  // namespace tagd::cache
