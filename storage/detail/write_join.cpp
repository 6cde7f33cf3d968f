// Outcome of a write split across shards. The rules are documented on Engine::try_write.
#include "storage/detail/write_join.hpp"

namespace citygate::storage::detail {

void WriteJoin::complete(const Status& status, std::uint64_t late, std::uint64_t over_limit,
                         std::uint64_t invalid) {
    {
        std::lock_guard lock(mutex_);
        if (!status.is_ok() && failure_.is_ok()) failure_ = status;
        late_ += late;
        over_limit_ += over_limit;
        invalid_ += invalid;
    }
    if (remaining_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    // Last part: every other part's fields are visible through the acq_rel decrement and lock.
    Status result;
    {
        std::lock_guard lock(mutex_);
        if (!failure_.is_ok()) {
            result = failure_;
        } else if (invalid_ + over_limit_ + late_ > 0) {
            std::string counts = std::to_string(late_) + " late, " + std::to_string(over_limit_) +
                                 " over the series limit, " + std::to_string(invalid_) +
                                 " with an invalid series key";
            // The series limit is a quota (retrying later may succeed once retention frees
            // series); late and malformed points will never be accepted.
            auto code =
                over_limit_ > 0 ? Status::Code::limit_exceeded : Status::Code::invalid_argument;
            result = Status::error(code, "points rejected: " + counts +
                                             "; every other point of the write is in the WAL");
        }
    }
    if (done_) done_(std::move(result));
}

}  // namespace citygate::storage::detail
