#include "tagd/core/logging.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <stdexcept>

namespace tagd::logging {
namespace {

// %* : the message, escaped for a JSON string (spdlog's %v is raw).
class JsonEscapedMessage final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    for (char c : std::string_view(msg.payload.data(), msg.payload.size())) {
      switch (c) {
        case '"': dest.append(std::string_view("\\\"")); break;
        case '\\': dest.append(std::string_view("\\\\")); break;
        case '\n': dest.append(std::string_view("\\n")); break;
        case '\r': dest.append(std::string_view("\\r")); break;
        case '\t': dest.append(std::string_view("\\t")); break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            dest.append(std::string_view(buf));
          } else {
            dest.push_back(c);
          }
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JsonEscapedMessage>(); }
};

// %~ : the message with control bytes escaped (\xNN) and '\' doubled, so text from a
// request (a key holding "%0A", a header) can never start a forged log line.
class ConsoleEscapedMessage final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    for (char c : std::string_view(msg.payload.data(), msg.payload.size())) {
      auto u = static_cast<unsigned char>(c);
      if (c == '\\') {
        dest.append(std::string_view("\\\\"));
      } else if (u < 0x20 || u == 0x7f) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\x%02x", u);
        dest.append(std::string_view(buf));
      } else {
        dest.push_back(c);
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<ConsoleEscapedMessage>(); }
};

std::shared_ptr<spdlog::logger>& access_logger() {
  static std::shared_ptr<spdlog::logger> logger;
  return logger;
}

}  // namespace

void setup(const std::string& level, const std::string& format) {
  auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  auto main_logger = std::make_shared<spdlog::logger>("tagd", sink);
  auto access = std::make_shared<spdlog::logger>("access", sink);
  for (auto* l : {main_logger.get(), access.get()}) {
    if (format == "json") {
      auto f = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
      f->add_flag<JsonEscapedMessage>('*');
      f->set_pattern(R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","logger":"%n","msg":"%*"})");
      l->set_formatter(std::move(f));
    } else if (format == "console") {
      auto f = std::make_unique<spdlog::pattern_formatter>();
      f->add_flag<ConsoleEscapedMessage>('~');
      f->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %~");
      l->set_formatter(std::move(f));
    } else {
      throw std::invalid_argument("unknown log format " + format);
    }
  }
  auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") throw std::invalid_argument("unknown log level " + level);
  main_logger->set_level(lvl);
  access->set_level(lvl);
  main_logger->flush_on(spdlog::level::warn);
  access->flush_on(spdlog::level::info);
  spdlog::set_default_logger(main_logger);
  access_logger() = access;
}

spdlog::logger& access() {
  auto& l = access_logger();
  if (!l) l = spdlog::default_logger();
  return *l;
}

}  // namespace tagd::logging
