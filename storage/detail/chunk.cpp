// Chunk codec. Layout: varint count, svarint first_ts, varint (last_ts - first_ts), byte mode;
// timestamps as a delta then delta-of-deltas (regular sensors cost one byte, which RocksDB's
// block compression then squeezes further); values as mode 0: byte k, svarint deltas of the
// mantissas m = v * 10^k, or mode 1: raw little-endian doubles.
#include "storage/detail/chunk.hpp"

#include <bit>
#include <cmath>

#include "storage/detail/coding.hpp"

namespace citygate::storage::detail {
namespace {

enum : std::uint8_t { kModeDecimal = 0, kModeRaw = 1 };

Status corrupt(const char* what) {
    return Status::error(Status::Code::corruption, std::string("chunk: ") + what);
}

}  // namespace

double pow10(int k) {
    static constexpr double table[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};
    return table[k];
}

bool decimal_mantissa(double v, int k, std::int64_t& mantissa) {
    double scaled = v * pow10(k);
    // 2^53: beyond it not every integer is a double, and llround would be undefined near 2^63.
    if (!(std::fabs(scaled) < 9007199254740992.0)) return false;
    mantissa = std::llround(scaled);
    // Bit equality, not ==: -0.0 must not come back as +0.0.
    return std::bit_cast<std::uint64_t>(static_cast<double>(mantissa) / pow10(k)) ==
           std::bit_cast<std::uint64_t>(v);
}

void DecimalExponent::add(double v) {
    std::int64_t m;
    while (k_ >= 0 && !decimal_mantissa(v, k_, m)) {
        k_ = k_ < kMaxDecimalExponent ? k_ + 1 : -1;
    }
}

std::string encode_chunk(const Sample* samples, std::size_t count) {
    std::string out;
    out.reserve(16 + count * 3);
    put_varint(out, count);
    put_svarint(out, samples[0].ts);
    put_varint(out, static_cast<std::uint64_t>(samples[count - 1].ts - samples[0].ts));

    DecimalExponent exponent;
    for (std::size_t i = 0; i < count; ++i)
        exponent.add(samples[i].value);
    int k = exponent.exponent();
    out.push_back(static_cast<char>(k >= 0 ? kModeDecimal : kModeRaw));

    std::int64_t prev_delta = 0;
    for (std::size_t i = 1; i < count; ++i) {
        std::int64_t delta = samples[i].ts - samples[i - 1].ts;
        if (i == 1) {
            put_varint(out, static_cast<std::uint64_t>(delta));
        } else {
            put_svarint(out, delta - prev_delta);
        }
        prev_delta = delta;
    }
    if (k >= 0) {
        out.push_back(static_cast<char>(k));
        std::int64_t prev = 0;
        for (std::size_t i = 0; i < count; ++i) {
            std::int64_t m = 0;
            (void)decimal_mantissa(samples[i].value, k, m);  // known to succeed for this k
            put_svarint(out, m - prev);
            prev = m;
        }
    } else {
        for (std::size_t i = 0; i < count; ++i)
            put_double(out, samples[i].value);
    }
    return out;
}

Status decode_chunk_header(std::string_view data, ChunkHeader& header) {
    Reader in(data);
    std::uint64_t count, span;
    std::int64_t first;
    if (!in.varint(count) || !in.svarint(first) || !in.varint(span) || count == 0) {
        return corrupt("bad header");
    }
    header.count = count;
    header.first_ts = first;
    header.last_ts = first + static_cast<std::int64_t>(span);
    return Status::ok();
}

Status decode_chunk(std::string_view data, std::vector<Sample>& out) {
    Reader in(data);
    std::uint64_t count, span;
    std::int64_t first;
    std::uint8_t mode;
    if (!in.varint(count) || !in.svarint(first) || !in.varint(span) || !in.byte(mode) ||
        count == 0 || count > data.size() * 8) {
        return corrupt("bad header");
    }
    std::size_t base = out.size();
    out.resize(base + count);
    Sample* s = out.data() + base;
    s[0].ts = first;
    std::int64_t delta = 0;
    for (std::size_t i = 1; i < count; ++i) {
        if (i == 1) {
            std::uint64_t d;
            if (!in.varint(d)) return corrupt("bad timestamp");
            delta = static_cast<std::int64_t>(d);
        } else {
            std::int64_t dod;
            if (!in.svarint(dod)) return corrupt("bad timestamp");
            delta += dod;
        }
        s[i].ts = s[i - 1].ts + delta;
    }
    if (mode == kModeDecimal) {
        std::uint8_t k;
        if (!in.byte(k) || k > kMaxDecimalExponent) return corrupt("bad exponent");
        double scale = pow10(k);
        std::int64_t m = 0;
        for (std::size_t i = 0; i < count; ++i) {
            std::int64_t d;
            if (!in.svarint(d)) return corrupt("bad value");
            m += d;
            s[i].value = static_cast<double>(m) / scale;
        }
    } else if (mode == kModeRaw) {
        for (std::size_t i = 0; i < count; ++i) {
            if (!in.f64(s[i].value)) return corrupt("bad value");
        }
    } else {
        return corrupt("unknown value mode");
    }
    if (!in.done()) return corrupt("trailing bytes");
    return Status::ok();
}

}  // namespace citygate::storage::detail
