#include "tagd/core/io_uring_probe.hpp"

#include <liburing.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <vector>

namespace tagd {

IoUringProbe probe_io_uring(bool disabled_by_config) {
  IoUringProbe out;
  if (disabled_by_config) {
    out.detail = "disabled by configuration (io_uring=off)";
    return out;
  }
  io_uring ring;
  int rc = io_uring_queue_init(8, &ring, 0);
  if (rc < 0) {
    out.detail = std::string("io_uring_queue_init failed: ") + std::strerror(-rc);
    return out;
  }
  io_uring_probe* probe = io_uring_get_probe_ring(&ring);
  bool has_read = probe != nullptr && io_uring_opcode_supported(probe, IORING_OP_READ);
  bool has_write = probe != nullptr && io_uring_opcode_supported(probe, IORING_OP_WRITE);
  if (probe != nullptr) io_uring_free_probe(probe);
  io_uring_queue_exit(&ring);
  if (!has_read || !has_write) {
    out.detail = "kernel io_uring lacks IORING_OP_READ/WRITE";
    return out;
  }
  out.available = true;
  out.detail = "io_uring ready (IORING_OP_READ/WRITE supported)";
  return out;
}

SocketChoice choose_sockets(bool uring_build, bool has_sibling, const IoUringProbe& probe) {
  using Action = SocketChoice::Action;
  if (uring_build) {
    if (probe.available) return {Action::kServe, true, probe.detail};
    return {Action::kRefuse, false, probe.detail};
  }
  if (!probe.available) return {Action::kServe, false, probe.detail};
  if (has_sibling) return {Action::kExecSibling, false, probe.detail};
  // Sanitizer and fuzz builds (CMake TAGD_URING_SIBLING=OFF) have no tagd-uring.
  return {Action::kServe, false, "this build has no tagd-uring (TAGD_URING_SIBLING=OFF)"};
}

std::string sibling_path(std::string_view self_exe, std::string_view name) {
  const auto slash = self_exe.rfind('/');
  std::string out(slash == std::string_view::npos ? std::string_view(".") : self_exe.substr(0, slash + 1));
  if (slash == std::string_view::npos) out += '/';
  out += name;
  return out;
}

std::string self_executable(std::string& error) {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) {
    error = std::string("readlink /proc/self/exe: ") + std::strerror(errno);
    return {};
  }
  return std::string(buf, static_cast<std::size_t>(n));
}

std::string check_exec_build(const char* passed, std::string_view own) {
  if (passed == nullptr || own == passed) return {};
  std::string out = "tagd-uring is build ";
  out += own;
  out += " but the tagd that started it is build ";
  out += passed;
  out += " (a partly upgraded install?): install tagd and tagd-uring from the same build, or set io_uring=off "
         "(--io-uring off, TAG_IO_URING=off) to serve on tagd alone";
  return out;
}

std::string exec_sibling(const std::string& path, char** argv, const char* build_id) {
  if (::setenv(kExecBuildVariable, build_id, 1) != 0) return std::strerror(errno);
  std::vector<char*> args;
  args.push_back(const_cast<char*>(path.c_str()));
  if (argv != nullptr && argv[0] != nullptr) {
    for (char** a = argv + 1; *a != nullptr; ++a) args.push_back(*a);
  }
  args.push_back(nullptr);
  ::execv(path.c_str(), args.data());
  return std::strerror(errno);
}

}  // namespace tagd
