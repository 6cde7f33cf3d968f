// The per-thread series reference cache: slots, hashing, expiry.
#include "ingest/series_cache.hpp"

#include <algorithm>
#include <bit>
#include <cstring>

namespace citygate::ingest {
namespace {

// Eight bytes a step (a byte-wise FNV over topic, measurement and tags was 4% of the server's
// CPU on batched line protocol), each part closed by its length, so ("ab", "c") and ("a", "bc")
// differ; the full mix comes at the end.
std::uint64_t mix(std::uint64_t h, std::string_view part) {
    constexpr std::uint64_t k = 0x9e3779b97f4a7c15ULL;
    const char* p = part.data();
    std::size_t n = part.size();
    for (; n >= 8; p += 8, n -= 8) {
        std::uint64_t word;
        std::memcpy(&word, p, 8);
        h = std::rotl((h ^ word) * k, 29);
    }
    std::uint64_t word = 0;
    if (n > 0) std::memcpy(&word, p, n);  // an empty part may have no data at all
    h = std::rotl((h ^ word) * k, 29);
    return (h ^ part.size()) * k;
}

}  // namespace

SeriesCache::SeriesCache(std::size_t slots)
    : capacity_(slots > 0 ? std::bit_ceil(std::max<std::size_t>(slots, 2)) : 0) {
    static_assert(sizeof(Slot) == 128, "a slot is two cache lines");
}

std::uint64_t SeriesCache::hash(const Identity& identity) {
    std::uint64_t h = 0xcbf29ce484222325ULL;
    h = mix(h, identity.topic);
    h = mix(h, identity.measurement);
    h = mix(h, identity.tags);
    // MurmurHash3's finaliser: multiplications carry only upwards, so without it the low bits
    // (the slot) would depend on few of the input's bits; devices whose names differ in a digit
    // or two met in the same slots and pushed each other out.
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
}

bool SeriesCache::holds(const Slot& s, std::uint64_t hash, const Identity& identity) {
    if (s.hash != hash || !s.ref.valid() || s.topic_size != identity.topic.size() ||
        s.measurement_size != identity.measurement.size() ||
        s.identity_size !=
            identity.topic.size() + identity.measurement.size() + identity.tags.size()) {
        return false;
    }
    std::string_view kept = s.kept();
    return kept.substr(0, s.topic_size) == identity.topic &&
           kept.substr(s.topic_size, s.measurement_size) == identity.measurement &&
           kept.substr(s.topic_size + s.measurement_size) == identity.tags;
}

storage::SeriesRef SeriesCache::find(std::uint64_t hash, const Identity& identity) {
    if (slots_.empty()) return {};
    Slot* pair = &slots_[(hash & (slots_.size() - 1)) & ~std::size_t{1}];
    for (int way = 0; way < 2; ++way) {
        if (!holds(pair[way], hash, identity)) continue;
        pair[way].recent = true;
        pair[1 - way].recent = false;
        return pair[way].ref;
    }
    return {};
}

void SeriesCache::insert(std::uint64_t hash, const Identity& identity, storage::SeriesRef ref) {
    // Longer parts than a u16 says are not kept (MQTT topics are at most 65535 bytes anyway).
    const std::size_t size =
        identity.topic.size() + identity.measurement.size() + identity.tags.size();
    if (capacity_ == 0 || identity.topic.size() > 0xFFFF || identity.measurement.size() > 0xFFFF ||
        size > 0xFFFFFFFF) {
        return;
    }
    // The slots come with the first series: an appender that never writes (one per I/O thread
    // whether or not it serves MQTT) costs nothing.
    if (slots_.empty()) slots_.resize(capacity_);
    // Two ways per set: the one not used last gives way, so two series that share a set both
    // stay (direct-mapped, 10,000 series in 65,536 slots missed 14% of readings).
    Slot* pair = &slots_[(hash & (slots_.size() - 1)) & ~std::size_t{1}];
    Slot& s = !pair[0].ref.valid()   ? pair[0]
              : !pair[1].ref.valid() ? pair[1]
              : pair[0].recent       ? pair[1]
                                     : pair[0];
    s.hash = hash;
    s.ref = ref;
    s.recent = true;
    (&s == pair ? pair[1] : pair[0]).recent = false;
    s.topic_size = static_cast<std::uint16_t>(identity.topic.size());
    s.measurement_size = static_cast<std::uint16_t>(identity.measurement.size());
    s.identity_size = static_cast<std::uint32_t>(size);
    if (size <= kept_inline) {
        char* to = std::copy(identity.topic.begin(), identity.topic.end(), s.identity);
        to = std::copy(identity.measurement.begin(), identity.measurement.end(), to);
        std::copy(identity.tags.begin(), identity.tags.end(), to);
        return;
    }
    // assign() reuses the slot's buffer when it is big enough: a full cache allocates only for
    // an identity longer than the one it replaces.
    s.long_identity.assign(identity.topic);
    s.long_identity.append(identity.measurement);
    s.long_identity.append(identity.tags);
}

void SeriesCache::expire(std::uint64_t epoch) {
    if (epoch == epoch_) return;
    epoch_ = epoch;
    for (Slot& s : slots_)
        s.ref = {};
}

}  // namespace citygate::ingest
