#include "tagd/cli/http_get.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <cstdlib>
#include <optional>

namespace tagd::cli {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using asio::ip::tcp;

Result<Endpoint> parse_endpoint(std::string_view text) {
  if (text.starts_with("https://")) {
    // Said plainly, rather than failing to resolve "https" as a host name.
    return Status(ErrorCode::kInvalidArgument,
                  "endpoint '" + std::string(text) +
                      "': the tagd subcommands speak plain HTTP only; on a node whose tagd listens with TLS "
                      "they cannot reach it yet (docs/deploy.md)");
  }
  std::string_view default_port;
  if (text.starts_with("http://")) {
    text.remove_prefix(7);
    default_port = "80";  // a URL without a port, as AWS_ENDPOINT_URL may be written
  }
  while (text.ends_with("/")) text.remove_suffix(1);
  if (!default_port.empty() && !text.starts_with("[") && text.find(':') == std::string_view::npos && !text.empty()) {
    return Endpoint{std::string(text), std::string(default_port)};
  }
  if (!default_port.empty() && text.starts_with("[") && text.ends_with("]")) {
    return Endpoint{std::string(text.substr(1, text.size() - 2)), std::string(default_port)};
  }
  Endpoint out;
  std::string_view port;
  if (text.starts_with("[")) {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return Status(ErrorCode::kInvalidArgument, "endpoint '" + std::string(text) + "': expected [v6-address]:port");
    }
    out.host = std::string(text.substr(1, close - 1));
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0) {
      return Status(ErrorCode::kInvalidArgument, "endpoint '" + std::string(text) + "': expected host:port");
    }
    out.host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
  }
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos) {
    return Status(ErrorCode::kInvalidArgument, "endpoint '" + std::string(text) + "': bad port");
  }
  out.port = std::string(port);
  return out;
}

std::string default_endpoint() {
  const char* port = std::getenv("TAG_HTTP_PORT");
  return std::string("127.0.0.1:") + (port != nullptr && *port != '\0' ? port : "8080");
}

Result<HttpReply> http_get(const Endpoint& endpoint, std::string_view target, std::chrono::milliseconds timeout) {
  asio::io_context ctx;
  tcp::resolver resolver(ctx);
  beast::tcp_stream stream(ctx);
  beast::flat_buffer buffer;
  bhttp::request<bhttp::empty_body> req{bhttp::verb::get, target, 11};
  req.set(bhttp::field::host, endpoint.host);
  req.set(bhttp::field::user_agent, "tagd-cli");
  req.keep_alive(false);
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(64ull << 20);
  std::optional<boost::system::error_code> done;
  const char* phase = "resolving";

  // One deadline for everything: the stream's timer covers connect, write and read; the
  // io_context's run_for covers the resolver.
  stream.expires_after(timeout);
  resolver.async_resolve(
      endpoint.host, endpoint.port, [&](boost::system::error_code ec, tcp::resolver::results_type r) {
        if (ec) {
          done = ec;
          return;
        }
        phase = "connecting";
        stream.async_connect(r, [&](boost::system::error_code ec, const tcp::endpoint&) {
          if (ec) {
            done = ec;
            return;
          }
          phase = "sending the request";
          bhttp::async_write(stream, req, [&](boost::system::error_code ec, std::size_t) {
            if (ec) {
              done = ec;
              return;
            }
            phase = "reading the response";
            bhttp::async_read(stream, buffer, parser, [&](boost::system::error_code ec, std::size_t) { done = ec; });
          });
        });
      });
  ctx.run_for(timeout + std::chrono::milliseconds(100));
  const std::string where = endpoint.host + ":" + endpoint.port;
  if (!done) return Status(ErrorCode::kServiceUnavailable, where + ": timed out " + phase);
  if (*done) return Status(ErrorCode::kServiceUnavailable, where + ": failed " + phase + ": " + done->message());
  HttpReply reply;
  reply.status = parser.get().result_int();
  reply.body = std::move(parser.get().body());
  return reply;
}

int parse_common_flag(const std::vector<std::string>& args, std::size_t& i, CommonFlags& flags, std::string& error) {
  std::string name = args[i];
  std::optional<std::string> value;
  if (auto eq = name.find('='); eq != std::string::npos) {
    value = name.substr(eq + 1);
    name = name.substr(0, eq);
  }
  if (name != "--endpoint" && name != "--timeout") return 0;
  if (!value) {
    if (i + 1 >= args.size()) {
      error = name + " needs a value";
      return -1;
    }
    value = args[++i];
  }
  if (name == "--endpoint") {
    flags.endpoint = *value;
    return 1;
  }
  char* end = nullptr;
  const long ms = std::strtol(value->c_str(), &end, 10);
  if (value->empty() || *end != '\0' || ms <= 0 || ms > 600000) {
    error = "--timeout: expected milliseconds in [1, 600000], got '" + *value + "'";
    return -1;
  }
  flags.timeout = std::chrono::milliseconds(ms);
  return 1;
}

}  // namespace tagd::cli
