// Rollup block codec. Header: varint bucket count n, byte mode.
// Mode 2 (decimals, blocks of 8 buckets or more, written since the packed codec): byte k, varint
// base count (the median), svarint first mantissa of the first bucket, then a bit stream of seven
// Rice runs of n values each, one per column, each with its own parameter: index steps (index -
// previous - 1), zigzag (count - base), zigzag (first - previous bucket's last), first - min, max -
// first, zigzag (last - first), zigzag (2 sum - count (first + last)) (the sum against the
// trapezoid of its ends, modulo 2^64). A column-wise Rice code spends ~3 bytes a 1-minute bucket of
// 6 readings where mode 0's varints spent ~6; ZSTD took mode 0 to ~5 and does little for either.
// Mode 0 (older blocks, still read): per bucket varint index delta, varint count, svarint first -
// previous last, varint first - min, varint max - first, svarint last - first, svarint sum -
// count * first. Mode 1 (values not decimals): per bucket varint index delta, varint count, then
// sum, min, max, first, last as raw doubles.
#include "storage/detail/rollup.hpp"

#include <algorithm>
#include <array>
#include <cmath>

#include "storage/detail/bits.hpp"
#include "storage/detail/coding.hpp"
#include "storage/detail/keys.hpp"

namespace citygate::storage::detail {
namespace {

enum : std::uint8_t { kModeDecimal = 0, kModeRaw = 1, kModePacked = 2 };
constexpr int kColumns = 7;
constexpr std::size_t kMinPackedBuckets = 8;

// Sums of decimals are not exactly decimal in binary floating point (0.1 + 0.2), so a sum is
// stored as the nearest mantissa when it is within rounding noise of one: the decoded sum is
// the exact decimal sum, which is at least as accurate as the accumulated double.
bool sum_mantissa(double sum, int k, std::int64_t& m) {
    double scaled = sum * pow10(k);
    if (!(std::fabs(scaled) < 9007199254740992.0)) return false;
    m = std::llround(scaled);
    return std::fabs(scaled - static_cast<double>(m)) < 1e-3;
}

Status corrupt() {
    return Status::error(Status::Code::corruption, "rollup block: corrupt");
}

std::uint64_t wrap(std::int64_t v) {
    return static_cast<std::uint64_t>(v);
}

void encode_packed(const std::vector<RollupBucket>& buckets, std::int64_t block_start,
                   std::int64_t width, int k, std::string& out) {
    const std::size_t n = buckets.size();
    std::vector<std::uint64_t> counts(n);
    for (std::size_t i = 0; i < n; ++i)
        counts[i] = buckets[i].count;
    auto middle = counts.begin() + static_cast<std::ptrdiff_t>(n / 2);
    std::nth_element(counts.begin(), middle, counts.end());
    const std::uint64_t base = *middle;
    out.push_back(static_cast<char>(k));
    put_varint(out, base);
    std::array<std::vector<std::uint64_t>, kColumns> col;
    for (auto& c : col)
        c.resize(n);
    std::int64_t prev_index = -1, prev_last = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const auto& b = buckets[i];
        std::int64_t first = 0, min = 0, max = 0, last = 0, sum = 0;
        (void)decimal_mantissa(b.first, k, first);  // known to succeed for this k
        (void)decimal_mantissa(b.min, k, min);
        (void)decimal_mantissa(b.max, k, max);
        (void)decimal_mantissa(b.last, k, last);
        (void)sum_mantissa(b.sum, k, sum);
        if (i == 0) {
            put_svarint(out, first);
            prev_last = first;
        }
        std::int64_t index = (b.start - block_start) / width;
        col[0][i] = static_cast<std::uint64_t>(index - prev_index - 1);
        col[1][i] = zigzag(static_cast<std::int64_t>(b.count - base));
        col[2][i] = zigzag(first - prev_last);
        col[3][i] = static_cast<std::uint64_t>(first - min);
        col[4][i] = static_cast<std::uint64_t>(max - first);
        col[5][i] = zigzag(last - first);
        col[6][i] =
            zigzag(static_cast<std::int64_t>(2 * wrap(sum) - b.count * (wrap(first) + wrap(last))));
        prev_index = index;
        prev_last = last;
    }
    BitWriter bits(out);
    for (const auto& c : col)
        put_rice(bits, c);
}

Status decode_packed(Reader& in, std::string_view data, std::size_t n, std::int64_t block_start,
                     std::int64_t width, std::vector<RollupBucket>& out) {
    std::uint8_t k;
    std::uint64_t base;
    std::int64_t first0;
    // Every bucket costs at least one bit per column.
    if (!in.byte(k) || k > kMaxDecimalExponent || !in.varint(base) || !in.svarint(first0) ||
        n > data.size() * 8 / kColumns) {
        return corrupt();
    }
    std::array<std::vector<std::uint64_t>, kColumns> col;
    std::string_view rest = in.rest();
    BitReader bits(rest);
    for (auto& c : col) {
        c.resize(n);
        if (!get_rice(bits, n, c.data())) return corrupt();
    }
    in.skip(bits.bytes_used(rest.size()));
    const double scale = pow10(k);
    // Wrapping arithmetic: a corrupt block must not be undefined behaviour, only wrong buckets.
    std::uint64_t index = ~std::uint64_t{0}, prev_last = wrap(first0);
    const std::size_t base_size = out.size();
    out.reserve(base_size + n);
    for (std::size_t i = 0; i < n; ++i) {
        RollupBucket b;
        index += col[0][i] + 1;
        b.start = static_cast<std::int64_t>(wrap(block_start) +
                                            index * static_cast<std::uint64_t>(width));
        b.count = base + static_cast<std::uint64_t>(unzigzag(col[1][i]));
        const std::uint64_t first = prev_last + wrap(unzigzag(col[2][i]));
        const std::uint64_t last = first + wrap(unzigzag(col[5][i]));
        const std::uint64_t twice_sum = wrap(unzigzag(col[6][i])) + b.count * (first + last);
        auto value = [&](std::uint64_t m) {
            return static_cast<double>(static_cast<std::int64_t>(m)) / scale;
        };
        b.first = value(first);
        b.min = value(first - col[3][i]);
        b.max = value(first + col[4][i]);
        b.last = value(last);
        b.sum = static_cast<double>(static_cast<std::int64_t>(twice_sum) / 2) / scale;
        prev_last = last;
        out.push_back(b);
    }
    return Status::ok();
}

}  // namespace

std::vector<RollupBucket> bucketize(const Sample* samples, std::size_t count, std::int64_t width) {
    std::vector<RollupBucket> out;
    for (std::size_t i = 0; i < count; ++i) {
        std::int64_t start = floor_to(samples[i].ts, width);
        if (out.empty() || out.back().start != start) {
            out.emplace_back();
            out.back().start = start;
        }
        out.back().add(samples[i].value);
    }
    return out;
}

namespace {

// The decimal exponent a block is stored at, -1 for raw doubles.
int block_exponent(const std::vector<RollupBucket>& buckets) {
    DecimalExponent exponent;
    for (const auto& b : buckets) {
        exponent.add(b.min);
        exponent.add(b.max);
        exponent.add(b.first);
        exponent.add(b.last);
    }
    int k = exponent.exponent();
    std::int64_t m = 0;
    for (const auto& b : buckets) {
        if (k >= 0 && !sum_mantissa(b.sum, k, m)) k = -1;
    }
    return k;
}

}  // namespace

void round_like_codec(std::vector<RollupBucket>& buckets) {
    const int k = block_exponent(buckets);
    if (k < 0) return;
    const double scale = pow10(k);
    for (auto& b : buckets) {
        std::int64_t m = 0;
        (void)sum_mantissa(b.sum, k, m);  // known to succeed for this k
        b.sum = static_cast<double>(m) / scale;
    }
}

std::string encode_rollups(const std::vector<RollupBucket>& buckets, std::int64_t block_start,
                           std::int64_t width) {
    const int k = block_exponent(buckets);
    std::string out;
    out.reserve(8 + buckets.size() * 12);
    put_varint(out, buckets.size());
    // Seven Rice parameters cost more than they save on a block of a few buckets (a window's
    // 1-hour block of a short-lived series): those stay mode 0.
    if (k >= 0 && buckets.size() >= kMinPackedBuckets) {
        out.push_back(static_cast<char>(kModePacked));
        encode_packed(buckets, block_start, width, k, out);
        return out;
    }
    out.push_back(static_cast<char>(k >= 0 ? kModeDecimal : kModeRaw));
    if (k >= 0) out.push_back(static_cast<char>(k));
    std::int64_t prev_index = -1;
    std::int64_t prev_last = 0;
    for (const auto& b : buckets) {
        std::int64_t index = (b.start - block_start) / width;
        put_varint(out, static_cast<std::uint64_t>(index - prev_index));
        prev_index = index;
        put_varint(out, b.count);
        if (k < 0) {
            for (double v : {b.sum, b.min, b.max, b.first, b.last})
                put_double(out, v);
            continue;
        }
        std::int64_t first = 0, min = 0, max = 0, last = 0, sum = 0;
        (void)decimal_mantissa(b.first, k, first);  // known to succeed for this k
        (void)decimal_mantissa(b.min, k, min);
        (void)decimal_mantissa(b.max, k, max);
        (void)decimal_mantissa(b.last, k, last);
        (void)sum_mantissa(b.sum, k, sum);
        put_svarint(out, first - prev_last);
        put_varint(out, static_cast<std::uint64_t>(first - min));
        put_varint(out, static_cast<std::uint64_t>(max - first));
        put_svarint(out, last - first);
        put_svarint(out, sum - static_cast<std::int64_t>(b.count) * first);
        prev_last = last;
    }
    return out;
}

Status decode_rollups(std::string_view data, std::int64_t block_start, std::int64_t width,
                      std::vector<RollupBucket>& out) {
    Reader in(data);
    std::uint64_t n;
    std::uint8_t mode, k = 0;
    if (!in.varint(n) || !in.byte(mode) || n > data.size() * 8) return corrupt();
    if (mode == kModePacked) {
        const std::size_t base = out.size();
        Status status = decode_packed(in, data, n, block_start, width, out);
        if (status.is_ok() && !in.done()) status = corrupt();
        if (!status.is_ok()) out.resize(base);
        return status;
    }
    if (n > data.size()) return corrupt();
    if (mode == kModeDecimal && (!in.byte(k) || k > kMaxDecimalExponent)) return corrupt();
    if (mode != kModeDecimal && mode != kModeRaw) return corrupt();
    double scale = pow10(k);
    std::int64_t index = -1;
    std::int64_t prev_last = 0;
    for (std::uint64_t i = 0; i < n; ++i) {
        RollupBucket b;
        std::uint64_t step;
        if (!in.varint(step) || !in.varint(b.count)) return corrupt();
        index += static_cast<std::int64_t>(step);
        b.start = block_start + index * width;
        if (mode == kModeRaw) {
            if (!in.f64(b.sum) || !in.f64(b.min) || !in.f64(b.max) || !in.f64(b.first) ||
                !in.f64(b.last)) {
                return corrupt();
            }
        } else {
            std::int64_t first_delta, last_delta, sum_delta;
            std::uint64_t below, above;
            if (!in.svarint(first_delta) || !in.varint(below) || !in.varint(above) ||
                !in.svarint(last_delta) || !in.svarint(sum_delta)) {
                return corrupt();
            }
            std::int64_t first = prev_last + first_delta;
            std::int64_t last = first + last_delta;
            prev_last = last;
            b.first = static_cast<double>(first) / scale;
            b.min = static_cast<double>(first - static_cast<std::int64_t>(below)) / scale;
            b.max = static_cast<double>(first + static_cast<std::int64_t>(above)) / scale;
            b.last = static_cast<double>(last) / scale;
            b.sum =
                static_cast<double>(static_cast<std::int64_t>(b.count) * first + sum_delta) / scale;
        }
        out.push_back(b);
    }
    if (!in.done()) return corrupt();
    return Status::ok();
}

void merge_buckets(std::vector<RollupBucket>& base, const std::vector<RollupBucket>& update,
                   bool replace) {
    std::vector<RollupBucket> out;
    out.reserve(base.size() + update.size());
    std::size_t i = 0, j = 0;
    while (i < base.size() || j < update.size()) {
        if (j == update.size() || (i < base.size() && base[i].start < update[j].start)) {
            out.push_back(base[i++]);
        } else if (i == base.size() || update[j].start < base[i].start) {
            out.push_back(update[j++]);
        } else {
            out.push_back(base[i++]);
            if (replace) {
                out.back() = update[j];
            } else {
                out.back().merge_later(update[j]);
            }
            ++j;
        }
    }
    base = std::move(out);
}

}  // namespace citygate::storage::detail
