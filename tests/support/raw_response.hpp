#pragma once
// What a test client received on a raw socket, split into status line, headers and body.
// Shared by the tests that play an HTTP client over loopback (response writer, gateway).
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <chrono>
#include <map>
#include <string>
#include <string_view>

#include "tagd/core/strings.hpp"

namespace tagd::testing {

struct RawResponse {
  std::string response;  // every byte the client received
  bool client_done = false;        // read_all() ended
  boost::system::error_code end;   // how it ended (eof: a clean close)
  std::string status_line;
  std::multimap<std::string, std::string> headers;  // lower-case names
  std::string body;                                 // raw bytes after the head (chunk framing included)

  std::size_t count(const std::string& name) const { return headers.count(name); }
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string("<absent>") : it->second;
  }

  // Splits `response` (no-op until the head is complete).
  void parse() {
    auto end = response.find("\r\n\r\n");
    if (end == std::string::npos) return;
    body = response.substr(end + 4);
    std::string_view head(response.data(), end + 2);
    auto eol = head.find("\r\n");
    status_line = std::string(head.substr(0, eol));
    head.remove_prefix(eol + 2);
    while (!head.empty()) {
      eol = head.find("\r\n");
      std::string_view line = head.substr(0, eol);
      head.remove_prefix(eol + 2);
      auto colon = line.find(':');
      if (colon == std::string_view::npos) continue;
      headers.emplace(to_lower(line.substr(0, colon)), std::string(trim_ows(line.substr(colon + 1))));
    }
  }
};

// The test client's side: reads until EOF or an error (each read bounded by 5 s).
inline boost::asio::awaitable<void> read_all(boost::asio::ip::tcp::socket socket, RawResponse* out) {
  boost::beast::tcp_stream stream(std::move(socket));
  std::array<char, 4096> buf;
  for (;;) {
    stream.expires_after(std::chrono::seconds(5));
    auto [ec, n] = co_await stream.async_read_some(boost::asio::buffer(buf),
                                                   boost::asio::as_tuple(boost::asio::use_awaitable));
    out->response.append(buf.data(), n);
    if (ec) {
      out->end = ec;
      break;
    }
  }
  out->client_done = true;
}

}  // namespace tagd::testing
