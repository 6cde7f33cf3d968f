// The per-thread series reference cache: slots, hashing, expiry.
#include "ingest/series_cache.hpp"

#include <bit>

namespace citygate::ingest {
namespace {

// FNV-1a over the three parts, each closed by its length, so ("ab", "c") and ("a", "bc")
// differ; then a final mix, since slots are picked from the low bits.
std::uint64_t fnv(std::uint64_t h, std::string_view part) {
    for (unsigned char c : part)
        h = (h ^ c) * 0x100000001b3ULL;
    return (h ^ part.size()) * 0x100000001b3ULL;
}

}  // namespace

SeriesCache::SeriesCache(std::size_t slots) : capacity_(slots > 0 ? std::bit_ceil(slots) : 0) {}

std::uint64_t SeriesCache::hash(const Identity& identity) {
    std::uint64_t h = 0xcbf29ce484222325ULL;
    h = fnv(h, identity.topic);
    h = fnv(h, identity.measurement);
    h = fnv(h, identity.tags);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    return h ^ (h >> 33);
}

storage::SeriesRef SeriesCache::find(std::uint64_t hash, const Identity& identity) const {
    if (slots_.empty()) return {};
    const Slot& s = slot(hash);
    if (s.hash != hash || !s.ref.valid() || s.topic_size != identity.topic.size() ||
        s.measurement_size != identity.measurement.size() ||
        s.identity.size() !=
            identity.topic.size() + identity.measurement.size() + identity.tags.size()) {
        return {};
    }
    std::string_view kept = s.identity;
    if (kept.substr(0, s.topic_size) != identity.topic ||
        kept.substr(s.topic_size, s.measurement_size) != identity.measurement ||
        kept.substr(s.topic_size + s.measurement_size) != identity.tags) {
        return {};
    }
    return s.ref;
}

void SeriesCache::insert(std::uint64_t hash, const Identity& identity, storage::SeriesRef ref) {
    // Longer parts than a u16 says are not kept (MQTT topics are at most 65535 bytes anyway).
    if (capacity_ == 0 || identity.topic.size() > 0xFFFF || identity.measurement.size() > 0xFFFF) {
        return;
    }
    // The slots come with the first series: an appender that never writes (one per I/O thread
    // whether or not it serves MQTT) costs nothing.
    if (slots_.empty()) slots_.resize(capacity_);
    Slot& s = slots_[hash & (slots_.size() - 1)];
    s.hash = hash;
    s.ref = ref;
    s.topic_size = static_cast<std::uint16_t>(identity.topic.size());
    s.measurement_size = static_cast<std::uint16_t>(identity.measurement.size());
    // assign() reuses the slot's buffer when it is big enough: a full cache allocates only for
    // an identity longer than the one it replaces.
    s.identity.assign(identity.topic);
    s.identity.append(identity.measurement);
    s.identity.append(identity.tags);
}

void SeriesCache::expire(std::uint64_t epoch) {
    if (epoch == epoch_) return;
    epoch_ = epoch;
    for (Slot& s : slots_)
        s.ref = {};
}

}  // namespace citygate::ingest
