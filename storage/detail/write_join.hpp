// Joins the per-shard parts of one Engine::try_write(): the last part to reach the WAL fires the
// caller's callback, once, on that writer thread, with the combined outcome.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "storage/engine.hpp"

namespace citygate::storage::detail {

class WriteJoin {
  public:
    WriteJoin(unsigned parts, WriteCallback done) : remaining_(parts), done_(std::move(done)) {}

    // One part finished: `status` is the part's WAL outcome; the counts are its rejected points.
    void complete(const Status& status, std::uint64_t late, std::uint64_t over_limit,
                  std::uint64_t invalid);

  private:
    std::atomic<unsigned> remaining_;
    WriteCallback done_;
    std::mutex mutex_;
    Status failure_;
    std::uint64_t late_ = 0, over_limit_ = 0, invalid_ = 0;
};

struct QueuedWrite {
    std::vector<Point> points;
    std::shared_ptr<WriteJoin> join;
};

}  // namespace citygate::storage::detail
