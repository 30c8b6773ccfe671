#include "tagd/core/io_uring_probe.hpp"

#include <gtest/gtest.h>

namespace tagd {
namespace {

using Action = SocketChoice::Action;

IoUringProbe usable() {
  return {true, "io_uring ready"};
}
IoUringProbe refused() {
  return {false, "io_uring_queue_init failed: Operation not permitted"};
}

TEST(ChooseSockets, EpollBuildExecsItsSiblingWhenIoUringIsUsable) {
  const auto c = choose_sockets(false, true, usable());
  EXPECT_EQ(c.action, Action::kExecSibling);
}

TEST(ChooseSockets, EpollBuildServesItselfWhereIoUringIsRefusedOrOff) {
  for (const auto& probe : {refused(), IoUringProbe{false, "disabled by configuration (io_uring=off)"}}) {
    const auto c = choose_sockets(false, true, probe);
    EXPECT_EQ(c.action, Action::kServe);
    EXPECT_FALSE(c.io_uring);
    EXPECT_EQ(c.why, probe.detail);  // the log line says why
  }
}

TEST(ChooseSockets, EpollBuildWithoutSiblingServesOnEpollAndSaysWhy) {
  const auto c = choose_sockets(false, false, usable());
  EXPECT_EQ(c.action, Action::kServe);
  EXPECT_FALSE(c.io_uring);
  EXPECT_NE(c.why.find("TAGD_URING_SIBLING=OFF"), std::string::npos) << c.why;
}

TEST(ChooseSockets, UringBuildServesOnIoUringOrRefusesButNeverExecs) {
  for (bool sibling : {false, true}) {
    const auto ok = choose_sockets(true, sibling, usable());
    EXPECT_EQ(ok.action, Action::kServe);
    EXPECT_TRUE(ok.io_uring);
    // No way back to tagd from here: the two could otherwise exec each other in turn.
    const auto no = choose_sockets(true, sibling, refused());
    EXPECT_EQ(no.action, Action::kRefuse);
    EXPECT_EQ(no.why, refused().detail);
  }
}

TEST(SiblingPath, IsNextToTheExecutableNeverOnPath) {
  EXPECT_EQ(sibling_path("/usr/local/bin/tagd", "tagd-uring"), "/usr/local/bin/tagd-uring");
  EXPECT_EQ(sibling_path("/tagd", "tagd-uring"), "/tagd-uring");
  EXPECT_EQ(sibling_path("tagd", "tagd-uring"), "./tagd-uring");
}

TEST(ExecBuild, OnlyAnotherBuildIsRefused) {
  EXPECT_EQ(check_exec_build(nullptr, "0.1.0-abc-Release"), "");  // started directly
  EXPECT_EQ(check_exec_build("0.1.0-abc-Release", "0.1.0-abc-Release"), "");
  const std::string why = check_exec_build("0.2.0-def-Release", "0.1.0-abc-Release");
  EXPECT_NE(why.find("tagd-uring is build 0.1.0-abc-Release"), std::string::npos) << why;
  EXPECT_NE(why.find("started it is build 0.2.0-def-Release"), std::string::npos) << why;
  EXPECT_NE(why.find("io_uring=off"), std::string::npos) << why;
  EXPECT_NE(check_exec_build("", "0.1.0-abc-Release"), "");
}

TEST(SelfExecutable, IsTheRunningBinary) {
  std::string error;
  const std::string self = self_executable(error);
  ASSERT_FALSE(self.empty()) << error;
  EXPECT_EQ(self.front(), '/');
  EXPECT_NE(self.find("core_test"), std::string::npos) << self;
}

}  // namespace
}  // namespace tagd
