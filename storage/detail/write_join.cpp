// Outcome of a write split across shards. The rules are documented on WriteCallback.
#include "storage/detail/write_join.hpp"

namespace citygate::storage::detail {

void WriteJoin::complete(const WriteResult& part) {
    {
        std::lock_guard lock(mutex_);
        if (!part.durable() && combined_.durable()) combined_.status = part.status;
        combined_.accepted += part.accepted;
        combined_.rejected_late += part.rejected_late;
        combined_.rejected_series_limit += part.rejected_series_limit;
        for (std::size_t i = 0; i < kSeriesLimits; ++i)
            combined_.rejected_by_limit[i] += part.rejected_by_limit[i];
        combined_.rejected_invalid += part.rejected_invalid;
    }
    if (remaining_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    // Last part: every other part's fields are visible through the acq_rel decrement and lock.
    WriteResult result;
    {
        std::lock_guard lock(mutex_);
        result = std::move(combined_);
    }
    // One failed part makes the whole write not durable; which of the other parts' points
    // reached the WAL is then no use to the caller, so no counts go with the failure.
    if (!result.durable()) result = WriteResult{.status = std::move(result.status)};
    if (done_) done_(result);
}

}  // namespace citygate::storage::detail
