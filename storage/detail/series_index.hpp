// One shard's series index: canonical key <-> dense 64-bit id, and tag postings (name -> value
// -> sorted ids) so a selector finds its series without scanning every key. Persistence is the
// shard's job (it writes index records in the same WriteBatch as the batch that created them).
#pragma once

#include <atomic>
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
    // Writer thread only: undoes the newest add() (its batch failed to reach the WAL). Only
    // series added since the last publish() can be removed.
    void remove_last();
    // Writer thread only: every series added so far is in the WAL; match() may return them.
    void publish() { published_.store(size(), std::memory_order_release); }
    // At open: ids must arrive dense from 0. Restored series are published.
    [[nodiscard]] bool restore(std::uint64_t id, std::string_view key);

    std::size_t size() const;
    // Thread safe. The key of an id; empty for an id the index does not hold.
    std::string key(std::uint64_t id) const;

    // Thread safe. Ids (sorted) of the published series every matcher accepts: a series whose
    // first write is not in the WAL yet (or failed) is not listed.
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
    std::atomic<std::uint64_t> published_{0};
    std::unordered_map<std::string_view, std::uint64_t, Hash, std::equal_to<>> ids_;
    std::map<std::string, Postings, std::less<>> postings_;
};

}  // namespace citygate::storage::detail
