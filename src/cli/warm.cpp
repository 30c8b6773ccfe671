#include "tagd/cli/warm.hpp"

#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "tagd/cli/http_get.hpp"
#include "tagd/auth/hashing.hpp"
#include "tagd/core/uri.hpp"
#include "tagd/upstream/signer.hpp"

namespace tagd::cli {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using json = nlohmann::json;
using tcp = asio::ip::tcp;

namespace {

volatile std::sig_atomic_t interrupted = 0;
void on_interrupt(int) { interrupted = 1; }

std::string env(const char* name, std::string fallback = "") {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::string(v) : fallback;
}

struct Signed {
  Endpoint endpoint;
  upstream::SigningCredentials credentials;
};

// One signed request; the answer's status and body. Errors: the daemon was not reachable.
Result<HttpReply> call(const Signed& s, bhttp::verb method, const std::string& target, const std::string& body) {
  try {
    asio::io_context ctx;
    tcp::resolver resolver(ctx);
    tcp::socket socket(ctx);
    asio::connect(socket, resolver.resolve(s.endpoint.host, s.endpoint.port));
    bhttp::request<bhttp::string_body> req{method, target, 11};
    req.set(bhttp::field::user_agent, "tagd-cli");
    if (!body.empty()) req.set(bhttp::field::content_type, "application/json");
    req.body() = body;
    req.prepare_payload();
    const std::string host = s.endpoint.host + ":" + s.endpoint.port;
    upstream::sign_request(req.base(), bhttp::to_string(method), target, host, auth::sha256_hex(body), s.credentials,
                           std::chrono::system_clock::now());
    req.keep_alive(false);
    bhttp::write(socket, req);
    boost::beast::flat_buffer buffer;
    bhttp::response<bhttp::string_body> res;
    bhttp::read(socket, buffer, res);
    return HttpReply{static_cast<int>(res.result_int()), std::move(res.body())};
  } catch (const boost::system::system_error& e) {
    return Status(ErrorCode::kServiceUnavailable, s.endpoint.host + ":" + s.endpoint.port + ": " + e.what());
  }
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  char out[32];
  std::snprintf(out, sizeof out, u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
  return out;
}

int usage(const std::string& why) {
  std::cerr << "tagd warm: " << why << "\n"
            << "usage: tagd warm s3://BUCKET[/PREFIX] [--keys FILE] [--pin | --no-pin] [--concurrency N] [--detach]"
               " [--json] [--endpoint HOST:PORT]\n"
               "       --pin: keep the prefix in the cache until `tagd unpin`, objects filled under it later\n"
               "       included (within cache.pin_quota); with --keys, the listed objects;\n"
               "       a --keys job pins what it fetches until a client has read it, unless --no-pin\n"
               "       tagd warm --status ID | --cancel ID | --list [--endpoint HOST:PORT]\n"
               "Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (a key with an admin grant), region\n"
               "AWS_REGION (us-east-1); endpoint AWS_ENDPOINT_URL, else 127.0.0.1:$TAG_HTTP_PORT (8080).\n";
  return 2;
}

bool finished(const json& st) {
  const std::string s = st.value("state", "");
  return s == "done" || s == "cancelled" || s == "failed";
}

// The text of the first <name> element of an S3 error body, entities decoded and control
// characters dropped (a key in a message must not drive the terminal).
std::string xml_field(std::string_view xml, std::string_view name) {
  const std::string open = "<" + std::string(name) + ">", close = "</" + std::string(name) + ">";
  const auto a = xml.find(open);
  if (a == std::string_view::npos) return "";
  const auto b = xml.find(close, a + open.size());
  if (b == std::string_view::npos) return "";
  const std::string_view raw = xml.substr(a + open.size(), b - a - open.size());
  static constexpr std::pair<std::string_view, char> kEntities[] = {
      {"&lt;", '<'}, {"&gt;", '>'}, {"&amp;", '&'}, {"&quot;", '"'}, {"&apos;", '\''}};
  std::string out;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    bool decoded = false;
    for (const auto& [entity, c] : kEntities) {
      if (raw.substr(i, entity.size()) == entity) {
        out.push_back(c);
        i += entity.size() - 1;
        decoded = true;
        break;
      }
    }
    if (!decoded && static_cast<unsigned char>(raw[i]) >= 0x20 && raw[i] != 0x7f) out.push_back(raw[i]);
  }
  return out;
}

}  // namespace

std::string error_line(int status, std::string_view body) {
  const std::string code = xml_field(body, "Code"), message = xml_field(body, "Message");
  std::string line;
  if (!code.empty()) line = code;
  if (!message.empty()) line += (line.empty() ? "" : ": ") + message;
  if (line.empty()) line = "the daemon answered " + std::to_string(status) + " without an S3 error";
  return line + " (" + std::to_string(status) + ")";
}

std::string progress_line(const json& st) {
  const double total = st.value("objects_total", 0.0);
  const double done = st.value("objects_done", 0.0) + st.value("objects_failed", 0.0);
  const double bytes = st.value("bytes_done", 0.0), bytes_total = st.value("bytes_total", 0.0);
  // The rate and the ETA are of bytes fetched upstream: objects found cached cost no
  // fetch, and counting them made a pass over a cached dataset report "100 GiB/s". (A
  // daemon without bytes_fetched counted both in bytes_per_second.)
  const double fetched = st.value("bytes_fetched", bytes), cached = st.value("bytes_cached", 0.0);
  const double elapsed = st.value("elapsed_seconds", 0.0);
  const double rate = st.contains("bytes_fetched") ? (elapsed > 0 ? fetched / elapsed : 0.0)
                                                   : st.value("bytes_per_second", 0.0);
  const double fraction = bytes_total > 0 ? std::min(1.0, bytes / bytes_total) : (total > 0 ? done / total : 0.0);
  constexpr int kWidth = 24;
  const int filled = static_cast<int>(fraction * kWidth);
  std::string bar = "[" + std::string(filled, '#') + std::string(kWidth - filled, '.') + "]";
  char line[320];
  std::string eta = "-";
  if (rate > 0 && bytes_total > bytes) {
    // What is left may be cached too: the ETA assumes it must be fetched (an upper bound).
    const long s = static_cast<long>((bytes_total - bytes) / rate);
    char e[32];
    std::snprintf(e, sizeof e, "%ld:%02ld", s / 60, s % 60);
    eta = e;
  }
  std::snprintf(line, sizeof line,
                "%s %s %.0f/%.0f objects  %s/%s (%s fetched, %s cached)  %s/s  ETA %s  (%s, %.0f cached, %.0f "
                "failed)",
                st.value("id", "").c_str(), bar.c_str(), done, total, human_bytes(bytes).c_str(),
                human_bytes(bytes_total).c_str(), human_bytes(fetched).c_str(), human_bytes(cached).c_str(),
                human_bytes(rate).c_str(), eta.c_str(), st.value("state", "").c_str(), st.value("objects_cached", 0.0),
                st.value("objects_failed", 0.0));
  return line;
}

int warm_main(const std::vector<std::string>& args) {
  std::string url, keys_file, status_id, cancel_id;
  std::string endpoint = env("AWS_ENDPOINT_URL", default_endpoint());
  unsigned concurrency = 0;
  bool detach = false, as_json = !isatty(STDOUT_FILENO), list = false;
  std::optional<bool> pin;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](std::string& out) {
      if (i + 1 >= args.size()) return false;
      out = args[++i];
      return true;
    };
    std::string v;
    if (a == "--keys") {
      if (!value(keys_file)) return usage("--keys needs a file");
    } else if (a == "--endpoint") {
      if (!value(endpoint)) return usage("--endpoint needs HOST:PORT");
    } else if (a == "--concurrency") {
      if (!value(v) || v.empty() || v.size() > 3 || v.find_first_not_of("0123456789") != std::string::npos) {
        return usage("--concurrency needs 1 to 256");
      }
      concurrency = static_cast<unsigned>(std::stoul(v));
      if (concurrency == 0 || concurrency > 256) return usage("--concurrency needs 1 to 256");
    } else if (a == "--status") {
      if (!value(status_id)) return usage("--status needs a job id");
    } else if (a == "--cancel") {
      if (!value(cancel_id)) return usage("--cancel needs a job id");
    } else if (a == "--list") {
      list = true;
    } else if (a == "--pin") {
      pin = true;
    } else if (a == "--no-pin") {
      pin = false;
    } else if (a == "--detach") {
      detach = true;
    } else if (a == "--json") {
      as_json = true;
    } else if (a.rfind("s3://", 0) == 0 && url.empty()) {
      url = a;
    } else {
      return usage("unknown argument '" + a + "'");
    }
  }
  auto ep = parse_endpoint(endpoint);
  if (!ep) return usage(ep.error().message());
  Signed s{*ep, {env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"), env("AWS_REGION", env("AWS_DEFAULT_REGION", "us-east-1"))}};
  if (s.credentials.access_key_id.empty() || s.credentials.secret_access_key.empty()) {
    return usage("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (a key with an admin grant)");
  }

  auto answer = [&](bhttp::verb method, const std::string& target, const std::string& body) -> int {
    auto r = call(s, method, target, body);
    if (!r) {
      std::cerr << "tagd warm: " << r.error().message() << "\n";
      return 1;
    }
    // An error is one line on stderr (NoSuchJob for an unknown id), never XML on stdout.
    if (r->status / 100 != 2) {
      std::cerr << "tagd warm: " << error_line(r->status, r->body) << "\n";
      return 1;
    }
    std::cout << r->body;
    return 0;
  };
  if (list) return answer(bhttp::verb::get, "/_tagd/warm", "");
  if (!status_id.empty()) return answer(bhttp::verb::get, "/_tagd/warm/" + status_id, "");
  if (!cancel_id.empty()) return answer(bhttp::verb::delete_, "/_tagd/warm/" + cancel_id, "");
  if (url.empty()) return usage("name what to warm: s3://BUCKET[/PREFIX]");

  const std::string path = url.substr(5);
  json spec;
  spec["bucket"] = path.substr(0, path.find('/'));
  if (spec["bucket"].get<std::string>().empty()) return usage("no bucket in " + url);
  spec["prefix"] = path.find('/') == std::string::npos ? "" : path.substr(path.find('/') + 1);
  if (concurrency != 0) spec["concurrency"] = concurrency;
  if (pin) spec["pin"] = *pin;
  if (!keys_file.empty()) {
    std::ifstream in(keys_file);
    if (!in) return usage("cannot read " + keys_file);
    json keys = json::array();
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!line.empty()) keys.push_back(line);
    }
    spec["keys"] = std::move(keys);
  }
  auto started = call(s, bhttp::verb::post, "/_tagd/warm", spec.dump());
  if (!started) {
    std::cerr << "tagd warm: " << started.error().message() << "\n";
    return 1;
  }
  if (started->status / 100 != 2) {
    std::cerr << "tagd warm: the daemon refused the job: " << error_line(started->status, started->body) << "\n";
    return 1;
  }
  json status = json::parse(started->body, nullptr, false);
  const std::string id = status.is_object() ? status.value("id", "") : "";
  if (id.empty()) {
    std::cerr << "tagd warm: unexpected answer: " << started->body;
    return 1;
  }
  if (detach) {
    std::cout << (as_json ? status.dump() : "warm job " + id + " started; tagd warm --status " + id) << "\n";
    return 0;
  }
  std::signal(SIGINT, on_interrupt);
  for (;;) {
    auto r = call(s, bhttp::verb::get, "/_tagd/warm/" + id, "");
    if (!r || r->status != 200) {
      std::cerr << "\ntagd warm: lost the job " << id << ": "
                << (r ? error_line(r->status, r->body) : r.error().message()) << "\n";
      return 1;
    }
    status = json::parse(r->body, nullptr, false);
    if (as_json) {
      std::cout << status.dump() << std::endl;
    } else {
      std::cout << "\r" << progress_line(status) << "\x1b[K" << std::flush;
    }
    if (finished(status)) break;
    if (interrupted) {
      std::cerr << "\nwarm job " << id << " keeps running in the daemon; tagd warm --cancel " << id << " stops it\n";
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(as_json ? 1000 : 250));
  }
  if (!as_json) {
    std::cout << "\n";
    for (const auto& f : status.value("failures", json::array())) {
      std::cout << "  failed: " << f.value("key", "") << ": " << f.value("error", "") << "\n";
    }
  }
  return status.value("state", "") == "done" && status.value("objects_failed", 0) == 0 ? 0 : 1;
}

int unpin_main(const std::vector<std::string>& args) {
  auto fail = [](const std::string& why) {
    std::cerr << "tagd unpin: " << why << "\n"
              << "usage: tagd unpin s3://BUCKET/PREFIX [--recursive | --list] [--endpoint HOST:PORT]\n"
                 "       tagd unpin s3://BUCKET --all [--recursive]\n"
                 "Unpins the prefix `tagd warm --pin` pinned, and the objects under it no other pinned\n"
                 "prefix covers (--recursive: every pinned prefix under it too; --list: show the pins).\n"
                 "--all: the whole bucket (every job's pins in it), which no prefix means by itself.\n"
                 "Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (a key with an admin grant).\n";
    return 2;
  };
  std::string url, endpoint = env("AWS_ENDPOINT_URL", default_endpoint());
  bool list = false, recursive = false, all = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--list") {
      list = true;
    } else if (args[i] == "--all") {
      all = true;
    } else if (args[i] == "--recursive") {
      recursive = true;
    } else if (args[i] == "--endpoint" && i + 1 < args.size()) {
      endpoint = args[++i];
    } else if (args[i].rfind("s3://", 0) == 0 && url.empty()) {
      url = args[i];
    } else {
      return fail("unknown argument '" + args[i] + "'");
    }
  }
  if (url.empty()) return fail("name what to unpin: s3://BUCKET[/PREFIX]");
  if (list && recursive) return fail("--recursive unpins; --list only shows");
  const std::string path = url.substr(5);
  const std::string bucket = path.substr(0, path.find('/'));
  const std::string prefix = path.find('/') == std::string::npos ? "" : path.substr(path.find('/') + 1);
  if (bucket.empty()) return fail("no bucket in " + url);
  // Leaving the prefix out (or a typo that drops it) must not release every pin in the
  // bucket: that takes --all. Listing the whole bucket is harmless.
  if (!list && prefix.empty() && !all) {
    std::cerr << "tagd unpin: " << url << " names no prefix: add --all to unpin everything pinned in bucket "
              << bucket << " (with --recursive, its pinned prefixes too)\n";
    return 2;
  }
  if (all && !prefix.empty()) return fail("--all unpins the whole bucket: name no prefix (s3://" + bucket + ")");
  if (all && list) return fail("--all unpins; --list only shows");
  auto ep = parse_endpoint(endpoint);
  if (!ep) return fail(ep.error().message());
  Signed s{*ep, {env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"), env("AWS_REGION", env("AWS_DEFAULT_REGION", "us-east-1"))}};
  if (s.credentials.access_key_id.empty() || s.credentials.secret_access_key.empty()) {
    return fail("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (a key with an admin grant)");
  }
  // Parameters in canonical (sorted) order, encoded as SigV4 wants them.
  std::string target = std::string("/_tagd/pins?") + (all ? "all=true&" : "") + "bucket=" + uri_encode(bucket, true) +
                       "&prefix=" + uri_encode(prefix, true);
  if (recursive) target += "&recursive=true";
  auto r = call(s, list ? bhttp::verb::get : bhttp::verb::delete_, target, "");
  if (!r) {
    std::cerr << "tagd unpin: " << r.error().message() << "\n";
    return 1;
  }
  if (r->status / 100 != 2) {
    std::cerr << "tagd unpin: the daemon refused: " << error_line(r->status, r->body) << "\n";
    return 1;
  }
  std::cout << r->body;
  // An unpin that left objects pinned says by what, so it is not mistaken for a failure.
  if (!list) {
    json answer = json::parse(r->body, nullptr, /*allow_exceptions=*/false);
    if (answer.is_object() && answer.value("objects_kept", 0) > 0) {
      std::cerr << "tagd unpin: " << answer.value("objects_kept", 0)
                << " objects under the prefix stay pinned by another pinned prefix:";
      for (const auto& p : answer.value("still_pinned_by", json::array())) std::cerr << " s3://" << bucket << "/" << p.get<std::string>();
      std::cerr << "\n";
    }
  }
  return 0;
}

}  // namespace tagd::cli
