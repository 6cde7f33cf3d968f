// Where an engine keeps its files under its directory: the metadata file holding the shard
// count, and one RocksDB directory per shard. Engine, shards, checkpoints and restore share it.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace citygate::storage::detail {

inline constexpr std::string_view kMetaFile = "engine.meta";

inline std::filesystem::path shard_directory(const std::filesystem::path& root, unsigned index) {
    return root / ("shard-" + std::to_string(index));
}

// The shard count recorded in root's metadata file; nothing when there is none (or it is not
// a positive number).
std::optional<unsigned> read_shard_count(const std::filesystem::path& root);

}  // namespace citygate::storage::detail
