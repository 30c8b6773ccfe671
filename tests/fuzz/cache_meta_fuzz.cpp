// Object metadata records of the cache index (cache/index.hpp): what decode_meta reads
// back from RocksDB (bytes a crash, a bit flip or another version can make arbitrary) and
// what encode_meta writes from an upstream response (ETag, Last-Modified and replayed
// headers are upstream-controlled bytes).
//
// Input, byte 0 even: a stored record for decode_meta.
//   Invariant: a record that decodes re-encodes, and decodes to the same metadata.
// Input, byte 0 odd: metadata fields from the rest (FuzzedDataProvider), any bytes.
//   Invariant: encode_meta does not throw; what it encodes decodes to the same metadata
//   (metadata that is not valid UTF-8 is not encodable: nullopt, never cached).
#include <fuzzer/FuzzedDataProvider.h>

#include <nlohmann/json.hpp>

#include "fuzz_common.hpp"
#include "tagd/cache/index.hpp"

using namespace tagd;

namespace {

bool same(const cache::ObjectMeta& a, const cache::ObjectMeta& b) {
  return a.size == b.size && a.etag == b.etag && a.last_modified == b.last_modified && a.headers == b.headers &&
         a.fetched_at_ms == b.fetched_at_ms && a.fresh_until_ms == b.fresh_until_ms &&
         a.block_size == b.block_size && a.checksums == b.checksums && a.checksums_known == b.checksums_known;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  if ((data[0] & 1) == 0) {
    const std::string_view record = fuzz::as_view(data + 1, size - 1);
    auto meta = cache::decode_meta(record);
    if (!meta) return 0;
    const auto again = cache::encode_meta(*meta);
    TAGD_FUZZ_CHECK(again.has_value());  // it was JSON text already
    auto back = cache::decode_meta(*again);
    TAGD_FUZZ_CHECK(back.has_value());
    TAGD_FUZZ_CHECK(same(*meta, *back));
    return 0;
  }
  FuzzedDataProvider fdp(data + 1, size - 1);
  cache::ObjectMeta m;
  m.size = fdp.ConsumeIntegral<std::uint64_t>();
  m.fetched_at_ms = fdp.ConsumeIntegral<std::int64_t>();
  m.fresh_until_ms = fdp.ConsumeIntegral<std::int64_t>();
  m.block_size = fdp.ConsumeIntegral<std::uint32_t>();
  m.checksums_known = fdp.ConsumeBool();
  m.etag = fdp.ConsumeRandomLengthString(80);
  m.last_modified = fdp.ConsumeRandomLengthString(40);
  const int headers = fdp.ConsumeIntegralInRange(0, 6);
  for (int i = 0; i < headers; ++i) {
    m.headers.emplace_back(fdp.ConsumeRandomLengthString(32), fdp.ConsumeRandomLengthString(64));
  }
  if (fdp.ConsumeBool()) m.checksums.emplace_back("x-amz-checksum-crc32", fdp.ConsumeRandomLengthString(16));
  const auto record = cache::encode_meta(m);
  if (!record) return 0;
  auto back = cache::decode_meta(*record);
  TAGD_FUZZ_CHECK(back.has_value());
  TAGD_FUZZ_CHECK(same(m, *back));
  return 0;
}
