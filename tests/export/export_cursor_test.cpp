// The cursor file: atomic replacement, and refusal to guess from a damaged one.
#include <fstream>

#include <catch2/catch.hpp>

#include "export/export_cursor.hpp"
#include "tests/support/temp_dir.hpp"

using namespace citygate::exports;

TEST_CASE("a missing cursor file is an empty cursor") {
    citygate::test::TempDir dir;
    std::string error;
    auto cursor = load_cursor(dir.path() / "none", error);
    REQUIRE(cursor);
    CHECK(!cursor->raw_ms);
    CHECK(!cursor->rollup_1m_ms);
}

TEST_CASE("a saved cursor loads back, and a second save replaces it") {
    citygate::test::TempDir dir;
    auto file = dir.path() / "export" / "remote_write.cursor";  // directory created
    std::string error;
    REQUIRE(save_cursor(file, {1'700'000'000'123, std::nullopt}, error));
    auto first = load_cursor(file, error);
    REQUIRE(first);
    CHECK(*first == ExportCursor{1'700'000'000'123, std::nullopt});
    REQUIRE(save_cursor(file, {1'700'000'000'456, 1'699'999'940'000}, error));
    auto second = load_cursor(file, error);
    REQUIRE(second);
    CHECK(*second == ExportCursor{1'700'000'000'456, 1'699'999'940'000});
    CHECK(!std::filesystem::exists(file.string() + ".tmp"));  // renamed over, not left behind
}

TEST_CASE("a damaged cursor file is an error, not a fresh start") {
    citygate::test::TempDir dir;
    auto file = dir.path() / "cursor";
    std::string error;
    SECTION("wrong header") {
        std::ofstream(file) << "hello\n";
    }
    SECTION("bad number") {
        std::ofstream(file) << "citygate remote-write cursor v1\nraw_ms 12x\n";
    }
    SECTION("empty") {
        std::ofstream{file};
    }
    CHECK(!load_cursor(file, error));
    CHECK(!error.empty());
}

TEST_CASE("a save that cannot write leaves the old cursor and says why") {
    citygate::test::TempDir dir;
    auto file = dir.path() / "cursor";
    std::string error;
    REQUIRE(save_cursor(file, {5, std::nullopt}, error));
    std::filesystem::create_directory(file.string() + ".tmp");  // the temporary cannot be opened
    CHECK(!save_cursor(file, {6, std::nullopt}, error));
    CHECK(error.find(".tmp") != std::string::npos);
    auto kept = load_cursor(file, error);
    REQUIRE(kept);
    CHECK(kept->raw_ms == 5);
}
