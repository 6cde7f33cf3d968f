// Joins the per-shard parts of one Engine::try_write(): the last part to reach the WAL fires the
// caller's callback, once, on that writer thread, with the combined outcome.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

#include "storage/engine.hpp"

namespace citygate::storage::detail {

class WriteJoin {
  public:
    WriteJoin(unsigned parts, WriteCallback done) : remaining_(parts), done_(std::move(done)) {}

    // One part finished: `part.status` is its WAL outcome, the counts are its points.
    void complete(const WriteResult& part);

  private:
    std::atomic<unsigned> remaining_;
    WriteCallback done_;
    std::mutex mutex_;
    WriteResult combined_;
};

struct QueuedWrite {
    std::vector<Point> points;
    // A write in one shard calls `done` itself; the parts of a write split across shards meet
    // in `join`.
    std::shared_ptr<WriteJoin> join;
    WriteCallback done;
    std::shared_ptr<SeriesAdmission> admission;  // may be null

    void complete(const WriteResult& result) {
        if (join) return join->complete(result);
        if (done) done(result);
    }
};

}  // namespace citygate::storage::detail
