// restore_checkpoint: a checkpoint restored into a fresh directory opens with the same data; it
// refuses a target that holds anything and a source that is not a checkpoint.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "tests/storage/helpers.hpp"
#include "tests/support/temp_dir.hpp"

using namespace citygate::storage;
using namespace citygate::storage::test;
using citygate::test::TempDir;

namespace {

constexpr std::int64_t kT0 = 1'718'409'600'000;

EngineOptions options_for(const std::filesystem::path& dir) {
    EngineOptions o;
    o.directory = dir;
    o.shards = 2;
    o.retention = std::chrono::milliseconds(0);
    return o;
}

std::vector<RawSeries> everything(const Engine& engine) {
    auto r = engine.query_raw(sel("pm25"), kT0, kT0 + 10'000'000);
    REQUIRE(r.is_ok());
    return r.value();
}

// An engine with flushed chunks and points still in the batch log, and a checkpoint of it.
std::vector<RawSeries> write_and_checkpoint(const std::filesystem::path& dir,
                                            const std::filesystem::path& checkpoint) {
    auto opened = Engine::open(options_for(dir));
    REQUIRE(opened.is_ok());
    auto& engine = *opened.value();
    std::vector<Point> points;
    for (int d = 0; d < 8; ++d) {
        for (int i = 0; i < 50; ++i)
            points.push_back(
                {key("pm25", "c-" + std::to_string(d)), kT0 + i * 10'000, d + i * 0.5});
    }
    REQUIRE(all_accepted(write_sync(engine, points)));
    REQUIRE(engine.flush().is_ok());
    for (auto& p : points)
        p.timestamp_ms += 1'000'000;  // these stay in the head, so in the log
    REQUIRE(all_accepted(write_sync(engine, points)));
    REQUIRE(engine.checkpoint(checkpoint).is_ok());
    return everything(engine);
}

}  // namespace

TEST_CASE("a restored checkpoint opens with the data it was taken with") {
    TempDir dir;
    auto checkpoint = dir.path() / "checkpoint";
    auto expected = write_and_checkpoint(dir.path() / "live", checkpoint);
    REQUIRE(expected.size() == 8);

    auto restored = dir.path() / "restored";  // absent: created
    REQUIRE(restore_checkpoint(checkpoint, restored).is_ok());
    auto opened = Engine::open(options_for(restored));
    REQUIRE(opened.is_ok());
    auto got = everything(*opened.value());
    REQUIRE(got.size() == expected.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
        CHECK(got[i].series == expected[i].series);
        CHECK(got[i].timestamps_ms == expected[i].timestamps_ms);
        CHECK(got[i].values == expected[i].values);
    }
    opened.value().reset();

    // The checkpoint is untouched by the restored engine's writes: it restores again.
    auto again = dir.path() / "again";
    std::filesystem::create_directory(again);  // empty: accepted
    REQUIRE(restore_checkpoint(checkpoint, again).is_ok());
    auto second = Engine::open(options_for(again));
    REQUIRE(second.is_ok());
    CHECK(everything(*second.value()).size() == 8);
}

TEST_CASE("restore refuses a target that is not empty and leaves it alone") {
    TempDir dir;
    auto checkpoint = dir.path() / "checkpoint";
    write_and_checkpoint(dir.path() / "live", checkpoint);
    auto target = dir.path() / "target";
    std::filesystem::create_directory(target);
    std::ofstream(target / "keep.txt") << "precious";

    auto status = restore_checkpoint(checkpoint, target);
    CHECK(status.code() == Status::Code::invalid_argument);
    CHECK_THAT(status.message(), Catch::Contains("not empty"));
    std::size_t entries = 0;
    for (const auto& entry : std::filesystem::directory_iterator(target)) {
        CHECK(entry.path().filename() == "keep.txt");
        ++entries;
    }
    CHECK(entries == 1);
}

TEST_CASE("restore refuses a directory that is not a checkpoint") {
    TempDir dir;
    auto target = dir.path() / "target";

    auto plain = dir.path() / "plain";
    std::filesystem::create_directory(plain);
    std::ofstream(plain / "notes.txt") << "hello";
    auto status = restore_checkpoint(plain, target);
    CHECK(status.code() == Status::Code::invalid_argument);
    CHECK_THAT(status.message(), Catch::Contains("not a checkpoint"));
    CHECK_FALSE(std::filesystem::exists(target));

    auto missing = restore_checkpoint(dir.path() / "nowhere", target);
    CHECK(missing.code() == Status::Code::invalid_argument);
    CHECK_FALSE(std::filesystem::exists(target));

    // The metadata alone, without the shards it names, is not one either.
    auto partial = dir.path() / "partial";
    std::filesystem::create_directory(partial);
    std::ofstream(partial / "engine.meta") << "2\n";
    auto incomplete = restore_checkpoint(partial, target);
    CHECK(incomplete.code() == Status::Code::invalid_argument);
    CHECK_THAT(incomplete.message(), Catch::Contains("shard-0"));
    CHECK_FALSE(std::filesystem::exists(target));
}
