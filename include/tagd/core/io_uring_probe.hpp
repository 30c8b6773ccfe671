#pragma once
// io_uring availability, probed once at start-up. Kernels without it, and containers whose
// seccomp profile blocks io_uring_setup (Docker's default, containerd's RuntimeDefault),
// make tagd fall back to plain syscalls with a warning and a metric.
#include <string>

namespace tagd {

struct IoUringProbe {
  bool available = false;
  std::string detail;  // why not, or the kernel's feature summary
};

// Tries io_uring_queue_init with a small ring. `disabled_by_config` skips the probe.
IoUringProbe probe_io_uring(bool disabled_by_config);

}  // namespace tagd
