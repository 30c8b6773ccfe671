// The client credentials file (auth.credentials_file): JSON with keys and grants.
//
// Input: the file's bytes, written to a memfd and loaded through /proc/self/fd/N, the
// same path CredentialStore::load_file takes for a real file.
// Invariants: load_file either succeeds or throws std::runtime_error (what main() turns
// into a start-up error naming the setting); nothing else escapes. Every loaded identity
// has a non-empty key and secret and is found by its key.
#include <sys/mman.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "fuzz_common.hpp"
#include "tagd/auth/credentials.hpp"

using namespace tagd;

namespace {

// One memfd for the whole run, rewritten per input.
int memfd() {
  static const int fd = memfd_create("tagd-fuzz-credentials", 0);
  TAGD_FUZZ_CHECK(fd >= 0);
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const int fd = memfd();
  TAGD_FUZZ_CHECK(ftruncate(fd, 0) == 0);
  TAGD_FUZZ_CHECK(pwrite(fd, data, size, 0) == static_cast<ssize_t>(size));
  const std::string path = "/proc/self/fd/" + std::to_string(fd);

  auth::CredentialStore store;
  try {
    store.load_file(path);
  } catch (const std::runtime_error& e) {
    if (fuzz::debug()) std::fprintf(stderr, "refused: %s\n", e.what());
    return 0;
  }
  // Loaded: the keys the file names (found by a rough scan) are complete, and the grant
  // checks run on them.
  const std::string_view text = fuzz::as_view(data, size);
  for (auto pos = text.find("\"access_key_id\""); pos != std::string_view::npos;
       pos = text.find("\"access_key_id\"", pos + 1)) {
    const auto colon = text.find(':', pos + 15);
    if (colon == std::string_view::npos) break;
    const auto open = text.find('"', colon + 1);
    if (open == std::string_view::npos) break;
    const auto close = text.find('"', open + 1);
    if (close == std::string_view::npos) break;
    if (const auth::Identity* id = store.find(text.substr(open + 1, close - open - 1))) {
      TAGD_FUZZ_CHECK(!id->access_key_id.empty() && !id->secret_access_key.empty());
      (void)id->may(s3::Action::kRead, "bucket", "key");
      (void)id->may(s3::Action::kWrite, "bucket", "prefix/key");
    }
  }
  return 0;
}
