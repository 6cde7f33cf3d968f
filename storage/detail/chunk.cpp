// Chunk codec. Layout: varint count, svarint first_ts, varint (last_ts - first_ts) modulo 2^64,
// byte mode. Mode 2 ("packed", every chunk of two or more points):
//   svarint period P (the median delta), byte k (decimal exponent, or 0xff: raw doubles),
//   then a bit stream: a Rice run of zigzag(delta_i - P) for the n-1 deltas (a device reporting
//   every 10 s with its clock and network jitter costs about 6 bits a timestamp, where
//   delta-of-delta doubles the jitter's spread), and for decimals a byte-aligned svarint first
//   mantissa, a predictor bit (0: mantissa deltas, 1: delta-of-deltas, whichever is smaller) and
//   a Rice run of their zigzags; raw doubles follow the bit stream as 8-byte little-endian.
// Modes 0 and 1 (chunks of one point, and older chunks of any size, still read): timestamps as a
// varint delta then svarint delta-of-deltas; mode 0: byte k, svarint deltas of the mantissas
// m = v * 10^k; mode 1: raw little-endian doubles.
#include "storage/detail/chunk.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

#include "storage/detail/bits.hpp"
#include "storage/detail/coding.hpp"

namespace citygate::storage::detail {
namespace {

enum : std::uint8_t { kModeDecimal = 0, kModeRaw = 1, kModePacked = 2 };
constexpr std::uint8_t kPackedRaw = 0xff;  // mode 2's exponent byte for raw doubles

Status corrupt(const char* what) {
    return Status::error(Status::Code::corruption, std::string("chunk: ") + what);
}

std::int64_t header_last(std::int64_t first, std::uint64_t span) {
    return static_cast<std::int64_t>(static_cast<std::uint64_t>(first) + span);
}

// b - a modulo 2^64: a chunk may span more than INT64_MAX (from INT64_MIN to INT64_MAX), where
// signed subtraction would be undefined; the decoder adds back with the same wrapping.
std::int64_t wrapping_delta(std::int64_t a, std::int64_t b) {
    return static_cast<std::int64_t>(static_cast<std::uint64_t>(b) - static_cast<std::uint64_t>(a));
}

std::int64_t median_delta(const Sample* samples, std::size_t count) {
    std::vector<std::int64_t> deltas(count - 1);
    for (std::size_t i = 1; i < count; ++i)
        deltas[i - 1] = wrapping_delta(samples[i - 1].ts, samples[i].ts);
    auto middle = deltas.begin() + static_cast<std::ptrdiff_t>(deltas.size() / 2);
    std::nth_element(deltas.begin(), middle, deltas.end());
    return *middle;
}

void encode_packed(const Sample* samples, std::size_t count, int k, std::string& out) {
    std::int64_t period = median_delta(samples, count);
    put_svarint(out, period);
    out.push_back(static_cast<char>(k >= 0 ? static_cast<std::uint8_t>(k) : kPackedRaw));
    std::vector<std::uint64_t> run(count - 1);
    for (std::size_t i = 1; i < count; ++i)
        run[i - 1] =
            zigzag(wrapping_delta(period, wrapping_delta(samples[i - 1].ts, samples[i].ts)));
    {
        BitWriter bits(out);
        put_rice(bits, run);
    }
    if (k < 0) {
        for (std::size_t i = 0; i < count; ++i)
            put_double(out, samples[i].value);
        return;
    }
    std::vector<std::int64_t> m(count);
    for (std::size_t i = 0; i < count; ++i)
        (void)decimal_mantissa(samples[i].value, k, m[i]);  // known to succeed for this k
    put_svarint(out, m[0]);
    std::vector<std::uint64_t> deltas(count - 1), second(count - 1);
    for (std::size_t i = 1; i < count; ++i) {
        deltas[i - 1] = zigzag(m[i] - m[i - 1]);
        // The first delta as is, then changes of the delta.
        second[i - 1] = i == 1 ? deltas[0] : zigzag((m[i] - m[i - 1]) - (m[i - 1] - m[i - 2]));
    }
    const RiceChoice by_second = rice_choice(second);
    const RiceChoice by_delta = rice_choice(deltas);
    const bool dod = by_second.bits < by_delta.bits;
    BitWriter bits(out);
    bits.put(dod ? 1 : 0, 1);
    put_rice(bits, dod ? second : deltas, dod ? by_second.k : by_delta.k);
}

Status decode_packed(Reader& in, std::size_t count, Sample* s) {
    std::int64_t period;
    std::uint8_t k;
    if (!in.svarint(period) || !in.byte(k) || (k > kMaxDecimalExponent && k != kPackedRaw)) {
        return corrupt("bad packed header");
    }
    std::vector<std::uint64_t> run(count - 1);
    {
        std::string_view rest = in.rest();
        BitReader bits(rest);
        if (!get_rice(bits, count - 1, run.data())) return corrupt("bad timestamp");
        in.skip(bits.bytes_used(rest.size()));
    }
    // Wrapping arithmetic: a corrupt run must not be undefined behaviour, only wrong data.
    for (std::size_t i = 1; i < count; ++i) {
        auto delta =
            static_cast<std::uint64_t>(period) + static_cast<std::uint64_t>(unzigzag(run[i - 1]));
        s[i].ts = static_cast<std::int64_t>(static_cast<std::uint64_t>(s[i - 1].ts) + delta);
    }
    if (k == kPackedRaw) {
        for (std::size_t i = 0; i < count; ++i) {
            if (!in.f64(s[i].value)) return corrupt("bad value");
        }
        return Status::ok();
    }
    std::int64_t first;
    if (!in.svarint(first)) return corrupt("bad value");
    std::string_view rest = in.rest();
    BitReader bits(rest);
    std::uint64_t dod;
    if (!bits.get(1, dod) || !get_rice(bits, count - 1, run.data())) return corrupt("bad value");
    in.skip(bits.bytes_used(rest.size()));
    double scale = pow10(k);
    auto m = static_cast<std::uint64_t>(first);
    std::uint64_t delta = 0;
    s[0].value = static_cast<double>(first) / scale;
    for (std::size_t i = 1; i < count; ++i) {
        auto d = static_cast<std::uint64_t>(unzigzag(run[i - 1]));
        delta = dod && i > 1 ? delta + d : d;
        m += delta;
        s[i].value = static_cast<double>(static_cast<std::int64_t>(m)) / scale;
    }
    return Status::ok();
}

// Modes 0 and 1. Wrapping arithmetic, as in decode_packed.
Status decode_legacy(Reader& in, std::size_t count, std::uint8_t mode, Sample* s) {
    std::uint64_t delta = 0;
    for (std::size_t i = 1; i < count; ++i) {
        if (i == 1) {
            if (!in.varint(delta)) return corrupt("bad timestamp");
        } else {
            std::int64_t dod;
            if (!in.svarint(dod)) return corrupt("bad timestamp");
            delta += static_cast<std::uint64_t>(dod);
        }
        s[i].ts = static_cast<std::int64_t>(static_cast<std::uint64_t>(s[i - 1].ts) + delta);
    }
    if (mode == kModeDecimal) {
        std::uint8_t k;
        if (!in.byte(k) || k > kMaxDecimalExponent) return corrupt("bad exponent");
        double scale = pow10(k);
        std::uint64_t m = 0;
        for (std::size_t i = 0; i < count; ++i) {
            std::int64_t d;
            if (!in.svarint(d)) return corrupt("bad value");
            m += static_cast<std::uint64_t>(d);
            s[i].value = static_cast<double>(static_cast<std::int64_t>(m)) / scale;
        }
        return Status::ok();
    }
    if (mode == kModeRaw) {
        for (std::size_t i = 0; i < count; ++i) {
            if (!in.f64(s[i].value)) return corrupt("bad value");
        }
        return Status::ok();
    }
    return corrupt("unknown value mode");
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
    out.reserve(16 + count * 2);
    put_varint(out, count);
    put_svarint(out, samples[0].ts);
    put_varint(out,
               static_cast<std::uint64_t>(wrapping_delta(samples[0].ts, samples[count - 1].ts)));

    DecimalExponent exponent;
    for (std::size_t i = 0; i < count; ++i)
        exponent.add(samples[i].value);
    int k = exponent.exponent();
    if (count > 1) {
        out.push_back(static_cast<char>(kModePacked));
        encode_packed(samples, count, k, out);
        return out;
    }
    // One point: mode 0 or 1 with no timestamps after the header.
    out.push_back(static_cast<char>(k >= 0 ? kModeDecimal : kModeRaw));
    if (k >= 0) {
        out.push_back(static_cast<char>(k));
        std::int64_t m = 0;
        (void)decimal_mantissa(samples[0].value, k, m);  // known to succeed for this k
        put_svarint(out, m);
    } else {
        put_double(out, samples[0].value);
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
    header.last_ts = header_last(first, span);
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
    if (mode == kModePacked) {
        Status status = count > 1 ? decode_packed(in, count, s) : corrupt("packed single point");
        if (status.is_ok() && !in.done()) status = corrupt("trailing bytes");
        if (status.is_ok() && s[count - 1].ts != header_last(first, span)) {
            status = corrupt("timestamps do not end at the header's last time");
        }
        if (!status.is_ok()) out.resize(base);
        return status;
    }
    Status status = decode_legacy(in, count, mode, s);
    if (status.is_ok() && !in.done()) status = corrupt("trailing bytes");
    if (!status.is_ok()) out.resize(base);
    return status;
}

}  // namespace citygate::storage::detail
