#pragma once
// io_uring availability, probed once at start-up, and what it decides for sockets.
// Kernels without io_uring, and containers whose seccomp profile blocks io_uring_setup
// (Docker's default, containerd's RuntimeDefault), make tagd fall back to plain syscalls
// with a warning and a metric.
//
// Asio picks its socket reactor at compile time, so sockets on io_uring live in a second
// executable built from the same sources: tagd (epoll reactor) execs its sibling
// tagd-uring (BOOST_ASIO_DISABLE_EPOLL) when io_uring is usable, and serves on epoll
// itself when it is not (docs/architecture.md, "Event loop").
#include <string>
#include <string_view>

namespace tagd {

struct IoUringProbe {
  bool available = false;
  std::string detail;  // why not, or the kernel's feature summary
};

// Tries io_uring_queue_init with a small ring. `disabled_by_config` skips the probe.
IoUringProbe probe_io_uring(bool disabled_by_config);

// What this executable does about sockets, from how it was built and the probe.
struct SocketChoice {
  enum class Action {
    kServe,        // serve here, sockets on this build's reactor (`io_uring` says which)
    kExecSibling,  // io_uring is usable and this is the epoll build: exec tagd-uring
    kRefuse,       // this is tagd-uring and io_uring is not usable: exit 2
  };
  Action action = Action::kServe;
  bool io_uring = false;  // kServe: sockets on io_uring (else the epoll reactor)
  std::string why;        // for the log line
};

// `uring_build`: this executable's sockets are on io_uring (tagd-uring).
// `has_sibling`: the epoll build was built with a tagd-uring to exec.
SocketChoice choose_sockets(bool uring_build, bool has_sibling, const IoUringProbe& probe);

// `name` in the directory of `self_exe` (the resolved /proc/self/exe): the sibling is
// looked up there, never on PATH, so tagd runs the tagd-uring installed with it.
std::string sibling_path(std::string_view self_exe, std::string_view name);

// This process's executable, resolved; empty with `error` set when /proc says nothing.
std::string self_executable(std::string& error);

// The variable through which tagd tells the tagd-uring it execs which build it is.
inline constexpr const char* kExecBuildVariable = "TAGD_EXEC_BUILD";

// tagd-uring's side of that: empty when `passed` (the variable's value; null when
// tagd-uring was started directly) is `own`, else the start-up error to report.
std::string check_exec_build(const char* passed, std::string_view own);

// Replaces this process by `path` with the same arguments (argv[0] becomes `path`) and
// the same environment plus kExecBuildVariable=`build_id`: the pid stays, so a supervisor
// (systemd's MAINPID, a test that kills by pid) sees no change. Returns only on failure,
// with the reason.
std::string exec_sibling(const std::string& path, char** argv, const char* build_id);

}  // namespace tagd
