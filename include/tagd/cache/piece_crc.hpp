#pragma once
// CRC32C (Castagnoli) of the cache's 64 KiB pieces, the same value as auth::crc32c.
//
// Every byte served from the disk is checked against its piece's CRC32C, so this is on the
// hit path of every disk read: one SSE4.2 crc32 chain runs at 8 bytes per 3 cycles (the
// instruction's latency); three independent chains over thirds of a stretch, joined by a
// table-driven shift, run at its throughput (8 bytes per cycle). A warm 1 GiB object read
// spent 35 % of tagd's CPU in the single chain (docs/benchmarks.md, "Warm large hits,
// third pass").
#include <cstddef>
#include <cstdint>
#include <span>

namespace tagd::cache {

[[nodiscard]] std::uint32_t piece_crc32c(std::span<const std::byte> data);

}  // namespace tagd::cache
