// One thread's memory of the series it has written: (topic, measurement, payload tags) to the
// storage reference of the series they make. A device publishes the same series over and over;
// after its first reading is stored, each later one costs a hash and a compare here instead of
// building its key, hashing it again in storage and looking it up in the shard's index.
//
// Eight-way set-associative and bounded: eight slots per hash, the one used least recently gives
// way, so memory is fixed (slots x 136 bytes, taken at the first series kept, and the
// identities longer than 56 bytes) and nothing is ever rebuilt. Not thread safe: one per
// Appender.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "storage/engine.hpp"

namespace citygate::ingest {

class SeriesCache {
  public:
    // What a series is known by before its key is built: its topic, its measurement, and the
    // payload's tags in their packed form (payload::ReadingTags::packed()).
    struct Identity {
        std::string_view topic;
        std::string_view measurement;
        std::string_view tags;
    };

    // `slots` 0: the cache is off (find never hits).
    explicit SeriesCache(std::size_t slots);

    static std::uint64_t hash(const Identity& identity);
    // The reference kept for `identity` (whose hash is `hash`), or an invalid one.
    storage::SeriesRef find(std::uint64_t hash, const Identity& identity);
    // Keeps `ref` for `identity`, in place of what its slot held.
    void insert(std::uint64_t hash, const Identity& identity, storage::SeriesRef ref);
    // Forgets everything kept when `epoch` (storage::Engine::series_epoch) moved on since the
    // last call: series were deleted, and references to them would recreate them.
    void expire(std::uint64_t epoch);

    std::size_t slots() const { return capacity_; }

  private:
    // An identity of up to this many bytes is kept in its slot, so a lookup reads one 128-byte
    // slot and no other memory (a heap string cost the lookup a second cache miss: the cache
    // was 13% of the server's CPU on batched line protocol); a longer one lives on the heap.
    static constexpr std::size_t kept_inline = 56;
    struct alignas(64) Slot {
        std::uint64_t hash = 0;
        storage::SeriesRef ref;
        std::uint16_t topic_size = 0;  // identity = topic, measurement, tags back to back
        std::uint16_t measurement_size = 0;
        std::uint32_t identity_size = 0;
        std::string long_identity;  // when identity_size > kept_inline
        char identity[kept_inline];

        std::string_view kept() const {
            return identity_size > kept_inline ? std::string_view(long_identity)
                                               : std::string_view(identity, identity_size);
        }
    };
    static bool holds(const Slot& slot, std::uint64_t hash, const Identity& identity);

    // A set's eight slots are told apart by a cache line of their own, so a lookup reads that
    // line and the one slot whose hash matches, not all eight slots.
    static constexpr std::size_t ways = 8;
    struct alignas(64) SetTags {
        std::uint32_t check[ways] = {};  // the hash's upper half with its lowest bit set; 0: empty
        std::uint32_t used[ways] = {};   // when each was last found or kept (tick_)
    };
    static std::uint32_t check_of(std::uint64_t hash) {
        return static_cast<std::uint32_t>(hash >> 32) | 1u;
    }
    std::size_t set_of(std::uint64_t hash) const { return hash & (tags_.size() - 1); }

    std::size_t capacity_;
    std::vector<Slot> slots_;    // capacity_ of them once the first series is kept
    std::vector<SetTags> tags_;  // capacity_ / ways
    std::uint32_t tick_ = 0;     // wraps: then recency is wrong for a while, never a hit
    std::uint64_t epoch_ = 0;
};

}  // namespace citygate::ingest
