// The packed chunk codec (mode 2): byte-exact layout, round trips over what devices send
// (jitter, gaps, negative and non-decimal values, extreme timestamps and mantissas), older modes
// still read, and damaged input refused without reading past the end.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "storage/detail/bits.hpp"
#include "storage/detail/chunk.hpp"

using namespace citygate::storage::detail;

namespace {

std::string bytes(std::initializer_list<int> list) {
    std::string out;
    for (int b : list)
        out.push_back(static_cast<char>(b));
    return out;
}

void check_roundtrip(const std::vector<Sample>& in) {
    auto data = encode_chunk(in.data(), in.size());
    ChunkHeader h;
    REQUIRE(decode_chunk_header(data, h).is_ok());
    CHECK(h.count == in.size());
    CHECK(h.first_ts == in.front().ts);
    CHECK(h.last_ts == in.back().ts);
    std::vector<Sample> out{{7, 7.0}};  // decode appends
    REQUIRE(decode_chunk(data, out).is_ok());
    REQUIRE(out.size() == in.size() + 1);
    for (std::size_t i = 0; i < in.size(); ++i) {
        INFO("point " << i);
        CHECK(out[i + 1].ts == in[i].ts);
        CHECK(std::bit_cast<std::uint64_t>(out[i + 1].value) ==
              std::bit_cast<std::uint64_t>(in[i].value));
    }
}

// A city sensor: every 10 s with +-20 ms of jitter, readings with `decimals` decimals.
std::vector<Sample> sensor(std::size_t n, int decimals, std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> jitter(-20, 20);
    std::normal_distribution<double> step(0, 0.3);
    double scale = std::pow(10.0, decimals);
    std::vector<Sample> out;
    double v = 21.5;
    for (std::size_t i = 0; i < n; ++i) {
        v += step(rng);
        out.push_back({1'718'409'600'000 + static_cast<std::int64_t>(i) * 10'000 + jitter(rng),
                       std::round(v * scale) / scale});
    }
    return out;
}

}  // namespace

TEST_CASE("a packed chunk's bytes, field by field") {
    std::vector<Sample> in{{0, 1.5}, {10'000, 1.6}, {20'005, 1.4}};
    auto data = encode_chunk(in.data(), in.size());
    CHECK(data == bytes({
                      0x03,  // count 3
                      0x00,  // first_ts 0 (zigzag)
                      0xa5,
                      0x9c,
                      0x01,  // span 20005
                      0x02,  // mode 2: packed
                      0xaa,
                      0x9c,
                      0x01,  // period: the median delta, 10005 (zigzag)
                      0x01,  // decimal exponent 1
                      // Rice k=1 (00001); residuals -5 -> 9 (11110 1), 0 -> 0 (0 0); padding
                      0x0f,
                      0xa0,
                      0x1e,  // first mantissa 15 (zigzag)
                      // predictor 0 (deltas); Rice k=1 (00001); +1 -> 2 (10 0), -2 -> 3 (10 1)
                      0x06,
                      0x50,
                  }));
    check_roundtrip(in);
}

TEST_CASE("a single point stays mode 0 (or 1 for a non-decimal)") {
    std::vector<Sample> one{{42, 1.5}};
    CHECK(encode_chunk(one.data(), 1) == bytes({0x01, 0x54, 0x00, 0x00, 0x01, 0x1e}));
    check_roundtrip(one);
    std::vector<Sample> raw{{42, 0.1 + 0.2}};
    CHECK(encode_chunk(raw.data(), 1)[3] == 0x01);
    check_roundtrip(raw);
}

TEST_CASE("older mode 0 and mode 1 chunks of several points still decode") {
    // count 3, first 1000, span 20, mode 0, delta 10, dod 0, k 1, mantissa deltas 15 +1 -2
    auto mode0 = bytes({0x03, 0xd0, 0x0f, 0x14, 0x00, 0x0a, 0x00, 0x01, 0x1e, 0x02, 0x03});
    std::vector<Sample> out;
    REQUIRE(decode_chunk(mode0, out).is_ok());
    REQUIRE(out.size() == 3);
    CHECK(out[0].ts == 1000);
    CHECK(out[1].ts == 1010);
    CHECK(out[2].ts == 1020);
    CHECK(out[0].value == 1.5);
    CHECK(out[1].value == 1.6);
    CHECK(out[2].value == 1.4);
    // count 2, first 0, span 5, mode 1, delta 5, then two little-endian doubles
    auto mode1 = bytes({0x02, 0x00, 0x05, 0x01, 0x05});
    double values[] = {0.1 + 0.2, -INFINITY};
    for (double v : values) {
        auto u = std::bit_cast<std::uint64_t>(v);
        for (int i = 0; i < 8; ++i)
            mode1.push_back(static_cast<char>(u >> (8 * i)));
    }
    out.clear();
    REQUIRE(decode_chunk(mode1, out).is_ok());
    REQUIRE(out.size() == 2);
    CHECK(out[1].ts == 5);
    CHECK(out[0].value == 0.1 + 0.2);
    CHECK(out[1].value == -INFINITY);
}

// About 6 bits of timestamp (+-20 ms) and 4-7 bits of value (a random walk of 0.3 a step is 3
// or 30 mantissa steps): 1.3 bytes a point at one decimal, 1.7 at two, before RocksDB.
TEST_CASE("jittered city readings round-trip in about 11-14 bits a point") {
    for (int decimals : {1, 2}) {
        auto in = sensor(360, decimals, 11 + static_cast<std::uint32_t>(decimals));
        check_roundtrip(in);
        auto data = encode_chunk(in.data(), in.size());
        INFO(decimals << " decimals: " << data.size() << " bytes");
        CHECK(data.size() < in.size() * (decimals == 1 ? 14 : 18) / 10);
    }
}

TEST_CASE("gaps, bursts and irregular clocks round-trip") {
    auto in = sensor(200, 1, 3);
    // A device offline for a day, then reporting every millisecond for a while.
    for (std::size_t i = 100; i < in.size(); ++i)
        in[i].ts += 86'400'000;
    for (std::size_t i = 150; i < in.size(); ++i)
        in[i].ts = in[149].ts + static_cast<std::int64_t>(i - 149);
    check_roundtrip(in);
    // Deltas with no common period at all.
    std::vector<Sample> odd;
    std::int64_t t = -1'000'000;
    for (int i = 0; i < 50; ++i) {
        t += 1 + (i * i * 7919) % 100'003;
        odd.push_back({t, i * 0.25});
    }
    check_roundtrip(odd);
    std::vector<Sample> two{{5, 1.0}, {6, 1.0}};
    check_roundtrip(two);
}

TEST_CASE("negative values and sign changes round-trip") {
    std::vector<Sample> in;
    for (int i = 0; i < 100; ++i)
        in.push_back({i * 1000, std::round(std::sin(i * 0.3) * 4000) / 100});  // -40.00 .. 40.00
    check_roundtrip(in);
    std::vector<Sample> cold{{0, -12.5}, {1, -12.75}, {2, -0.25}, {3, 0.0}, {4, 3.125}};
    check_roundtrip(cold);
}

TEST_CASE("non-decimal doubles round-trip bit for bit, staleness markers included") {
    const double stale = std::bit_cast<double>(std::uint64_t{0x7ff0000000000002});  // Prometheus
    const double quiet = std::numeric_limits<double>::quiet_NaN();
    std::vector<Sample> in{{1, 21.5},
                           {2, stale},
                           {3, quiet},
                           {4, INFINITY},
                           {5, -INFINITY},
                           {6, -0.0},
                           {7, std::numeric_limits<double>::denorm_min()},
                           {8, std::numeric_limits<double>::max()},
                           {9, 0.1 + 0.2}};
    check_roundtrip(in);
    // -0.0 alone is not a decimal either: it must not come back as +0.0.
    std::vector<Sample> zeros{{1, 0.0}, {2, -0.0}};
    check_roundtrip(zeros);
}

TEST_CASE("extreme timestamps and mantissas round-trip") {
    constexpr auto lo = std::numeric_limits<std::int64_t>::min();
    constexpr auto hi = std::numeric_limits<std::int64_t>::max();
    // A span over INT64_MAX wraps in the header and the residuals, and comes back.
    std::vector<Sample> span{{lo, 1.0}, {-1, 2.0}, {0, 3.0}, {hi, 4.0}};
    check_roundtrip(span);
    std::vector<Sample> top{{hi - 2, 1.0}, {hi - 1, 1.0}, {hi, 1.0}};
    check_roundtrip(top);
    std::vector<Sample> bottom{{lo, 1.0}, {lo + 1, 1.0}, {lo + 10'000, 1.0}};
    check_roundtrip(bottom);
    // The largest mantissas the decimal mode takes (2^53 - 1), swinging end to end: deltas of
    // 2^54 and delta-of-deltas of 2^55 go through the escape code.
    const double big = 9007199254740991.0;
    std::vector<Sample> swing{{0, big}, {1, -big}, {2, big}, {3, -big}, {4, 0.0}, {5, big}};
    check_roundtrip(swing);
    // Past 2^53 at some exponent: not a decimal there, so raw or a smaller exponent.
    std::vector<Sample> large{{0, 1e300}, {1, 123456789012345.6}, {2, 1e15}};
    check_roundtrip(large);
    std::vector<Sample> precise{{0, 1.23456789}, {1, 1.23456788}, {2, 0.000000001}};
    check_roundtrip(precise);
}

TEST_CASE("a rare outlier costs an escape, not the whole run") {
    auto in = sensor(360, 1, 5);
    auto plain = encode_chunk(in.data(), in.size()).size();
    in[180].value = 1e6;
    in[181].ts += 3'600'000;
    for (std::size_t i = 182; i < in.size(); ++i)
        in[i].ts += 3'600'000;
    check_roundtrip(in);
    CHECK(encode_chunk(in.data(), in.size()).size() < plain + 64);
}

TEST_CASE("truncated or damaged packed chunks fail cleanly") {
    auto in = sensor(50, 2, 9);
    auto data = encode_chunk(in.data(), in.size());
    std::vector<Sample> out;
    for (std::size_t cut = 0; cut < data.size(); ++cut) {
        out.clear();
        CHECK_FALSE(decode_chunk(std::string_view(data).substr(0, cut), out).is_ok());
        CHECK(out.empty());  // nothing half-decoded is left behind
    }
    CHECK_FALSE(decode_chunk(data + std::string(1, '\0'), out).is_ok());
    // A packed chunk claiming one point, and one claiming more points than it has bits.
    CHECK_FALSE(decode_chunk(bytes({0x01, 0x00, 0x00, 0x02, 0x00, 0x01}), out).is_ok());
    CHECK_FALSE(decode_chunk(bytes({0xff, 0xff, 0x7f, 0x00, 0x00, 0x02}), out).is_ok());
    CHECK_FALSE(decode_chunk(bytes({0x02, 0x00, 0x00, 0x07}), out).is_ok());  // unknown mode
    // Every single-bit flip either decodes to something (the codec has no checksum: RocksDB's
    // block checksums guard the bytes) or is refused; none reads past the end.
    for (std::size_t bit = 0; bit < data.size() * 8; ++bit) {
        std::string damaged = data;
        damaged[bit / 8] = static_cast<char>(damaged[bit / 8] ^ (1 << (bit % 8)));
        out.clear();
        auto s = decode_chunk(damaged, out);
        if (!s.is_ok()) CHECK(out.empty());
    }
    // Random garbage, under ASan/UBSan in the sanitizer builds.
    std::mt19937 rng(1);
    for (int i = 0; i < 2000; ++i) {
        std::string junk(1 + rng() % 40, '\0');
        for (auto& c : junk)
            c = static_cast<char>(rng());
        junk[3] = 0x02;
        out.clear();
        (void)decode_chunk(junk, out);
    }
}

TEST_CASE("the Rice parameter search finds the fewest bits trying every k would") {
    std::mt19937_64 rng(99);
    for (int round = 0; round < 300; ++round) {
        std::vector<std::uint64_t> run(1 + rng() % 400);
        const double mean = std::ldexp(1.0, static_cast<int>(rng() % 40));
        std::exponential_distribution<double> geometric(1 / mean);
        std::uniform_real_distribution<double> uniform(0, 2 * mean);
        for (auto& v : run)
            v = static_cast<std::uint64_t>(round % 2 ? geometric(rng) : uniform(rng));
        // Some runs carry outliers, up to a full 64-bit value.
        for (int o = 0; o < round % 4; ++o)
            run[rng() % run.size()] = rng() >> (rng() % 64);
        std::uint64_t fewest = ~std::uint64_t{0};
        int best = 0;
        for (int k = 0; k <= kRiceMaxK; ++k) {
            if (rice_size(run, k) < fewest) {
                fewest = rice_size(run, k);
                best = k;
            }
        }
        INFO("round " << round << ", " << run.size() << " values, mean " << mean);
        const RiceChoice choice = rice_choice(run);
        CHECK(choice.bits == fewest);
        CHECK(choice.k == best);
        CHECK(rice_size(run, choice.k) == choice.bits);
    }
}
