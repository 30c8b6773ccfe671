#include "tagd/cache/index.hpp"

#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <stdexcept>
#include <nlohmann/json.hpp>

#include "tagd/cache/block_format.hpp"

namespace tagd::cache {
namespace {

void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));  // big-endian: sorts
}
std::uint64_t get_u64(std::string_view in, std::size_t offset) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(in[offset + i]);
  return v;
}

std::string block_key(std::uint64_t key_hash, const std::string& etag, std::uint64_t block) {
  std::string k = "b";
  put_u64(k, key_hash);
  put_u64(k, hash_bytes(etag));
  put_u64(k, block);
  return k;
}

std::string region_key(std::uint32_t region) {
  std::string k = "r";
  put_u64(k, region);
  return k;
}

std::string pin_key(const ObjectKey& key) {
  std::string k = key.encoded();
  k[0] = 'p';
  return k;
}

// size(8) block_size(4) reserved(1) then the ETag.
std::string encode_pin(const PinRecord& p) {
  std::string v;
  put_u64(v, p.size);
  for (int i = 3; i >= 0; --i) v.push_back(static_cast<char>((p.block_size >> (8 * i)) & 0xFF));
  v.push_back(static_cast<char>(p.flags));
  v += p.etag;
  return v;
}

std::optional<std::pair<ObjectKey, PinRecord>> decode_pin(std::string_view k, std::string_view v) {
  if (k.empty() || k[0] != 'p' || v.size() < 13) return std::nullopt;
  const auto b = k.find('\0', 1);
  if (b == std::string_view::npos) return std::nullopt;
  const auto e = k.find('\0', b + 1);
  if (e == std::string_view::npos) return std::nullopt;
  ObjectKey key{std::string(k.substr(1, b - 1)), std::string(k.substr(b + 1, e - b - 1)), std::string(k.substr(e + 1))};
  PinRecord p;
  p.size = get_u64(v, 0);
  for (int i = 0; i < 4; ++i) p.block_size = (p.block_size << 8) | static_cast<unsigned char>(v[8 + i]);
  p.flags = static_cast<std::uint8_t>(v[12]);
  p.etag = std::string(v.substr(13));
  if (p.block_size == 0 && (p.flags & kPinPrefixRecord) == 0) return std::nullopt;
  return std::make_pair(std::move(key), std::move(p));
}

// 24 fixed bytes, then one 4-byte CRC32C per piece of the block.
std::string encode_location(const BlockLocation& l) {
  std::string v;
  v.reserve(24 + 4 * l.piece_crc32c.size());
  put_u64(v, (static_cast<std::uint64_t>(l.region) << 32) | l.length);
  put_u64(v, l.generation);
  put_u64(v, l.offset);
  for (std::uint32_t c : l.piece_crc32c) {
    for (int i = 3; i >= 0; --i) v.push_back(static_cast<char>((c >> (8 * i)) & 0xFF));
  }
  return v;
}

std::optional<BlockLocation> decode_location(std::string_view v) {
  if (v.size() < 24) return std::nullopt;
  BlockLocation l;
  std::uint64_t a = get_u64(v, 0);
  l.region = static_cast<std::uint32_t>(a >> 32);
  l.length = static_cast<std::uint32_t>(a & 0xFFFFFFFFu);
  l.generation = get_u64(v, 8);
  l.offset = get_u64(v, 16);
  if (v.size() != 24 + 4 * std::size_t{block_piece_count(l.length)}) return std::nullopt;
  l.piece_crc32c.resize(block_piece_count(l.length));
  for (std::size_t i = 0; i < l.piece_crc32c.size(); ++i) {
    std::uint32_t c = 0;
    for (int b = 0; b < 4; ++b) c = (c << 8) | static_cast<unsigned char>(v[24 + 4 * i + b]);
    l.piece_crc32c[i] = c;
  }
  return l;
}

// Both implementations store the same byte strings; only the map differs.
class KvIndex : public CacheIndex {
 public:
  Result<std::optional<ObjectMeta>> get_object(const ObjectKey& key) override {
    auto v = get(key.encoded());
    if (!v) return v.error();
    if (!v->has_value()) return std::optional<ObjectMeta>();
    auto meta = decode_meta(**v);
    if (!meta) {
      // An entry of an older encoding (or a damaged one): dropped, never misread.
      (void)erase(key.encoded());
      return std::optional<ObjectMeta>();
    }
    return meta;
  }
  Status put_object(const ObjectKey& key, const ObjectMeta& meta) override {
    auto encoded = encode_meta(meta);
    if (!encoded) return Status(ErrorCode::kInvalidArgument, "object metadata is not valid UTF-8: not cached");
    return put(key.encoded(), *encoded);
  }
  Status erase_object(const ObjectKey& key) override { return erase(key.encoded()); }
  Status erase_object_variants(const std::string& bucket, const std::string& key) override {
    return erase_prefix(ObjectKey::variants_prefix(bucket, key));
  }

  Result<std::optional<BlockLocation>> get_block(std::uint64_t key_hash, const std::string& etag,
                                                 std::uint64_t block) override {
    auto v = get(block_key(key_hash, etag, block));
    if (!v) return v.error();
    if (!v->has_value()) return std::optional<BlockLocation>();
    auto l = decode_location(**v);
    if (!l) return Status(ErrorCode::kInternalError, "cache index: undecodable block location");
    return l;
  }
  Status put_block(std::uint64_t key_hash, const std::string& etag, std::uint64_t block,
                   const BlockLocation& location) override {
    return put(block_key(key_hash, etag, block), encode_location(location));
  }
  Status erase_block(std::uint64_t key_hash, const std::string& etag, std::uint64_t block) override {
    return erase(block_key(key_hash, etag, block));
  }
  Status put_region_generation(std::uint32_t region, std::uint64_t generation) override {
    std::string v;
    put_u64(v, generation);
    return put(region_key(region), v);
  }
  Result<std::vector<std::uint64_t>> region_generations(std::uint32_t region_count) override {
    std::vector<std::uint64_t> out(region_count, 0);
    for (std::uint32_t r = 0; r < region_count; ++r) {
      auto v = get(region_key(r));
      if (!v) return v.error();
      if (v->has_value() && (*v)->size() == 8) out[r] = get_u64(**v, 0);
    }
    return out;
  }
  Status put_pin(const ObjectKey& key, const PinRecord& pin) override { return put(pin_key(key), encode_pin(pin)); }
  Status erase_pin(const ObjectKey& key) override { return erase(pin_key(key)); }
  Result<std::vector<std::pair<ObjectKey, PinRecord>>> pins(const std::string& bucket,
                                                            const std::string& prefix) override {
    std::string scan = "p";
    if (!bucket.empty()) {
      scan += bucket;
      scan.push_back('\0');
      scan += prefix;
    }
    std::vector<std::pair<ObjectKey, PinRecord>> out;
    std::vector<std::string> undecodable;
    Status s = scan_prefix(scan, [&](std::string_view k, std::string_view v) {
      if (auto pin = decode_pin(k, v)) {
        out.push_back(std::move(*pin));
      } else {
        undecodable.emplace_back(k);
      }
    });
    if (!s) return s;
    for (const auto& k : undecodable) (void)erase(k);
    return out;
  }

 protected:
  virtual Result<std::optional<std::string>> get(const std::string& key) = 0;
  virtual Status put(const std::string& key, const std::string& value) = 0;
  virtual Status erase(const std::string& key) = 0;
  virtual Status erase_prefix(const std::string& prefix) = 0;
  virtual Status scan_prefix(const std::string& prefix,
                             const std::function<void(std::string_view, std::string_view)>& visit) = 0;
};

class MemoryIndex final : public KvIndex {
 protected:
  Result<std::optional<std::string>> get(const std::string& key) override {
    std::lock_guard lock(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return std::optional<std::string>();
    return std::optional<std::string>(it->second);
  }
  Status put(const std::string& key, const std::string& value) override {
    std::lock_guard lock(mu_);
    map_[key] = value;
    return Status::ok();
  }
  Status erase(const std::string& key) override {
    std::lock_guard lock(mu_);
    map_.erase(key);
    return Status::ok();
  }
  Status erase_prefix(const std::string& prefix) override {
    std::lock_guard lock(mu_);
    auto it = map_.lower_bound(prefix);
    while (it != map_.end() && it->first.compare(0, prefix.size(), prefix) == 0) it = map_.erase(it);
    return Status::ok();
  }
  Status scan_prefix(const std::string& prefix,
                     const std::function<void(std::string_view, std::string_view)>& visit) override {
    std::lock_guard lock(mu_);
    for (auto it = map_.lower_bound(prefix); it != map_.end() && it->first.compare(0, prefix.size(), prefix) == 0;
         ++it) {
      visit(it->first, it->second);
    }
    return Status::ok();
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::string> map_;
};

class RocksDbIndex final : public KvIndex {
 public:
  explicit RocksDbIndex(std::unique_ptr<rocksdb::DB> db) : db_(std::move(db)) {}

 protected:
  Result<std::optional<std::string>> get(const std::string& key) override {
    std::string value;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), key, &value);
    if (s.IsNotFound()) return std::optional<std::string>();
    if (!s.ok()) return Status(ErrorCode::kInternalError, "cache index: " + s.ToString());
    return std::optional<std::string>(std::move(value));
  }
  Status put(const std::string& key, const std::string& value) override {
    // No fsync per write: after a crash the index may lose its newest entries, which only
    // costs refetches; it can never point at bytes that were not written first.
    rocksdb::Status s = db_->Put(rocksdb::WriteOptions(), key, value);
    return s.ok() ? Status::ok() : Status(ErrorCode::kInternalError, "cache index: " + s.ToString());
  }
  Status erase(const std::string& key) override {
    rocksdb::Status s = db_->Delete(rocksdb::WriteOptions(), key);
    return s.ok() ? Status::ok() : Status(ErrorCode::kInternalError, "cache index: " + s.ToString());
  }
  Status erase_prefix(const std::string& prefix) override {
    // A bounded scan: keys sort bytewise, so every variant of one object is contiguous.
    rocksdb::WriteBatch batch;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) batch.Delete(it->key());
    if (!it->status().ok()) return Status(ErrorCode::kInternalError, "cache index: " + it->status().ToString());
    if (batch.Count() == 0) return Status::ok();
    rocksdb::Status s = db_->Write(rocksdb::WriteOptions(), &batch);
    return s.ok() ? Status::ok() : Status(ErrorCode::kInternalError, "cache index: " + s.ToString());
  }
  Status scan_prefix(const std::string& prefix,
                     const std::function<void(std::string_view, std::string_view)>& visit) override {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      visit(std::string_view(it->key().data(), it->key().size()), std::string_view(it->value().data(), it->value().size()));
    }
    return it->status().ok() ? Status::ok() : Status(ErrorCode::kInternalError, "cache index: " + it->status().ToString());
  }

 private:
  std::unique_ptr<rocksdb::DB> db_;
};

}  // namespace

std::string ObjectKey::encoded() const {
  std::string k = "o";
  k += bucket;
  k.push_back('\0');
  k += key;
  k.push_back('\0');
  k += variant;
  return k;
}

std::uint64_t ObjectKey::hash() const { return hash_bytes(encoded()); }

std::string ObjectKey::variants_prefix(const std::string& bucket, const std::string& key) {
  return ObjectKey{bucket, key, ""}.encoded();
}

std::optional<std::string> encode_meta(const ObjectMeta& m) {
  nlohmann::json j;
  j["v"] = kObjectMetaVersion;
  j["size"] = m.size;
  j["etag"] = m.etag;
  j["last_modified"] = m.last_modified;
  j["headers"] = m.headers;
  j["fetched_at_ms"] = m.fetched_at_ms;
  j["fresh_until_ms"] = m.fresh_until_ms;
  j["block_size"] = m.block_size;
  j["checksums"] = m.checksums;
  j["checksums_known"] = m.checksums_known;
  try {
    return j.dump();
  } catch (const nlohmann::json::type_error&) {
    // A header value that is not UTF-8 (obs-text from the upstream): JSON cannot carry
    // it unchanged, and a replaced byte would replay a wrong header. Not cached.
    return std::nullopt;
  }
}

namespace {
// Integers only: nlohmann converts a float such as 1e85 to an integer type with
// undefined behaviour, and a too-large unsigned silently wraps.
template <class T>
T integer_field(const nlohmann::json& j, const char* name) {
  const auto& v = j.at(name);
  if (v.is_number_unsigned()) {
    auto u = v.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<T>::max())) throw std::out_of_range(name);
    return static_cast<T>(u);
  }
  if (v.is_number_integer() && std::numeric_limits<T>::is_signed) {
    auto i = v.get<std::int64_t>();
    if (i < static_cast<std::int64_t>(std::numeric_limits<T>::min())) throw std::out_of_range(name);
    return static_cast<T>(i);
  }
  throw std::out_of_range(name);
}
}  // namespace

std::optional<ObjectMeta> decode_meta(std::string_view data) {
  try {
    auto j = nlohmann::json::parse(data);
    if (!j.is_object() || !j.contains("v") || integer_field<std::int64_t>(j, "v") != kObjectMetaVersion) {
      return std::nullopt;
    }
    ObjectMeta m;
    m.size = integer_field<std::uint64_t>(j, "size");
    m.etag = j.at("etag").get<std::string>();
    m.last_modified = j.at("last_modified").get<std::string>();
    m.headers = j.at("headers").get<std::vector<std::pair<std::string, std::string>>>();
    m.fetched_at_ms = integer_field<std::int64_t>(j, "fetched_at_ms");
    m.fresh_until_ms = integer_field<std::int64_t>(j, "fresh_until_ms");
    m.block_size = integer_field<std::uint32_t>(j, "block_size");
    m.checksums = j.at("checksums").get<std::vector<std::pair<std::string, std::string>>>();
    m.checksums_known = j.at("checksums_known").get<bool>();
    return m;
  } catch (const std::exception&) {  // nlohmann's exceptions and integer_field's
    return std::nullopt;
  }
}

std::unique_ptr<CacheIndex> make_memory_index() { return std::make_unique<MemoryIndex>(); }

Result<std::unique_ptr<CacheIndex>> open_rocksdb_index(const std::string& directory) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.IncreaseParallelism(2);
  options.OptimizeLevelStyleCompaction();
  // Point lookups dominate: bloom filters on, a modest block cache.
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, directory, &raw);
  if (!s.ok()) return Status(ErrorCode::kInternalError, "cannot open cache index " + directory + ": " + s.ToString());
  return std::unique_ptr<CacheIndex>(std::make_unique<RocksDbIndex>(std::unique_ptr<rocksdb::DB>(raw)));
}

}  // namespace tagd::cache
