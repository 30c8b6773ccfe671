// One suite over both index implementations.
#include "tagd/cache/index.hpp"

#include "tagd/cache/block_format.hpp"

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <unistd.h>

#include <filesystem>

namespace tagd::cache {
namespace {

// A location with the piece checksums its length calls for (the encoding checks them).
BlockLocation location(std::uint32_t region, std::uint64_t generation, std::uint64_t offset, std::uint32_t length) {
  BlockLocation l{region, generation, offset, length, {}};
  for (std::uint32_t i = 0; i < block_piece_count(length); ++i) l.piece_crc32c.push_back(0x01020304u * (i + 1));
  return l;
}

struct MemoryIndexFactory {
  static std::unique_ptr<CacheIndex> make(const std::filesystem::path&) { return make_memory_index(); }
  static constexpr bool kPersistent = false;
};
struct RocksDbIndexFactory {
  static std::unique_ptr<CacheIndex> make(const std::filesystem::path& dir) {
    auto r = open_rocksdb_index(dir.string());
    EXPECT_TRUE(r.has_value()) << r.error().message();
    return r ? std::move(r.value()) : nullptr;
  }
  static constexpr bool kPersistent = true;
};

template <class Factory>
class CacheIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("tagd_index_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    index_ = Factory::make(dir_);
    ASSERT_NE(index_, nullptr);
  }
  void TearDown() override {
    index_.reset();
    std::filesystem::remove_all(dir_);
  }

  static ObjectMeta sample() {
    ObjectMeta m;
    m.size = 5'000'000'000ull;  // > 4 GiB: no 32-bit truncation
    m.etag = "\"abc-3\"";
    m.last_modified = "Wed, 21 Oct 2026 07:28:00 GMT";
    m.headers = {{"Content-Type", "application/x-parquet"}, {"x-amz-meta-owner", "team a"}};
    m.fetched_at_ms = 1'700'000'000'000;
    m.fresh_until_ms = 1'700'086'400'000;
    m.block_size = 1 << 20;
    return m;
  }

  std::filesystem::path dir_;
  std::unique_ptr<CacheIndex> index_;
};

// RocksDB behind the in-memory copy a hit reads (memory_cached_index.cpp): it must behave
// exactly as the durable index alone.
struct MemoryCachedRocksDbIndexFactory {
  static std::unique_ptr<CacheIndex> make(const std::filesystem::path& dir) {
    auto r = open_rocksdb_index(dir.string());
    EXPECT_TRUE(r.has_value()) << r.error().message();
    return r ? make_memory_cached_index(std::move(r.value()), 64) : nullptr;
  }
  static constexpr bool kPersistent = true;
};

using Factories = ::testing::Types<MemoryIndexFactory, RocksDbIndexFactory, MemoryCachedRocksDbIndexFactory>;
TYPED_TEST_SUITE(CacheIndexTest, Factories);

TYPED_TEST(CacheIndexTest, ObjectMetadataRoundTrips) {
  ObjectKey key{"bucket", "dir/obj.parquet", ""};
  auto missing = this->index_->get_object(key);
  ASSERT_TRUE(missing.has_value());
  EXPECT_FALSE(missing->has_value());
  ASSERT_TRUE(this->index_->put_object(key, this->sample()).is_ok());
  auto got = this->index_->get_object(key);
  ASSERT_TRUE(got.has_value() && got->has_value());
  const ObjectMeta& m = **got;
  EXPECT_EQ(m.size, 5'000'000'000ull);
  EXPECT_EQ(m.etag, "\"abc-3\"");
  EXPECT_EQ(m.headers, this->sample().headers);
  EXPECT_EQ(m.fresh_until_ms, 1'700'086'400'000);
  EXPECT_EQ(m.block_size, 1u << 20);
  ASSERT_TRUE(this->index_->erase_object(key).is_ok());
  EXPECT_FALSE(this->index_->get_object(key)->has_value());
}

TYPED_TEST(CacheIndexTest, VariantsAndSimilarKeysAreDistinct) {
  ObjectKey plain{"b", "k", ""};
  ObjectKey version{"b", "k", "versionId=7"};
  ObjectKey joined{"b", "k\0versionId=7", ""};  // '\0' separators keep these apart
  ObjectKey other_bucket{"bk", "", ""};
  ObjectMeta m = this->sample();
  ASSERT_TRUE(this->index_->put_object(plain, m).is_ok());
  EXPECT_FALSE(this->index_->get_object(version)->has_value());
  EXPECT_FALSE(this->index_->get_object(other_bucket)->has_value());
  EXPECT_NE(plain.encoded(), version.encoded());
  EXPECT_NE(plain.hash(), version.hash());
  (void)joined;
}

TYPED_TEST(CacheIndexTest, EraseObjectVariantsErasesEveryVariantAndNothingElse) {
  ObjectMeta m = this->sample();
  const std::vector<ObjectKey> mine = {{"b", "k", ""},
                                       {"b", "k", "versionId=7"},
                                       {"b", "k", "versionId=null"},
                                       {"b", "k", "snapshot=1733000000"},
                                       {"b", "k", "versionId=7&snapshot=1"}};
  const std::vector<ObjectKey> others = {{"b", "k2", ""},   {"b", "kk", "versionId=7"}, {"b", "j", ""},
                                         {"b2", "k", ""},   {"bb", "k", ""},           {"b", "", ""},
                                         {"a", "k", "versionId=7"}};
  for (const auto& k : mine) ASSERT_TRUE(this->index_->put_object(k, m).is_ok());
  for (const auto& k : others) ASSERT_TRUE(this->index_->put_object(k, m).is_ok());
  ASSERT_TRUE(this->index_->put_block(ObjectKey{"b", "k", ""}.hash(), m.etag, 0, location(1, 1, 0, 10)).is_ok());
  ASSERT_TRUE(this->index_->erase_object_variants("b", "k").is_ok());
  for (const auto& k : mine) EXPECT_FALSE(this->index_->get_object(k)->has_value()) << k.variant;
  for (const auto& k : others) EXPECT_TRUE(this->index_->get_object(k)->has_value()) << k.bucket << "/" << k.key;
  // Blocks are not object entries: they are keyed by ETag and simply never asked for again.
  EXPECT_TRUE(this->index_->get_block(ObjectKey{"b", "k", ""}.hash(), m.etag, 0)->has_value());
  ASSERT_TRUE(this->index_->erase_object_variants("b", "nothing-here").is_ok());
}

TYPED_TEST(CacheIndexTest, ChecksumsRoundTrip) {
  ObjectKey key{"b", "k", ""};
  ObjectMeta m = this->sample();
  m.checksums = {{"x-amz-checksum-crc32", "AAAAAA=="}, {"x-amz-checksum-type", "FULL_OBJECT"}};
  m.checksums_known = true;
  ASSERT_TRUE(this->index_->put_object(key, m).is_ok());
  auto got = this->index_->get_object(key);
  ASSERT_TRUE(got.has_value() && got->has_value());
  EXPECT_EQ((*got)->checksums, m.checksums);
  EXPECT_TRUE((*got)->checksums_known);
  m.checksums.clear();
  m.checksums_known = false;
  ASSERT_TRUE(this->index_->put_object(key, m).is_ok());
  EXPECT_FALSE((*this->index_->get_object(key))->checksums_known);
}

TYPED_TEST(CacheIndexTest, BlocksAreKeyedByEtag) {
  BlockLocation loc = location(3, 17, 48ull << 20, 1 << 20);
  ASSERT_TRUE(this->index_->put_block(42, "\"etag-1\"", 5, loc).is_ok());
  auto got = this->index_->get_block(42, "\"etag-1\"", 5);
  ASSERT_TRUE(got.has_value() && got->has_value());
  EXPECT_EQ((*got)->region, 3u);
  EXPECT_EQ((*got)->generation, 17u);
  EXPECT_EQ((*got)->offset, 48ull << 20);
  EXPECT_EQ((*got)->length, 1u << 20);
  EXPECT_EQ((*got)->piece_crc32c, loc.piece_crc32c);  // 16 pieces
  EXPECT_FALSE(this->index_->get_block(42, "\"etag-2\"", 5)->has_value());  // overwritten object
  EXPECT_FALSE(this->index_->get_block(42, "\"etag-1\"", 6)->has_value());
  EXPECT_FALSE(this->index_->get_block(43, "\"etag-1\"", 5)->has_value());
  ASSERT_TRUE(this->index_->erase_block(42, "\"etag-1\"", 5).is_ok());
  EXPECT_FALSE(this->index_->get_block(42, "\"etag-1\"", 5)->has_value());
}

TYPED_TEST(CacheIndexTest, RegionGenerations) {
  auto fresh = this->index_->region_generations(4);
  ASSERT_TRUE(fresh.has_value());
  EXPECT_EQ(*fresh, std::vector<std::uint64_t>(4, 0));
  ASSERT_TRUE(this->index_->put_region_generation(2, 9).is_ok());
  EXPECT_EQ((*this->index_->region_generations(4))[2], 9u);
}

TEST(RocksDbIndexTest, SurvivesReopen) {
  auto dir = std::filesystem::temp_directory_path() / ("tagd_index_reopen_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  {
    auto index = open_rocksdb_index(dir.string());
    ASSERT_TRUE(index.has_value());
    ASSERT_TRUE((*index)->put_block(1, "\"e\"", 0, location(1, 2, 4096, 10)).is_ok());
    ASSERT_TRUE((*index)->put_region_generation(1, 2).is_ok());
  }
  auto index = open_rocksdb_index(dir.string());
  ASSERT_TRUE(index.has_value());
  auto got = (*index)->get_block(1, "\"e\"", 0);
  ASSERT_TRUE(got.has_value() && got->has_value());
  EXPECT_EQ((*got)->offset, 4096u);
  EXPECT_EQ((*(*index)->region_generations(2))[1], 2u);
  index.value().reset();
  std::filesystem::remove_all(dir);
}

TEST(MetaCodecTest, RejectsGarbageAndOtherVersions) {
  EXPECT_FALSE(decode_meta("not json").has_value());
  EXPECT_FALSE(decode_meta(R"({"v":2,"size":1})").has_value());
  EXPECT_FALSE(decode_meta(R"({"v":1})").has_value());
  EXPECT_FALSE(decode_meta("[1,2]").has_value());
  // A complete version-1 entry (before checksums were kept) is not misread as version 2.
  const std::string v1 =
      R"({"v":1,"size":10,"etag":"\"e\"","last_modified":"","headers":[],"fetched_at_ms":0,)"
      R"("fresh_until_ms":99999999999999,"block_size":1048576})";
  EXPECT_FALSE(decode_meta(v1).has_value());
  ObjectMeta m;
  m.etag = "\"e\"";
  m.checksums = {{"x-amz-checksum-crc32", "AAAAAA=="}};
  m.checksums_known = true;
  auto round = decode_meta(encode_meta(m).value());
  ASSERT_TRUE(round.has_value());
  EXPECT_EQ(round->checksums, m.checksums);
  EXPECT_NE(encode_meta(m).value().find("\"v\":2"), std::string::npos);
}

// Found by fuzzing: metadata JSON cannot carry unchanged is refused, not thrown; numbers
// that are not in-range integers drop the record instead of converting with UB.
TEST(MetaCodecTest, NonUtf8MetadataAndFloatNumbers) {
  ObjectMeta m;
  m.etag = "\"e\"";
  m.headers = {{"x-amz-meta-name", "caf\xe9"}};  // Latin-1 obs-text from an upstream
  EXPECT_FALSE(encode_meta(m).has_value());
  m.headers.clear();
  auto good = encode_meta(m);
  ASSERT_TRUE(good.has_value());
  auto with = [&](std::string_view from, std::string_view to) {
    std::string record = *good;
    auto pos = record.find(from);
    EXPECT_NE(pos, std::string::npos) << from;
    if (pos != std::string::npos) record.replace(pos, from.size(), to);
    return record;
  };
  EXPECT_TRUE(decode_meta(with("\"size\":0", "\"size\":7")).has_value());
  for (const char* to : {"\"size\":1e85", "\"size\":-1", "\"size\":1.5", "\"size\":123456789012345678901234"}) {
    EXPECT_FALSE(decode_meta(with("\"size\":0", to)).has_value()) << to;
  }
  EXPECT_FALSE(decode_meta(with("\"block_size\":0", "\"block_size\":4294967296")).has_value());
  EXPECT_FALSE(decode_meta(with("\"v\":2", "\"v\":2.33333e+21")).has_value());
}

TEST(RocksDbIndexTest, NonUtf8MetadataIsAStatusNotAThrow) {
  auto dir = std::filesystem::temp_directory_path() / ("tagd_index_utf8_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  auto index = open_rocksdb_index(dir.string());
  ASSERT_TRUE(index.has_value());
  ObjectMeta m;
  m.etag = "\"e\"";
  m.last_modified = "\xff";
  EXPECT_FALSE((*index)->put_object(ObjectKey{"b", "k", ""}, m).is_ok());
  std::filesystem::remove_all(dir);
}

TEST(RocksDbIndexTest, AnOldFormatEntryIsDroppedNotMisread) {
  auto dir = std::filesystem::temp_directory_path() / ("tagd_index_oldmeta_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  ObjectKey key{"b", "k", ""};
  {
    // What tagd before metadata version 2 wrote.
    rocksdb::Options options;
    options.create_if_missing = true;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(options, dir.string(), &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    const std::string v1 =
        R"({"v":1,"size":10,"etag":"\"e\"","last_modified":"","headers":[],"fetched_at_ms":0,)"
        R"("fresh_until_ms":99999999999999,"block_size":1048576})";
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), key.encoded(), v1).ok());
  }
  auto index = open_rocksdb_index(dir.string());
  ASSERT_TRUE(index.has_value());
  auto got = (*index)->get_object(key);
  ASSERT_TRUE(got.has_value());  // not an error: simply not cached
  EXPECT_FALSE(got->has_value());
  index.value().reset();
  {
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), dir.string(), &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    std::string value;
    EXPECT_TRUE(db->Get(rocksdb::ReadOptions(), key.encoded(), &value).IsNotFound());  // dropped
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tagd::cache
