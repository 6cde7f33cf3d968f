// Key encoding, the chunk codec and the rollup block codec.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <random>

#include "storage/detail/chunk.hpp"
#include "storage/detail/keys.hpp"
#include "storage/detail/rollup.hpp"

using namespace citygate::storage;
using namespace citygate::storage::detail;

TEST_CASE("record keys order by series then time, negative times included") {
    auto a = record_key(RecordKind::chunk, 1, -5);
    auto b = record_key(RecordKind::chunk, 1, 0);
    auto c = record_key(RecordKind::chunk, 1, 1700000000000);
    auto d = record_key(RecordKind::chunk, 2, -1700000000000);
    CHECK(a < b);
    CHECK(b < c);
    CHECK(c < d);
    CHECK(a.size() == kRecordKeySize);
    RecordKey k;
    REQUIRE(parse_record_key(c, k));
    CHECK(k.kind == RecordKind::chunk);
    CHECK(k.series_id == 1);
    CHECK(k.ts == 1700000000000);
}

TEST_CASE("record key bytes are big-endian") {
    auto key = record_key(RecordKind::rollup_1m, 0x0102030405060708ull, 0);
    CHECK(key[0] == 'm');
    CHECK(key.substr(1, 8) == std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8));
    // timestamp 0 with the sign bit flipped
    CHECK(key.substr(9) == std::string("\x80\0\0\0\0\0\0\0", 8));
}

TEST_CASE("floor_to rounds toward minus infinity") {
    CHECK(floor_to(3'599'999, 3'600'000) == 0);
    CHECK(floor_to(3'600'000, 3'600'000) == 3'600'000);
    CHECK(floor_to(-1, 3'600'000) == -3'600'000);
}

namespace {
void check_roundtrip(const std::vector<Sample>& in) {
    auto data = encode_chunk(in.data(), in.size());
    ChunkHeader h;
    REQUIRE(decode_chunk_header(data, h).is_ok());
    CHECK(h.count == in.size());
    CHECK(h.first_ts == in.front().ts);
    CHECK(h.last_ts == in.back().ts);
    std::vector<Sample> out;
    REQUIRE(decode_chunk(data, out).is_ok());
    REQUIRE(out.size() == in.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
        CHECK(out[i].ts == in[i].ts);
        CHECK(std::bit_cast<std::uint64_t>(out[i].value) ==
              std::bit_cast<std::uint64_t>(in[i].value));
    }
}
}  // namespace

TEST_CASE("chunks of decimal sensor values round-trip bit-exactly and compress") {
    std::vector<Sample> in;
    std::mt19937 rng(7);
    std::normal_distribution<double> noise(0, 2);
    double v = 35;
    for (int i = 0; i < 360; ++i) {
        v += noise(rng) * 0.1;
        in.push_back(
            {1'700'000'000'000 + i * 10'000 + (i % 7 == 0 ? 3 : 0), std::round(v * 10) / 10});
    }
    check_roundtrip(in);
    auto data = encode_chunk(in.data(), in.size());
    CHECK(data.size() < in.size() * 3);  // a byte or two of timestamp, a byte or so of value
}

TEST_CASE("chunks of arbitrary doubles fall back to raw and round-trip") {
    std::vector<Sample> in{{-10, 0.1 + 0.2}, {0, -0.0}, {5, 1e300}, {6, NAN}, {100, -INFINITY}};
    check_roundtrip(in);
    std::vector<Sample> single{{42, 1.5}};
    check_roundtrip(single);
}

TEST_CASE("corrupt chunks are reported, not read past the end") {
    std::vector<Sample> in{{1, 1.0}, {2, 2.0}, {3, 3.0}};
    auto data = encode_chunk(in.data(), in.size());
    std::vector<Sample> out;
    for (std::size_t cut = 0; cut < data.size(); ++cut) {
        out.clear();
        CHECK_FALSE(decode_chunk(std::string_view(data).substr(0, cut), out).is_ok());
    }
}

TEST_CASE("rollup blocks round-trip in decimal and raw modes") {
    std::vector<Sample> samples;
    for (int i = 0; i < 120; ++i)
        samples.push_back({i * 10'000, std::round((20 + std::sin(i)) * 100) / 100});
    auto buckets = bucketize(samples.data(), samples.size(), 60'000);
    REQUIRE(buckets.size() == 20);
    CHECK(buckets[0].count == 6);
    for (bool raw : {false, true}) {
        if (raw) buckets[3].max = 0.1 + 0.2;  // not a decimal: forces raw mode
        auto data = encode_rollups(buckets, 0, 60'000);
        std::vector<RollupBucket> out;
        REQUIRE(decode_rollups(data, 0, 60'000, out).is_ok());
        REQUIRE(out.size() == buckets.size());
        for (std::size_t i = 0; i < out.size(); ++i) {
            CHECK(out[i].start == buckets[i].start);
            CHECK(out[i].count == buckets[i].count);
            CHECK(out[i].min == buckets[i].min);
            CHECK(out[i].max == buckets[i].max);
            CHECK(out[i].first == buckets[i].first);
            CHECK(out[i].last == buckets[i].last);
            CHECK(out[i].sum == Approx(buckets[i].sum).epsilon(1e-12));
        }
    }
}

namespace {
void check_rollup_roundtrip(const std::vector<RollupBucket>& in, std::int64_t block_start,
                            std::int64_t width) {
    auto data = encode_rollups(in, block_start, width);
    std::vector<RollupBucket> out;
    REQUIRE(decode_rollups(data, block_start, width, out).is_ok());
    REQUIRE(out.size() == in.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
        INFO("bucket " << i);
        CHECK(out[i].start == in[i].start);
        CHECK(out[i].count == in[i].count);
        CHECK(out[i].min == in[i].min);
        CHECK(out[i].max == in[i].max);
        CHECK(out[i].first == in[i].first);
        CHECK(out[i].last == in[i].last);
        CHECK(out[i].sum == Approx(in[i].sum).epsilon(1e-12));
    }
}
}  // namespace

TEST_CASE("packed rollup blocks: jittered counts, gaps, negative and large values") {
    std::mt19937 rng(3);
    std::uniform_int_distribution<int> jitter(-20, 20);
    std::vector<Sample> samples;
    double v = -3;
    for (int i = 0; i < 360; ++i) {
        if (i > 100 && i < 160) continue;  // a device offline for ten minutes
        v += std::normal_distribution<double>(0, 0.5)(rng);
        samples.push_back({3'600'000 + i * 10'000 + jitter(rng), std::round(v * 100) / 100});
    }
    auto buckets = bucketize(samples.data(), samples.size(), 60'000);
    check_rollup_roundtrip(buckets, 3'600'000, 60'000);
    auto data = encode_rollups(buckets, 3'600'000, 60'000);
    CHECK(data[1] == 2);                      // packed
    CHECK(data.size() < buckets.size() * 7);  // steps of 50 mantissas: ~8 bits a column
    // Mantissas near 2^53 and counts far from the median.
    std::vector<RollupBucket> big;
    for (int i = 0; i < 10; ++i) {
        RollupBucket b;
        b.start = i * 60'000;
        b.count = i == 3 ? 1'000'000 : 1;
        b.first = b.last = b.min = b.max = (i % 2 ? 1 : -1) * 4503599627370495.0;
        b.sum = b.first;
        big.push_back(b);
    }
    big[3].sum = 0;
    check_rollup_roundtrip(big, 0, 60'000);
    // A short block stays mode 0.
    std::vector<RollupBucket> few(buckets.begin(), buckets.begin() + 3);
    CHECK(encode_rollups(few, 3'600'000, 60'000)[1] == 0);
    check_rollup_roundtrip(few, 3'600'000, 60'000);
}

TEST_CASE("truncated or damaged packed rollup blocks fail cleanly") {
    std::vector<Sample> samples;
    for (int i = 0; i < 120; ++i)
        samples.push_back({i * 10'000, std::round((20 + std::sin(i)) * 10) / 10});
    auto buckets = bucketize(samples.data(), samples.size(), 60'000);
    auto data = encode_rollups(buckets, 0, 60'000);
    REQUIRE(data[1] == 2);
    std::vector<RollupBucket> out;
    for (std::size_t cut = 0; cut < data.size(); ++cut) {
        out.clear();
        CHECK_FALSE(decode_rollups(std::string_view(data).substr(0, cut), 0, 60'000, out).is_ok());
        CHECK(out.empty());
    }
    for (std::size_t bit = 0; bit < data.size() * 8; ++bit) {
        std::string damaged = data;
        damaged[bit / 8] = static_cast<char>(damaged[bit / 8] ^ (1 << (bit % 8)));
        out.clear();
        (void)decode_rollups(damaged, 0, 60'000, out);  // refused or wrong, never out of bounds
    }
}

TEST_CASE("round_like_codec gives what a block's round trip gives") {
    std::mt19937 rng(17);
    for (int decimals : {0, 1, 2, -1}) {
        std::vector<Sample> samples;
        double v = 10;
        for (int i = 0; i < 400; ++i) {
            v += std::normal_distribution<double>(0, 0.7)(rng);
            double value =
                decimals < 0 ? v : std::round(v * std::pow(10, decimals)) / std::pow(10, decimals);
            samples.push_back({i * 9'000 + static_cast<int>(rng() % 40), value});
        }
        for (std::size_t n : {std::size_t{3}, samples.size()}) {
            auto buckets = bucketize(samples.data(), n, 60'000);
            std::vector<RollupBucket> decoded;
            REQUIRE(decode_rollups(encode_rollups(buckets, 0, 60'000), 0, 60'000, decoded).is_ok());
            round_like_codec(buckets);
            REQUIRE(decoded.size() == buckets.size());
            for (std::size_t i = 0; i < buckets.size(); ++i) {
                INFO(decimals << " decimals, bucket " << i);
                CHECK(std::bit_cast<std::uint64_t>(decoded[i].sum) ==
                      std::bit_cast<std::uint64_t>(buckets[i].sum));
                CHECK(std::bit_cast<std::uint64_t>(decoded[i].min) ==
                      std::bit_cast<std::uint64_t>(buckets[i].min));
                CHECK(std::bit_cast<std::uint64_t>(decoded[i].last) ==
                      std::bit_cast<std::uint64_t>(buckets[i].last));
                CHECK(decoded[i].count == buckets[i].count);
            }
        }
    }
}
