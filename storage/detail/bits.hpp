// Bit-level coding for chunks and rollup blocks: a bit writer, a bounds-checked bit reader, and
// Rice codes (a unary quotient, then k low bits) for runs of small non-negative integers, with k
// chosen per run for the fewest bits. Sensor data is mostly small residuals (a timestamp's
// distance from the series' period, a reading's change), for which a Rice code with the best k
// is within a few percent of the entropy, where a byte-aligned varint spends at least 8 bits.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace citygate::storage::detail {

class BitWriter {
  public:
    explicit BitWriter(std::string& out) : out_(out) {}
    ~BitWriter() { finish(); }
    BitWriter(const BitWriter&) = delete;
    BitWriter& operator=(const BitWriter&) = delete;

    // The low `width` bits of `v` (width <= 64), most significant first.
    void put(std::uint64_t v, int width) {
        while (width > 0) {
            int take = width < 64 - used_ ? width : 64 - used_;
            std::uint64_t part =
                (width == 64 ? v : v & ((std::uint64_t{1} << width) - 1)) >> (width - take);
            acc_ = take == 64 ? part : (acc_ << take) | part;
            used_ += take;
            width -= take;
            if (used_ == 64) spill(64);
        }
    }
    // Pads the last byte with zero bits. Writing may go on after it, byte aligned.
    void finish() {
        if (used_ > 0) spill(used_);
    }

  private:
    void spill(int bits) {
        std::uint64_t v = acc_ << (64 - bits);
        for (int i = 0; i < (bits + 7) / 8; ++i)
            out_.push_back(static_cast<char>(v >> (56 - 8 * i)));
        acc_ = 0;
        used_ = 0;
    }

    std::string& out_;
    std::uint64_t acc_ = 0;
    int used_ = 0;
};

// Every read fails (returns false) at the end of the data instead of reading past it.
class BitReader {
  public:
    explicit BitReader(std::string_view data)
        : p_(reinterpret_cast<const unsigned char*>(data.data())), bits_left_(data.size() * 8) {}

    bool get(int width, std::uint64_t& v) {
        if (static_cast<std::size_t>(width) > bits_left_) return false;
        v = 0;
        while (width > 0) {
            if (avail_ == 0) refill();
            int take = width < avail_ ? width : avail_;
            v = (take == 64 ? 0 : v << take) | (buf_ >> (64 - take));
            buf_ = take == 64 ? 0 : buf_ << take;
            avail_ -= take;
            width -= take;
            bits_left_ -= static_cast<std::size_t>(take);
        }
        return true;
    }
    // Counts one bits up to the first zero (consumed) or `limit` ones (then no zero is read).
    bool ones(int limit, int& count) {
        count = 0;
        while (count < limit) {
            if (bits_left_ == 0) return false;
            if (avail_ == 0) refill();
            int run = std::countl_one(buf_);
            if (run > avail_) run = avail_;
            if (run > limit - count) run = limit - count;
            buf_ <<= run;
            avail_ -= run;
            bits_left_ -= static_cast<std::size_t>(run);
            count += run;
            if (count == limit) return true;
            if (avail_ > 0) {  // the run stopped at a zero bit: consume it
                buf_ <<= 1;
                --avail_;
                --bits_left_;
                return true;
            }
        }
        return true;
    }
    // Bytes consumed, counting a partly read last byte whole.
    std::size_t bytes_used(std::size_t total) const { return total - bits_left_ / 8; }

  private:
    void refill() {
        buf_ = 0;
        int bytes = 0;
        std::size_t whole = (bits_left_ + static_cast<std::size_t>(avail_)) / 8;
        while (bytes < 8 && static_cast<std::size_t>(bytes) < whole) {
            buf_ |= static_cast<std::uint64_t>(p_[bytes]) << (56 - 8 * bytes);
            ++bytes;
        }
        p_ += bytes;
        avail_ = 8 * bytes;
    }

    const unsigned char* p_;
    std::size_t bits_left_;  // bits not yet returned
    std::uint64_t buf_ = 0;  // bits taken from p_ not yet returned, left aligned
    int avail_ = 0;
};

// A Rice-coded run: 5 bits of k, then per value its quotient v >> k in unary (ones closed by a
// zero) and its k low bits; a quotient of kRiceEscape or more is kRiceEscape ones and the value
// in 64 bits, so one outlier costs 88 bits, not millions.
constexpr int kRiceEscape = 24;
constexpr int kRiceMaxK = 31;

// Bits of `values` as a Rice run with parameter k, its 5 bits of k included.
inline std::uint64_t rice_size(std::span<const std::uint64_t> values, int k) {
    std::uint64_t bits = 5;
    for (std::uint64_t v : values) {
        std::uint64_t q = v >> k;
        bits += q >= kRiceEscape ? kRiceEscape + 64 : q + 1 + static_cast<std::uint64_t>(k);
    }
    return bits;
}

struct RiceChoice {
    int k = 0;
    std::uint64_t bits = 0;
};

// The k that codes `values` in the fewest bits, and that many bits. Trying every k costs 32
// passes over the run (most of the head flush's chunk encoding went there). The cost falls
// towards a minimum near the k of the values' median bit width and rises past it; escaped
// outliers only add small bumps, so a long run starts there and walks downhill, a few steps
// past the last gain (about eight passes). A short run, where a few outliers can outweigh the
// rest, tries every k.
inline RiceChoice rice_choice(std::span<const std::uint64_t> values) {
    constexpr std::size_t every_k_up_to = 32;
    RiceChoice best{0, rice_size(values, 0)};
    if (values.size() <= every_k_up_to) {
        for (int k = 1; k <= kRiceMaxK; ++k) {
            std::uint64_t bits = rice_size(values, k);
            if (bits < best.bits) best = {k, bits};
        }
        return best;
    }
    std::size_t widths[65] = {};
    for (std::uint64_t v : values)
        ++widths[std::bit_width(v)];
    int median = 0;
    for (std::size_t seen = 0; seen + widths[median] <= values.size() / 2; ++median)
        seen += widths[median];
    const int start = std::clamp(median - 1, 0, kRiceMaxK);
    best = {start, rice_size(values, start)};
    for (int step : {-1, 1}) {
        // A few steps past the last gain: outliers leaving the escape make small bumps.
        int patience = 3;
        for (int next = best.k + step; next >= 0 && next <= kRiceMaxK && patience > 0;
             next += step) {
            std::uint64_t bits = rice_size(values, next);
            // Ties go to the smaller k, as trying every k from 0 up chose.
            if (step < 0 ? bits <= best.bits : bits < best.bits) {
                best = {next, bits};
                patience = 3;
            } else {
                --patience;
            }
        }
    }
    return best;
}

inline int rice_parameter(std::span<const std::uint64_t> values) {
    return rice_choice(values).k;
}

// A Rice run of `values` with parameter k (rice_choice's).
inline void put_rice(BitWriter& out, std::span<const std::uint64_t> values, int k) {
    out.put(static_cast<std::uint64_t>(k), 5);
    for (std::uint64_t v : values) {
        std::uint64_t q = v >> k;
        if (q >= kRiceEscape) {
            out.put((std::uint64_t{1} << kRiceEscape) - 1, kRiceEscape);
            out.put(v, 64);
            continue;
        }
        // q ones then a zero, then the k low bits.
        out.put(((std::uint64_t{1} << q) - 1) << 1, static_cast<int>(q) + 1);
        if (k > 0) out.put(v, k);
    }
}

inline void put_rice(BitWriter& out, std::span<const std::uint64_t> values) {
    put_rice(out, values, rice_parameter(values));
}

// Reads `count` values written by put_rice into `out` (count slots), or fails.
inline bool get_rice(BitReader& in, std::size_t count, std::uint64_t* out) {
    std::uint64_t k;
    if (!in.get(5, k)) return false;
    for (std::size_t i = 0; i < count; ++i) {
        int q;
        if (!in.ones(kRiceEscape, q)) return false;
        if (q == kRiceEscape) {
            if (!in.get(64, out[i])) return false;
            continue;
        }
        std::uint64_t low = 0;
        if (k > 0 && !in.get(static_cast<int>(k), low)) return false;
        out[i] = (static_cast<std::uint64_t>(q) << k) | low;
    }
    return true;
}

}  // namespace citygate::storage::detail
