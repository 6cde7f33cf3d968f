// Where a batch ends: at a timestamp, never inside one.
#include <catch2/catch.hpp>

#include "export/batch_cut.hpp"

using citygate::exports::batch_cut;

TEST_CASE("a slice within the limit is sent whole") {
    std::vector<std::int64_t> ts = {10, 11, 12};
    CHECK(batch_cut(ts, 3, 10, 20, 1) == 20);
}

TEST_CASE("a slice over the limit is cut so at most limit samples precede the cut") {
    std::vector<std::int64_t> ts = {15, 10, 11, 11, 12, 13, 14};
    // sorted: 10 11 11 12 13 14 15; 4 before the cut: the 5th is 13, so cut at 13.
    std::int64_t cut = batch_cut(ts, 4, 10, 20, 1);
    CHECK(cut == 13);
}

TEST_CASE("samples of one timestamp stay together even past the limit") {
    std::vector<std::int64_t> ts = {10, 10, 10, 10, 11};
    CHECK(batch_cut(ts, 2, 10, 20, 1) == 11);  // all four at 10 go in one batch
    std::vector<std::int64_t> three = {10, 11, 11, 11};
    CHECK(batch_cut(three, 2, 10, 20, 1) == 11);  // 10 alone; the three at 11 next time
}

TEST_CASE("rollup cuts stay on minute boundaries") {
    std::vector<std::int64_t> ts = {0, 0, 60'000, 60'000, 120'000, 120'000};
    CHECK(batch_cut(ts, 4, 0, 180'000, 60'000) == 120'000);
    std::vector<std::int64_t> crowded = {0, 0, 0, 60'000};
    CHECK(batch_cut(crowded, 2, 0, 180'000, 60'000) == 60'000);
}
