// Configuration parsing: the JSON config file and command-line flags (config::load).
//
// Input starting with '-': one flag or value per line, passed as argv (no file).
// Otherwise: the bytes of the JSON config file, written to a memfd and named with
// --config /proc/self/fd/N, plus a small fixed environment.
// Invariants: load() returns a Config or throws ConfigError (main() prints it and exits
// 2); no other exception escapes; an accepted Config passes its own cross-checks
// (block size a power of two, a region holds a block, the disk holds two regions) and
// describe() renders it.
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz_common.hpp"
#include "tagd/config/config.hpp"

using namespace tagd;

namespace {

int memfd() {
  static const int fd = memfd_create("tagd-fuzz-config", 0);
  TAGD_FUZZ_CHECK(fd >= 0);
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in = fuzz::as_view(data, size);
  std::vector<std::string> args;
  config::Environment env{{"TAG_LOG_LEVEL", "warn"}};
  if (!in.empty() && in.front() == '-') {
    while (!in.empty() && args.size() < 32) args.emplace_back(fuzz::take_until(in, "\n"));
  } else {
    const int fd = memfd();
    TAGD_FUZZ_CHECK(ftruncate(fd, 0) == 0);
    TAGD_FUZZ_CHECK(pwrite(fd, data, size, 0) == static_cast<ssize_t>(size));
    args = {"--config", "/proc/self/fd/" + std::to_string(fd)};
  }

  config::Config cfg;
  try {
    cfg = config::load(args, env);
  } catch (const config::ConfigError& e) {
    if (fuzz::debug()) std::fprintf(stderr, "refused: %s\n", e.what());
    return 0;
  }
  TAGD_FUZZ_CHECK(cfg.cache_block_size != 0 && (cfg.cache_block_size & (cfg.cache_block_size - 1)) == 0);
  TAGD_FUZZ_CHECK(cfg.cache_region_size >= cfg.cache_block_size + 4096ull);
  TAGD_FUZZ_CHECK(cfg.cache_max_disk_usage >= 2 * cfg.cache_region_size);
  TAGD_FUZZ_CHECK(cfg.client_access_key_id.empty() == cfg.client_secret_access_key.empty());
  TAGD_FUZZ_CHECK(!config::describe(cfg).empty());
  if (fuzz::debug()) std::fprintf(stderr, "accepted\n");
  return 0;
}
