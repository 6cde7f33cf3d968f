// Shared helpers for storage tests: open an engine in a temp dir, write and wait for the WAL.
#pragma once

#include <future>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "storage/engine.hpp"
#include "tests/support/temp_dir.hpp"

namespace citygate::storage::test {

// Options for an engine in `dir` that keeps everything (no retention).
inline EngineOptions options_for(const citygate::test::TempDir& dir, unsigned shards = 2) {
    EngineOptions o;
    o.directory = dir.path();
    o.shards = shards;
    o.retention = std::chrono::milliseconds(0);
    return o;
}

inline std::unique_ptr<Engine> open_engine(EngineOptions o) {
    auto e = Engine::open(std::move(o));
    REQUIRE(e.is_ok());
    return std::move(e.value());
}

inline std::string key(const std::string& measurement, const std::string& device,
                       const std::string& district = "pudong") {
    return format_series_key(measurement,
                             {{"device", device}, {"district", district}, {"type", "air"}});
}

// Writes and waits for the callback; retries while the queues are full.
inline WriteResult write_sync(Engine& engine, std::vector<Point> points,
                              std::shared_ptr<SeriesAdmission> admission = nullptr) {
    std::promise<WriteResult> done;
    auto future = done.get_future();
    while (!engine.try_write(
        points, [&done](const WriteResult& r) { done.set_value(r); }, admission)) {
        std::this_thread::yield();
    }
    return future.get();
}

// What most tests expect of a write: durable, and every point accepted.
inline bool all_accepted(const WriteResult& r) {
    return r.durable() && r.rejected() == 0;
}

inline Selector sel(const std::string& text) {
    auto s = Selector::parse(text);
    if (!s.is_ok()) throw std::runtime_error(s.status().message());
    return s.value();
}

}  // namespace citygate::storage::test
