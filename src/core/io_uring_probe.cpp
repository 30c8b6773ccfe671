#include "tagd/core/io_uring_probe.hpp"

#include <liburing.h>

#include <cstring>

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

}  // namespace tagd
