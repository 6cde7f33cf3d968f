// The built-in status page: `GET /` (self-contained HTML, inline JS and SVG) and the JSON it polls,
// `GET /api/v1/status`: connections, samples written, ingest rate with a short history, shard
// queues, series, uptime, version and the city aggregates.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "gateway/ops/metrics.hpp"
#include "ingest/city_aggregates.hpp"
#include "storage/engine.hpp"

namespace citygate::gateway {

// What an operator must know about storage beyond the figures, one sentence each: a shard that
// started on a damaged write-ahead log (--recover=point-in-time). Shown by the status page and
// in /readyz's body (readiness stays 200: the gateway serves what it has). Thread safe.
std::vector<std::string> storage_problems(const storage::Engine& engine);

class StatusPage {
  public:
    // `city` may be null (aggregates off). `queue_capacity` is a shard queue's capacity.
    StatusPage(const storage::Engine& engine, const Metrics& metrics,
               const ingest::CityAggregates* city, std::size_t queue_capacity);

    // Samples the counters every second on `io`'s thread for the rate history; the timer stops
    // with `io`.
    void start(boost::asio::io_context& io);

    // Records one observation of the counters. Thread safe.
    void sample(std::int64_t now_ms);

    // The JSON document of /api/v1/status. Thread safe.
    std::string json(std::int64_t now_ms) const;

    // The HTML page (constant).
    static std::string_view html();

  private:
    struct Observation {
        std::int64_t time_ms;
        double samples_written;
        double connections;
    };
    void arm();

    const storage::Engine& engine_;
    const Metrics& metrics_;
    const ingest::CityAggregates* city_;
    std::size_t queue_capacity_;
    std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
    std::unique_ptr<boost::asio::steady_timer> timer_;

    mutable std::mutex mutex_;
    std::deque<Observation> history_;  // one a second, the last two minutes
};

}  // namespace citygate::gateway
