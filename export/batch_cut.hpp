// Where a batch of the remote-write sender ends. The durable cursor is a timestamp: everything
// stored before it was acknowledged by the receiver. So a batch is always "every selected sample
// in [cursor, cut)", and a batch limit is met by choosing the cut, never by splitting a
// timestamp's samples across two batches. Pure code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace citygate::exports {

// The largest cut in (start, end] such that the samples stamped `timestamps` (each in
// [start, end)) that fall before it number at most `limit`. When the samples of the first
// `granularity` alone pass the limit (many series at one instant), the cut is start +
// granularity and the batch is bigger than the limit: a cursor cannot stop inside one instant.
// `timestamps` is reordered. `granularity` >= 1 (1 ms for raw samples, 60 000 for 1-minute
// rollups, whose timestamps are minute starts).
std::int64_t batch_cut(std::vector<std::int64_t>& timestamps, std::size_t limit, std::int64_t start,
                       std::int64_t end, std::int64_t granularity);

}  // namespace citygate::exports
