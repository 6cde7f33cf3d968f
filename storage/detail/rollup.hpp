// Rollup buckets (count, sum, min, max, first, last over a fixed time bucket) and their on-disk
// block codec. A 1-minute block holds the buckets of one hour; a 1-hour block those of one window.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "storage/detail/chunk.hpp"
#include "storage/status.hpp"

namespace citygate::storage::detail {

enum class Resolution : std::int64_t { minute = 60'000, hour = 3'600'000 };

struct RollupBucket {
    std::int64_t start = 0;
    std::uint64_t count = 0;
    double sum = 0, min = 0, max = 0, first = 0, last = 0;

    // Adds a sample later than every sample already in the bucket.
    void add(double v) {
        if (count == 0) {
            min = max = first = v;
        } else {
            min = v < min ? v : min;
            max = v > max ? v : max;
        }
        last = v;
        sum += v;
        ++count;
    }
    // Merges a bucket whose samples are all later than this one's.
    void merge_later(const RollupBucket& later) {
        if (later.count == 0) return;
        if (count == 0) {
            std::int64_t s = start;
            *this = later;
            start = s;
            return;
        }
        min = later.min < min ? later.min : min;
        max = later.max > max ? later.max : max;
        last = later.last;
        sum += later.sum;
        count += later.count;
    }
};

// Buckets of `width` ms over sorted, duplicate-free samples.
std::vector<RollupBucket> bucketize(const Sample* samples, std::size_t count, std::int64_t width);

// Buckets must be sorted, non-empty, with starts that are multiples of `width` from block_start.
std::string encode_rollups(const std::vector<RollupBucket>& buckets, std::int64_t block_start,
                           std::int64_t width);
[[nodiscard]] Status decode_rollups(std::string_view data, std::int64_t block_start,
                                    std::int64_t width, std::vector<RollupBucket>& out);

// What decode_rollups(encode_rollups(buckets)) gives, without the bytes: when the block is
// stored as decimals, sums become the exact decimal sum (the accumulated double's nearest
// mantissa); everything else is kept bit for bit. Readers of sealed windows compute 1-minute
// buckets with it, so they answer what the stored blocks did.
void round_like_codec(std::vector<RollupBucket>& buckets);

// Merges `update` into `base` (both sorted by start): buckets of `update` replace those of
// `base` with the same start when `replace`, else are merged as later samples.
void merge_buckets(std::vector<RollupBucket>& base, const std::vector<RollupBucket>& update,
                   bool replace);

}  // namespace citygate::storage::detail
