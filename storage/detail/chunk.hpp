// Compressed runs of one series' points, the on-disk form of raw data: delta-of-delta
// timestamps and, when the values are decimals of limited precision (as sensor readings are),
// delta-coded integer mantissas; otherwise raw doubles.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "storage/status.hpp"

namespace citygate::storage::detail {

struct Sample {
    std::int64_t ts = 0;
    double value = 0;
};

struct ChunkHeader {
    std::size_t count = 0;
    std::int64_t first_ts = 0;
    std::int64_t last_ts = 0;
};

// `samples` must be sorted by time without duplicates and non-empty.
std::string encode_chunk(const Sample* samples, std::size_t count);

// Reads only the header: enough to know the time range without decoding points.
[[nodiscard]] Status decode_chunk_header(std::string_view data, ChunkHeader& header);

// Appends the chunk's points to `out`.
[[nodiscard]] Status decode_chunk(std::string_view data, std::vector<Sample>& out);

// Decimal coding, shared with the rollup codec: `v` is exactly (bit for bit) m / 10^k for an
// integer m. Most sensor readings are (a thermometer reports 21.37, not 21.3700000000000045).
constexpr int kMaxDecimalExponent = 9;
double pow10(int k);
bool decimal_mantissa(double v, int k, std::int64_t& mantissa);

// Grows `k` until every value passed so far is a decimal at exponent k; -1 once none fits.
class DecimalExponent {
  public:
    void add(double v);
    int exponent() const { return k_; }

  private:
    int k_ = 0;
};

}  // namespace citygate::storage::detail
