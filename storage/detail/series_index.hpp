// One shard's series index: canonical key <-> dense 64-bit id, and tag postings (name -> value
// -> sorted ids) so a selector finds its series without scanning every key. Persistence is the
// shard's job (it writes index records in the same WriteBatch as the batch that created them).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "storage/detail/matcher.hpp"

namespace citygate::storage::detail {

class SeriesIndex {
  public:
    explicit SeriesIndex(std::size_t max_series) : max_series_(max_series) {}

    // Writer thread only, no lock taken: the writer is the only thread that mutates the index,
    // and concurrent readers only read.
    std::optional<std::uint64_t> find(std::string_view key) const {
        auto it = ids_.find(key);
        if (it == ids_.end()) return std::nullopt;
        return it->second;
    }

    enum class AddResult { added, limit_reached, bad_key };
    // Writer thread only. Assigns the next id.
    AddResult add(std::string_view key, std::uint64_t& id);
    // Writer thread only: undoes the newest add() (its batch failed to reach the WAL).
    void remove_last();
    // At open: ids must arrive dense from 0.
    [[nodiscard]] bool restore(std::uint64_t id, std::string_view key);

    std::size_t size() const;
    // The key of an id; the reference stays valid (keys live in a deque) unless remove_last().
    const std::string& key(std::uint64_t id) const { return keys_[id]; }

    // Thread safe. Ids (sorted) of the series every matcher accepts.
    std::vector<std::uint64_t> match(const std::vector<CompiledMatcher>& matchers) const;
    // Thread safe. Values of label `name` among the given ids (sorted), sorted.
    std::vector<std::string> label_values(std::string_view name,
                                          const std::vector<std::uint64_t>& ids) const;

  private:
    struct Hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const {
            return std::hash<std::string_view>{}(s);
        }
    };
    using Postings = std::map<std::string, std::vector<std::uint64_t>, std::less<>>;

    void index_tags(std::uint64_t id, std::string_view key, bool add);
    std::vector<std::uint64_t> ids_where(const CompiledMatcher& m, bool accepted) const;

    std::size_t max_series_;
    mutable std::shared_mutex mutex_;  // guards mutation against readers of postings and keys
    std::deque<std::string> keys_;
    std::unordered_map<std::string_view, std::uint64_t, Hash, std::equal_to<>> ids_;
    std::map<std::string, Postings, std::less<>> postings_;
};

}  // namespace citygate::storage::detail
