// Appends big-endian MQTT fields to a byte vector; used by every packet encoder.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "protocols/mqtt/packet.hpp"

namespace citygate::mqtt::detail {

inline constexpr std::uint32_t max_vbi = 268'435'455;

inline std::size_t vbi_size(std::uint32_t v) noexcept {
    return v < 128 ? 1 : v < 16'384 ? 2 : v < 2'097'152 ? 3 : 4;
}

// Writes v as a variable byte integer to `out` (at least 4 bytes), returns the length.
inline std::size_t encode_vbi(std::uint32_t v, std::uint8_t* out) noexcept {
    std::size_t n = 0;
    do {
        std::uint8_t b = v & 0x7F;
        v >>= 7;
        if (v != 0) b |= 0x80;
        out[n++] = b;
    } while (v != 0 && n < 4);
    return n;
}

class writer {
  public:
    explicit writer(std::vector<std::uint8_t>& out) noexcept : out_(out) {}

    void u8(std::uint8_t v) { out_.push_back(v); }
    void u16(std::uint16_t v) {
        out_.push_back(static_cast<std::uint8_t>(v >> 8));
        out_.push_back(static_cast<std::uint8_t>(v));
    }
    void u32(std::uint32_t v) {
        for (int shift = 24; shift >= 0; shift -= 8)
            out_.push_back(static_cast<std::uint8_t>(v >> shift));
    }
    void vbi(std::uint32_t v) {
        std::uint8_t tmp[4];
        out_.insert(out_.end(), tmp, tmp + encode_vbi(v, tmp));
    }
    void raw(bytes_view b) { out_.insert(out_.end(), b.begin(), b.end()); }
    // Length-prefixed field; the caller has checked the length fits in 16 bits.
    void binary(bytes_view b) {
        u16(static_cast<std::uint16_t>(b.size()));
        raw(b);
    }
    void utf8(std::string_view s) {
        binary(bytes_view(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()));
    }

    [[nodiscard]] std::size_t size() const noexcept { return out_.size(); }
    std::vector<std::uint8_t>& buffer() noexcept { return out_; }

  private:
    std::vector<std::uint8_t>& out_;
};

}  // namespace citygate::mqtt::detail
