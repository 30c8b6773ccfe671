#pragma once
// The service manager's readiness protocol (sd_notify(3), libsystemd): READY=1 once the
// listener accepts, RELOADING=1 ... READY=1 around a SIGHUP reload, STOPPING=1 when the
// drain starts, and STATUS= lines `systemctl status` shows. A no-op when tagd was not
// started by systemd (no NOTIFY_SOCKET).
#include <string_view>

namespace tagd::server::systemd {

// Sends `state` (newline-separated VAR=value assignments). Returns whether a message was
// sent; a failure is logged at debug level only (the manager may be gone while stopping).
bool notify(std::string_view state);

// RELOADING=1 with the MONOTONIC_USEC= timestamp systemd 253+ requires alongside it.
bool notify_reloading(std::string_view status);

}  // namespace tagd::server::systemd
