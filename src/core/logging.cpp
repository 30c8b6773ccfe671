#include "tagd/core/logging.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
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

// %P : the syslog priority prefix journald reads from a stream ("<3>" = err, "<4>" =
// warning, "<6>" = info, "<7>" = debug; sd-daemon(3)), so `journalctl -p warning` works.
class JournalPriority final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    int priority = 6;
    switch (msg.level) {
      case spdlog::level::critical: priority = 2; break;
      case spdlog::level::err: priority = 3; break;
      case spdlog::level::warn: priority = 4; break;
      case spdlog::level::info: priority = 6; break;
      default: priority = 7; break;
    }
    const char text[] = {'<', static_cast<char>('0' + priority), '>'};
    dest.append(text, text + sizeof text);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JournalPriority>(); }
};

std::shared_ptr<spdlog::logger>& access_logger() {
  static std::shared_ptr<spdlog::logger> logger;
  return logger;
}

}  // namespace

bool stderr_is_journal() {
  // systemd sets JOURNAL_STREAM=<device>:<inode> of the stream it connected; it is only
  // ours if stderr is still that stream (not redirected by a wrapper script).
  const char* value = std::getenv("JOURNAL_STREAM");
  if (value == nullptr) return false;
  unsigned long long device = 0, inode = 0;
  if (std::sscanf(value, "%llu:%llu", &device, &inode) != 2) return false;
  struct stat st {};
  if (fstat(2, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == device && static_cast<unsigned long long>(st.st_ino) == inode;
}

void setup(const std::string& level, const std::string& format) {
  const bool journal = format == "console" && stderr_is_journal();
  auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  auto main_logger = std::make_shared<spdlog::logger>("tagd", sink);
  auto access = std::make_shared<spdlog::logger>("access", sink);
  for (auto* l : {main_logger.get(), access.get()}) {
    if (format == "json") {
      auto f = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
      f->add_flag<JsonEscapedMessage>('*');
      f->set_pattern(R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","logger":"%n","msg":"%*"})");
      l->set_formatter(std::move(f));
    } else if (journal) {
      // journald stamps and colours each line itself: only the priority and the text.
      auto f = std::make_unique<spdlog::pattern_formatter>();
      f->add_flag<JournalPriority>('P');
      f->add_flag<ConsoleEscapedMessage>('~');
      f->set_pattern("%P[%n] %~");
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
