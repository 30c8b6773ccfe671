#include "tagd/notify/outbox.hpp"

#include <gtest/gtest.h>

#include <filesystem>

namespace tagd::notify {
namespace {

class OutboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("tagd-outbox-" + std::to_string(::getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

std::vector<std::string> jsons(const std::vector<QueuedEvent>& q) {
  std::vector<std::string> out;
  for (const auto& e : q) out.push_back(e.event_json);
  return out;
}

TEST_F(OutboxTest, EventsSurviveAReopenInOrder) {
  {
    auto box = Outbox::open(dir_.string());
    ASSERT_TRUE(box->append({{"a", "1"}, {"b", "x"}, {"a", "2"}}));
    ASSERT_TRUE(box->append({{"a", "3"}}));
    EXPECT_EQ(box->backlog(), 4u);
  }
  auto box = Outbox::open(dir_.string());
  EXPECT_EQ(box->backlog(), 4u);
  EXPECT_EQ(box->backlog("a"), 3u);
  auto a = box->peek("a", 10);
  ASSERT_TRUE(a);
  EXPECT_EQ(jsons(*a), (std::vector<std::string>{"1", "2", "3"}));
  // New sequence numbers continue after the reopened ones: order holds across restarts.
  ASSERT_TRUE(box->append({{"a", "4"}}));
  auto again = box->peek("a", 10);
  ASSERT_TRUE(again);
  EXPECT_EQ(jsons(*again), (std::vector<std::string>{"1", "2", "3", "4"}));
  EXPECT_EQ(box->queues(), (std::vector<std::string>{"a", "b"}));
}

TEST_F(OutboxTest, RemovedEventsStayRemovedAcrossReopen) {
  {
    auto box = Outbox::open(dir_.string());
    ASSERT_TRUE(box->append({{"a", "1"}, {"a", "2"}, {"a", "3"}}));
    auto first = box->peek("a", 2);
    ASSERT_TRUE(first);
    ASSERT_EQ(first->size(), 2u);
    ASSERT_TRUE(box->remove("a", *first));
    EXPECT_EQ(box->backlog(), 1u);
    auto rest = box->peek("a", 10);
    ASSERT_TRUE(rest);
    EXPECT_EQ(jsons(*rest), (std::vector<std::string>{"3"}));
  }
  auto box = Outbox::open(dir_.string());
  EXPECT_EQ(box->backlog(), 1u);
  auto rest = box->peek("a", 10);
  ASSERT_TRUE(rest);
  EXPECT_EQ(jsons(*rest), (std::vector<std::string>{"3"}));
}

TEST_F(OutboxTest, EndpointNamesThatArePrefixesOfOthersDoNotMix) {
  auto box = Outbox::open(dir_.string());
  ASSERT_TRUE(box->append({{"hook", "1"}, {"hook2", "2"}, {"hoo", "3"}}));
  auto q = box->peek("hook", 10);
  ASSERT_TRUE(q);
  EXPECT_EQ(jsons(*q), (std::vector<std::string>{"1"}));
}

TEST_F(OutboxTest, DeadLettersAreKeptUpToTheCap) {
  auto box = Outbox::open(dir_.string());
  ASSERT_TRUE(box->append({{"a", "1"}, {"a", "2"}, {"a", "3"}}));
  auto q = box->peek("a", 2);
  ASSERT_TRUE(q);
  ASSERT_TRUE(box->dead_letter("a", *q, 2));
  EXPECT_EQ(box->backlog(), 1u);
  EXPECT_EQ(box->dead_letter_count(), 2u);
  q = box->peek("a", 2);
  ASSERT_TRUE(q);
  ASSERT_TRUE(box->dead_letter("a", *q, 2));  // over the cap of 2: the oldest ("1") goes
  EXPECT_EQ(box->backlog(), 0u);
  EXPECT_EQ(box->dead_letter_count(), 2u);
  auto dead = box->dead_letters("a", 10);
  ASSERT_TRUE(dead);
  EXPECT_EQ(jsons(*dead), (std::vector<std::string>{"2", "3"}));
  box.reset();
  box = Outbox::open(dir_.string());
  EXPECT_EQ(box->dead_letter_count(), 2u);
  EXPECT_EQ(box->backlog(), 0u);
}

}  // namespace
}  // namespace tagd::notify
