// Rollup block codec. Per bucket: varint bucket-index delta, varint count, then either decimal
// mantissas relative to the bucket's first value (min, max, last and sum sit close to it, so they
// take a byte or two) or five raw doubles when the values are not decimals.
#include "storage/detail/rollup.hpp"

#include <cmath>

#include "storage/detail/coding.hpp"
#include "storage/detail/keys.hpp"

namespace citygate::storage::detail {
namespace {

enum : std::uint8_t { kModeDecimal = 0, kModeRaw = 1 };

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

std::string encode_rollups(const std::vector<RollupBucket>& buckets, std::int64_t block_start,
                           std::int64_t width) {
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
    std::string out;
    out.reserve(8 + buckets.size() * 12);
    put_varint(out, buckets.size());
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
    if (!in.varint(n) || !in.byte(mode) || n > data.size()) return corrupt();
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
