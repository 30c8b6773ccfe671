#pragma once
// A body read in pieces at the reader's pace: an upstream response, a cached object, a
// fill in progress. Whoever writes it to a client does not know which (the model is
// Envoy's HttpSource); backpressure is the reader simply not calling read() again until
// it has written what it got.
#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/message.hpp>
#include <cstdint>
#include <optional>
#include <span>

#include "tagd/core/status.hpp"

namespace tagd {

// Where a lent piece's bytes lie in a file (fd < 0: they do not).
struct PieceFile {
  int fd = -1;
  std::uint64_t offset = 0;
};

class BodySource {
 public:
  virtual ~BodySource() = default;
  // Up to out.size() bytes. 0 means the body ended cleanly. An error means it can never
  // be completed (upstream truncated, object changed, fill stalled): a reader that has
  // already sent a head must abort the response, never end it short.
  [[nodiscard]] virtual boost::asio::awaitable<Result<std::size_t>> read(std::span<char> out) = 0;
  // The next bytes as a view valid until the next call on this source; empty at the end.
  // Sources that already hold their bytes (a cached block) lend them without a copy;
  // the default reads into `scratch`.
  [[nodiscard]] virtual boost::asio::awaitable<Result<std::span<const char>>> next(std::span<char> scratch) {
    auto n = co_await read(scratch);
    if (!n) co_return n.error();
    co_return std::span<const char>(scratch.data(), n.value());
  }
  // next() when the bytes are at hand: the next piece (empty at the end) when it can be had
  // without waiting, nullopt when next() has to be awaited (then nothing was consumed).
  // A cached block in memory is lent this way without a coroutine frame per piece.
  [[nodiscard]] virtual std::optional<Result<std::span<const char>>> try_next(std::span<char> scratch) {
    (void)scratch;
    return std::nullopt;
  }
  // Where the piece the last next()/try_next() lent lies in a file, for a writer that
  // hands the kernel the file's pages (sendfile into a plain socket) instead of copying
  // the piece. Asking is a promise to do that: the source makes sure the pages are never
  // rewritten while a socket may still hold them. fd < 0: the piece is only memory (read
  // into `scratch`, a fill in progress, a block read from disk), so copy it.
  [[nodiscard]] virtual PieceFile lend_piece_file() { return {}; }
  // The total length when known before the end (Content-Length); nullopt: read to the end.
  [[nodiscard]] virtual std::optional<std::uint64_t> length() const = 0;
};

// A response: a head and its body (an upstream answer, as a fill or a relay sees it).
class ResponseSource : public BodySource {
 public:
  [[nodiscard]] virtual const boost::beast::http::response_header<>& head() const = 0;
  [[nodiscard]] virtual boost::beast::http::response_header<>& head() = 0;
  int status() const { return head().result_int(); }
};

}  // namespace tagd
