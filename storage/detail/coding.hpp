// Byte-level encodings shared by keys, the batch log and chunks: big-endian fixed integers (so
// RocksDB's bytewise order is numeric order) and LEB128 varints with zigzag for signed deltas.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace citygate::storage::detail {

inline void put_u64_be(std::string& out, std::uint64_t v) {
    char buf[8];
    for (int i = 7; i >= 0; --i) {
        buf[i] = static_cast<char>(v & 0xff);
        v >>= 8;
    }
    out.append(buf, 8);
}

inline std::uint64_t get_u64_be(const char* p) {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i)
        v = (v << 8) | static_cast<unsigned char>(p[i]);
    return v;
}

// Timestamps are signed; flipping the sign bit makes big-endian byte order match numeric order
// for negative values too.
inline void put_i64_be(std::string& out, std::int64_t v) {
    put_u64_be(out, static_cast<std::uint64_t>(v) ^ (std::uint64_t{1} << 63));
}
inline std::int64_t get_i64_be(const char* p) {
    return static_cast<std::int64_t>(get_u64_be(p) ^ (std::uint64_t{1} << 63));
}

inline std::uint64_t zigzag(std::int64_t v) {
    return (static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63);
}
inline std::int64_t unzigzag(std::uint64_t v) {
    return static_cast<std::int64_t>(v >> 1) ^ -static_cast<std::int64_t>(v & 1);
}

inline void put_varint(std::string& out, std::uint64_t v) {
    char buf[10];
    int n = 0;
    while (v >= 0x80) {
        buf[n++] = static_cast<char>(v | 0x80);
        v >>= 7;
    }
    buf[n++] = static_cast<char>(v);
    out.append(buf, static_cast<std::size_t>(n));
}
inline void put_svarint(std::string& out, std::int64_t v) {
    put_varint(out, zigzag(v));
}

inline void put_double(std::string& out, double v) {
    std::uint64_t bits = std::bit_cast<std::uint64_t>(v);
    char buf[8];
    std::memcpy(buf, &bits, 8);  // little-endian hosts only; the whole engine assumes x86/arm64 LE
    out.append(buf, 8);
}

// A bounds-checked reader: every get fails (returns false) instead of reading past the end, so a
// corrupt value becomes a corruption status, never a crash.
class Reader {
  public:
    explicit Reader(std::string_view data) : p_(data.data()), end_(data.data() + data.size()) {}

    bool varint(std::uint64_t& v) {
        v = 0;
        for (int shift = 0; shift < 64 && p_ < end_; shift += 7) {
            auto byte = static_cast<unsigned char>(*p_++);
            v |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
            if ((byte & 0x80) == 0) return true;
        }
        return false;
    }
    bool svarint(std::int64_t& v) {
        std::uint64_t u;
        if (!varint(u)) return false;
        v = unzigzag(u);
        return true;
    }
    bool f64(double& v) {
        if (end_ - p_ < 8) return false;
        std::uint64_t bits;
        std::memcpy(&bits, p_, 8);
        p_ += 8;
        v = std::bit_cast<double>(bits);
        return true;
    }
    bool byte(std::uint8_t& v) {
        if (p_ >= end_) return false;
        v = static_cast<std::uint8_t>(*p_++);
        return true;
    }
    bool done() const { return p_ == end_; }
    // What is left, for a bit reader; skip() moves past what it used.
    std::string_view rest() const { return {p_, static_cast<std::size_t>(end_ - p_)}; }
    void skip(std::size_t bytes) { p_ += bytes < rest().size() ? bytes : rest().size(); }

  private:
    const char* p_;
    const char* end_;
};

}  // namespace citygate::storage::detail
