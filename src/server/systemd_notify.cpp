#include "tagd/server/systemd_notify.hpp"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <string>

namespace tagd::server::systemd {

bool notify(std::string_view state) {
  const std::string message(state);
  // unset_environment = 0: a reload or the drain notifies again later.
  int r = sd_notify(0, message.c_str());
  if (r < 0) spdlog::debug("sd_notify failed: {}", std::strerror(-r));
  return r > 0;
}

bool notify_reloading(std::string_view status) {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  const auto usec = static_cast<unsigned long long>(now.tv_sec) * 1'000'000ull +
                    static_cast<unsigned long long>(now.tv_nsec) / 1000ull;
  return notify("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec) + "\nSTATUS=" + std::string(status));
}

}  // namespace tagd::server::systemd
