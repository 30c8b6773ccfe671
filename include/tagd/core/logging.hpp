#pragma once
// spdlog set-up: console or JSON lines, and a separate "access" logger (one line per
// request) that shares the sinks but can be silenced on its own. Under systemd (stderr is
// the stream JOURNAL_STREAM names), the console format drops its timestamp and starts
// each line with a syslog priority ("<4>"), which journald stores as the entry's priority.
#include <spdlog/logger.h>

#include <string>

namespace tagd::logging {

// Throws std::invalid_argument on an unknown level or format (config validates first).
void setup(const std::string& level, const std::string& format);
spdlog::logger& access();

}  // namespace tagd::logging
