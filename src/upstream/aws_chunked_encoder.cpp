#include "tagd/upstream/aws_chunked_encoder.hpp"

#include <cassert>
#include <cstdio>

namespace tagd::upstream {
namespace {

std::size_t hex_digits(std::uint64_t n) {
  std::size_t digits = 1;
  while (n >= 16) {
    n /= 16;
    ++digits;
  }
  return digits;
}

}  // namespace

AwsChunkedEncoder::AwsChunkedEncoder(std::size_t chunk_size, std::string trailer_name)
    : chunk_size_(chunk_size), trailer_name_(std::move(trailer_name)) {
  assert(chunk_size_ > 0);
  partial_.reserve(chunk_size_);
}

std::uint64_t AwsChunkedEncoder::encoded_length(std::uint64_t payload_bytes, std::size_t trailer_value_bytes) const {
  const std::uint64_t full = payload_bytes / chunk_size_;
  const std::uint64_t rest = payload_bytes % chunk_size_;
  std::uint64_t n = full * (hex_digits(chunk_size_) + 2 + chunk_size_ + 2);
  if (rest > 0) n += hex_digits(rest) + 2 + rest + 2;
  n += 3;                                                   // "0\r\n"
  n += trailer_name_.size() + 1 + trailer_value_bytes + 2;  // "name:value\r\n"
  n += 2;                                                   // "\r\n"
  return n;
}

void AwsChunkedEncoder::emit_chunk(std::string_view data, std::string& out) const {
  char size[20];
  int len = std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  out.append(size, static_cast<std::size_t>(len));
  out.append(data);
  out.append("\r\n");
}

void AwsChunkedEncoder::encode(std::string_view payload, std::string& out) {
  if (!partial_.empty()) {
    std::size_t take = std::min(payload.size(), chunk_size_ - partial_.size());
    partial_.append(payload.substr(0, take));
    payload.remove_prefix(take);
    if (partial_.size() < chunk_size_) return;
    emit_chunk(partial_, out);
    partial_.clear();
  }
  while (payload.size() >= chunk_size_) {
    emit_chunk(payload.substr(0, chunk_size_), out);
    payload.remove_prefix(chunk_size_);
  }
  partial_.append(payload);
}

void AwsChunkedEncoder::finish(std::string_view trailer_value, std::string& out) {
  if (!partial_.empty()) emit_chunk(partial_, out);
  partial_.clear();
  out.append("0\r\n");
  out.append(trailer_name_);
  out.push_back(':');
  out.append(trailer_value);
  out.append("\r\n\r\n");
}

}  // namespace tagd::upstream
