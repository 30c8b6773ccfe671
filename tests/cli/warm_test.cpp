// `tagd warm` / `tagd unpin` output: the progress line's rate and ETA come from bytes
// fetched upstream, not from objects found cached; an admin API error is one line.
#include "tagd/cli/warm.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

namespace tagd::cli {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;
constexpr double kGiB = 1024.0 * kMiB;

TEST(WarmProgressLine, RateAndEtaAreOfFetchedBytesNotOfBytesFoundCached) {
  // 100 GiB found cached in 10 s, 10 MiB fetched: 1 MiB/s, not "10 GiB/s".
  nlohmann::json st{{"id", "w3"},
                    {"state", "running"},
                    {"objects_total", 200},
                    {"objects_done", 100},
                    {"objects_cached", 99},
                    {"objects_failed", 0},
                    {"bytes_total", 200 * kGiB},
                    {"bytes_done", 100 * kGiB + 10 * kMiB},
                    {"bytes_fetched", 10 * kMiB},
                    {"bytes_cached", 100 * kGiB},
                    {"elapsed_seconds", 10.0},
                    {"bytes_per_second", 1 * kMiB}};
  const std::string line = progress_line(st);
  EXPECT_NE(line.find("1.0 MiB/s"), std::string::npos) << line;
  EXPECT_EQ(line.find("GiB/s"), std::string::npos) << line;
  EXPECT_NE(line.find("10.0 MiB fetched"), std::string::npos) << line;
  EXPECT_NE(line.find("100.0 GiB cached"), std::string::npos) << line;
  // (200 GiB - 100.01 GiB) at 1 MiB/s: 102390 s.
  EXPECT_NE(line.find("ETA 1706:30"), std::string::npos) << line;
}

TEST(WarmProgressLine, NothingFetchedYetHasNoRateAndNoEta) {
  nlohmann::json st{{"id", "w4"},
                    {"state", "running"},
                    {"objects_total", 10},
                    {"objects_done", 5},
                    {"bytes_total", 1000.0},
                    {"bytes_done", 500.0},
                    {"bytes_fetched", 0},
                    {"bytes_cached", 500},
                    {"elapsed_seconds", 2.0},
                    {"bytes_per_second", 0.0}};
  const std::string line = progress_line(st);
  EXPECT_NE(line.find(" 0 B/s"), std::string::npos) << line;
  EXPECT_NE(line.find("ETA -"), std::string::npos) << line;
}

TEST(WarmErrorLine, AnS3ErrorIsOneLineWithCodeMessageAndStatus) {
  const std::string xml =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchJob</Code><Message>no such warm job: "
      "w999</Message><Resource>/_tagd/warm/w999</Resource><RequestId>abc</RequestId></Error>";
  EXPECT_EQ(error_line(404, xml), "NoSuchJob: no such warm job: w999 (404)");
}

TEST(WarmErrorLine, EntitiesAreDecodedAndControlCharactersDropped) {
  const std::string xml =
      "<Error><Code>InvalidArgument</Code><Message>the key &quot;a&lt;b&quot; \x1b[31m\n"
      "bad</Message></Error>";
  const std::string line = error_line(400, xml);
  EXPECT_EQ(line, "InvalidArgument: the key \"a<b\" [31mbad (400)");
  EXPECT_EQ(line.find('\n'), std::string::npos);
}

TEST(WarmErrorLine, ABodyThatIsNoS3ErrorStillGivesOneLine) {
  EXPECT_EQ(error_line(502, "<html>bad gateway</html>"), "the daemon answered 502 without an S3 error (502)");
}

}  // namespace
}  // namespace tagd::cli
