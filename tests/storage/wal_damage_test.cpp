// A damaged write-ahead log is never replayed silently: the shard's log is copied mid-life (as a
// crash would leave it), damaged as an operator or a disk would (cut 7 bytes, cut half, 64
// bytes overwritten in the middle), and reopened: refused by default with a message naming the
// shard and the choice, opened under point_in_time with the loss reported. A torn last record
// of a write never acknowledged is dropped and reported, not refused.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "tests/storage/helpers.hpp"
#include "tests/support/temp_dir.hpp"

using namespace citygate::storage;
using namespace citygate::storage::test;
using citygate::test::TempDir;
namespace fs = std::filesystem;

namespace {

constexpr std::int64_t kT0 = 1'718'409'600'000;
constexpr int kPointsPerWrite = 500;

// Writes `writes` acknowledged group commits of kPointsPerWrite points, from write `from` on.
void write_batches(Engine& engine, int from, int writes) {
    for (int w = from; w < from + writes; ++w) {
        std::vector<Point> points;
        for (int i = 0; i < kPointsPerWrite; ++i) {
            points.push_back({key("pm25", "d-" + std::to_string(i % 50)),
                              kT0 + (static_cast<std::int64_t>(w) * kPointsPerWrite + i) * 1000,
                              1.0 * i});
        }
        REQUIRE(all_accepted(write_sync(engine, points)));
    }
}

// A copy of a live engine directory: what a kill -9 leaves (the WAL not flushed).
void copy_live(const fs::path& from, const fs::path& to) {
    fs::copy(from, to, fs::copy_options::recursive);
}

fs::path newest_log(const fs::path& shard) {
    fs::path newest;
    for (const auto& entry : fs::directory_iterator(shard)) {
        if (entry.path().extension() == ".log" && entry.path() > newest) newest = entry.path();
    }
    REQUIRE(!newest.empty());
    return newest;
}

std::size_t points_in(Engine& engine) {
    auto r = engine.query_raw(sel("pm25"), INT64_MIN, INT64_MAX, QueryLimits{1000, 100'000'000});
    REQUIRE(r.is_ok());
    std::size_t n = 0;
    for (const auto& s : r.value())
        n += s.timestamps_ms.size();
    return n;
}

}  // namespace

TEST_CASE(
    "a damaged WAL refuses to open by default and opens point-in-time with the loss reported") {
    TempDir dir;
    auto live = options_for(dir, 1);
    live.directory = dir.path() / "live";
    auto engine = open_engine(live);
    write_batches(*engine, 0, 40);
    const fs::path copy = dir.path() / "copy";
    copy_live(live.directory, copy);
    engine.reset();

    const fs::path log = newest_log(copy / "shard-0");
    const auto size = fs::file_size(log);
    REQUIRE(size > 100'000);
    std::string damage = GENERATE("cut 7 bytes", "cut half", "overwrite 64 bytes in the middle");
    INFO(damage);
    if (damage == "cut 7 bytes") {
        fs::resize_file(log, size - 7);
    } else if (damage == "cut half") {
        fs::resize_file(log, size / 2);
    } else {
        std::fstream f(log, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(static_cast<std::streamoff>(size / 2));
        f.write(std::string(64, '\x5a').data(), 64);
    }

    auto o = options_for(dir, 1);
    o.directory = copy;
    auto refused = Engine::open(o);
    REQUIRE_FALSE(refused.is_ok());
    const std::string& message = refused.status().message();
    CHECK(refused.status().code() == Status::Code::corruption);
    CHECK_THAT(message, Catch::Contains("shard 0"));
    CHECK_THAT(message, Catch::Contains("--recover=point-in-time"));
    CHECK_THAT(message, Catch::Contains(log.filename().string()));
    // Refusing touched nothing: the same again.
    CHECK(fs::file_size(log) == (damage == "cut 7 bytes" ? size - 7
                                 : damage == "cut half"  ? size / 2
                                                         : size));
    REQUIRE_FALSE(Engine::open(o).is_ok());

    o.wal_recovery = WalRecoveryPolicy::point_in_time;
    auto accepted = open_engine(o);
    auto report = accepted->wal_recovery();
    REQUIRE(report.size() == 1);
    CHECK(report[0].accepted);
    CHECK(report[0].damaged());
    CHECK(report[0].dropped_bytes > 0);
    CHECK(report[0].dropped_records >= 1);
    CHECK_FALSE(report[0].torn_tail);
    if (damage == "overwrite 64 bytes in the middle") {
        CHECK(report[0].corrupt);
        CHECK_THAT(report[0].problem, Catch::Contains("checksum mismatch"));
    } else {
        CHECK(report[0].acknowledged_lost);
    }
    const std::size_t left = points_in(*accepted);
    CHECK(left < 40u * kPointsPerWrite);
    CHECK(left >= (damage == "cut 7 bytes" ? 39u * kPointsPerWrite : 0u));
    // It goes on: new writes are taken, and the next start is clean.
    write_batches(*accepted, 100, 1);
    accepted.reset();
    o.wal_recovery = WalRecoveryPolicy::refuse;
    auto again = open_engine(o);
    CHECK_FALSE(again->wal_recovery()[0].damaged());
    CHECK(points_in(*again) == left + kPointsPerWrite);
}

TEST_CASE("a torn last record of a write never acknowledged is dropped and reported, not refused") {
    TempDir dir;
    auto live = options_for(dir, 1);
    live.directory = dir.path() / "live";
    auto engine = open_engine(live);
    write_batches(*engine, 0, 10);
    const fs::path copy = dir.path() / "copy";
    copy_live(live.directory, copy);  // acknowledged so far: 10 writes
    write_batches(*engine, 10, 1);    // an 11th, in the log but not acknowledged in the copy
    const fs::path grown = newest_log(live.directory / "shard-0");
    const fs::path log = copy / "shard-0" / grown.filename();
    REQUIRE(fs::exists(log));
    const auto before = fs::file_size(log);
    fs::copy_file(grown, log, fs::copy_options::overwrite_existing);
    REQUIRE(fs::file_size(log) > before + 1000);
    // The 11th cut short as a kill -9 in the middle of writing it would.
    fs::resize_file(log, before + 1000);
    engine.reset();

    auto o = options_for(dir, 1);
    o.directory = copy;
    auto opened = open_engine(o);  // the default policy opens it
    auto report = opened->wal_recovery()[0];
    CHECK(report.torn_tail);
    CHECK_FALSE(report.damaged());
    CHECK(report.dropped_bytes == 1000);
    CHECK(report.dropped_records == 1);
    CHECK_THAT(report.problem, Catch::Contains("incomplete last record"));
    CHECK(points_in(*opened) == 10u * kPointsPerWrite);
}

TEST_CASE("a WAL copied whole opens with nothing to report") {
    TempDir dir;
    auto live = options_for(dir, 1);
    live.directory = dir.path() / "live";
    auto engine = open_engine(live);
    write_batches(*engine, 0, 5);
    copy_live(live.directory, dir.path() / "copy");
    auto o = options_for(dir, 1);
    o.directory = dir.path() / "copy";
    auto opened = open_engine(o);
    auto report = opened->wal_recovery()[0];
    CHECK(report.dropped_bytes == 0);
    CHECK(report.dropped_records == 0);
    CHECK(report.problem.empty());
    CHECK(points_in(*opened) == 5u * kPointsPerWrite);
}
