// One shard's series index: canonical key <-> dense 64-bit id, and tag postings (name -> value
// -> sorted ids) so a selector finds its series without scanning every key. Persistence is the
// shard's job (it writes index records in the same WriteBatch as the batch that created them).
// Readers never evaluate a matcher under the lock the writer needs to add a series: they copy
// pointers to a label's values under it and match outside it.
#pragma once

#include <atomic>
#include <cstddef>
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
#include "storage/query_budget.hpp"

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

    // Thread safe (takes the lock shared). The id of `key` once published, for producers that
    // resolve a series reference.
    std::optional<std::uint64_t> find_published(std::string_view key) const;
    // Writer thread only. The key an erased id had (erase() keeps it for references made before
    // the erase); empty for an id never erased.
    std::string_view erased_key(std::uint64_t id) const;
    // Thread safe. How many series erase() removed.
    std::uint64_t erased_count() const { return erased_count_.load(std::memory_order_relaxed); }

    enum class AddResult { added, limit_reached, bad_key };
    // Writer thread only. Assigns the next id.
    AddResult add(std::string_view key, std::uint64_t& id);
    // Writer thread only: undoes the newest add() (its batch failed to reach the WAL). Only
    // series added since the last publish() can be removed.
    void remove_last();
    // Writer thread only: every series added so far is in the WAL; match() may return them.
    void publish() { published_.store(size(), std::memory_order_release); }
    // Writer thread only: removes a published series (all its points were deleted). Its id is
    // never handed out again while the index lives; queries no longer match it, and a later
    // point of the same key creates a new series. False when the id holds no series.
    bool erase(std::uint64_t id);
    // At open: ids must arrive ascending from 0; a gap is an erased series. Restored series are
    // published. reserve() first with the expected count saves rehashing.
    [[nodiscard]] bool restore(std::uint64_t id, std::string_view key);
    void reserve(std::size_t series);

    // Ids handed out, erased ones included: the next id, and the size of per-id tables.
    std::size_t size() const;
    // Series held (not erased): what series limits count.
    std::size_t live() const;
    // Thread safe. What the index holds in memory, estimated from the sizes of its keys, ids,
    // postings and label values (the allocator's overheads included, not measured).
    std::size_t memory_bytes() const { return memory_.load(std::memory_order_relaxed); }
    // Thread safe. The key of an id; empty for an id the index does not hold.
    std::string key(std::uint64_t id) const;

    // Thread safe. Ids (sorted) of the published series every matcher accepts, into `out`: a
    // series whose first write is not in the WAL yet (or failed) is not listed. The id lists
    // and value copies are charged to `budget`, which is checked while matching.
    [[nodiscard]] Status match(const std::vector<CompiledMatcher>& matchers, QueryBudget& budget,
                               std::vector<std::uint64_t>& out) const;
    // Thread safe. Values of label `name` among the given ids, sorted and distinct, into `out`.
    [[nodiscard]] Status label_values(std::string_view name, const std::vector<std::uint64_t>& ids,
                                      QueryBudget& budget, std::vector<std::string>& out) const;

  private:
    struct Hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const {
            return std::hash<std::string_view>{}(s);
        }
    };
    // Hashed, not ordered: nothing reads values in order (readers match `entries`), and a start
    // inserts every series' values, millions for a label like __name__ after a series
    // explosion, where a tree's string compares were a large part of loading the index.
    // Elements of an unordered_map keep their address across rehashing, as `entries` needs.
    using Postings =
        std::unordered_map<std::string, std::vector<std::uint64_t>, Hash, std::equal_to<>>;
    struct Label {
        Postings postings;  // value -> sorted ids
        // Every value's entry, in the order the values appeared. Entries are never erased (a
        // series rolled back leaves its value with an empty list), so these pointers and the
        // value strings they lead to stay valid and unchanged for the index's life: readers copy
        // them under the lock and read the values outside it.
        std::vector<const Postings::value_type*> entries;
    };

    using ParsedKey = std::pair<std::string, std::vector<Tag>>;  // from parse_series_key
    // Adds id to (or removes it from) the postings of the key's labels; consumes `parsed`.
    void index_tags(std::uint64_t id, ParsedKey& parsed, bool add);
    // Ids (sorted) of series that carry label m.name() with a value m accepts (accepted=true)
    // or rejects; the values are matched outside the lock.
    [[nodiscard]] Status ids_where(const CompiledMatcher& m, bool accepted, QueryBudget& budget,
                                   std::vector<std::uint64_t>& out) const;

    // Writer thread only (under the lock where it runs): counts `bytes` into memory_.
    void add_memory(std::ptrdiff_t bytes) {
        memory_.store(memory_.load(std::memory_order_relaxed) + bytes, std::memory_order_relaxed);
    }

    std::size_t max_series_;
    std::atomic<std::size_t> memory_{0};
    mutable std::shared_mutex mutex_;    // guards mutation against readers of postings and keys
    std::deque<std::string> keys_;       // an erased id keeps an empty key (no key is empty)
    std::vector<std::uint64_t> erased_;  // sorted
    // Keys of the series erased while the index lived: a producer's reference made before the
    // erase writes into the same key, created anew. A fraction of what the series held.
    std::unordered_map<std::uint64_t, std::string> erased_keys_;
    std::atomic<std::uint64_t> erased_count_{0};
    std::atomic<std::uint64_t> published_{0};
    std::unordered_map<std::string_view, std::uint64_t, Hash, std::equal_to<>> ids_;
    std::map<std::string, Label, std::less<>> labels_;  // names are never erased either
};

}  // namespace citygate::storage::detail
