// Reading the engine's metadata file.
#include "storage/detail/layout.hpp"

#include <fstream>

namespace citygate::storage::detail {

std::optional<unsigned> read_shard_count(const std::filesystem::path& root) {
    std::ifstream in(root / kMetaFile);
    unsigned count = 0;
    if (in >> count && count > 0) return count;
    return std::nullopt;
}

}  // namespace citygate::storage::detail
