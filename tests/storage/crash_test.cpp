// Durability under SIGKILL: a writer process is killed mid-ingest again and again; every write
// whose callback fired (it logged an ack line) must be readable after reopening.
#include <catch2/catch.hpp>

#include <signal.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "storage/engine.hpp"
#include "tests/storage/helpers.hpp"
#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

using namespace citygate::storage;
using namespace citygate::storage::test;
using citygate::test::Process;
using citygate::test::TempDir;

TEST_CASE("every acknowledged write survives SIGKILL of the writer") {
    TempDir dir;
    auto db = dir.path() / "db";
    auto acks = dir.path() / "acks";
    std::mt19937 rng(1234);
    std::uniform_int_distribution<int> delay_ms(50, 250);
    constexpr int kRuns = 8;
    std::size_t acked_total = 0;
    for (int run = 1; run <= kRuns; ++run) {
        auto ack_bytes = [&] {
            return std::filesystem::exists(acks) ? std::filesystem::file_size(acks) : 0;
        };
        const auto acked_before = ack_bytes();
        {
            Process writer({CITYGATE_CRASH_WRITER, db.string(), acks.string(), std::to_string(run)},
                           dir.path() / ("writer-" + std::to_string(run) + ".log"));
            // Wait until it acknowledged something, then let it run a little and kill it.
            auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
            while (ack_bytes() == acked_before) {
                REQUIRE(std::chrono::steady_clock::now() < deadline);
                std::this_thread::sleep_for(std::chrono::milliseconds(5));
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
            REQUIRE(writer.signal(SIGKILL));
            auto status = writer.wait_for(std::chrono::seconds(10));
            REQUIRE(status.has_value());
            CHECK(*status == 128 + SIGKILL);
        }
        // Reopen (recovery replays the batch log) and check every acknowledged point so far.
        EngineOptions o;
        o.directory = db;
        o.retention = std::chrono::milliseconds(0);
        auto engine = Engine::open(o);
        REQUIRE(engine.is_ok());
        REQUIRE(engine.value()->shard_count() == 2);
        std::map<std::string, std::map<std::int64_t, double>> stored;
        QueryLimits unlimited{1000, 100'000'000};
        auto r = engine.value()->query_raw(sel("crash"), 0, INT64_MAX, unlimited);
        REQUIRE(r.is_ok());
        for (auto& s : r.value()) {
            for (std::size_t i = 0; i < s.values.size(); ++i)
                stored[s.series][s.timestamps_ms[i]] = s.values[i];
        }
        std::ifstream in(acks);
        std::int64_t first, count;
        std::size_t acked = 0, missing = 0;
        while (in >> first >> count) {
            for (std::int64_t n = first; n < first + count; ++n) {
                auto k = format_series_key("crash", {{"device", "d-" + std::to_string(n % 40)}});
                auto it = stored[k].find(n);
                if (it == stored[k].end() || it->second != static_cast<double>(n % 1000)) ++missing;
                ++acked;
            }
        }
        INFO("run " << run << ": " << acked << " acknowledged points");
        CHECK(missing == 0);
        CHECK(acked > acked_total);
        acked_total = acked;
    }
}
