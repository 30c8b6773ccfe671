#pragma once
// spdlog set-up: console or JSON lines, and a separate "access" logger (one line per
// request) that shares the sinks but can be silenced on its own.
#include <spdlog/logger.h>

#include <string>

namespace tagd::logging {

// Throws std::invalid_argument on an unknown level or format (config validates first).
void setup(const std::string& level, const std::string& format);
spdlog::logger& access();

}  // namespace tagd::logging
