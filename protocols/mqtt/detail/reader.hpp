// Bounds-checked big-endian reader over one packet's bytes. Every length is checked against the
// end before it is trusted; the first failure sticks and later reads fail too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "protocols/mqtt/error.hpp"
#include "protocols/mqtt/packet.hpp"
#include "protocols/mqtt/validation.hpp"

namespace citygate::mqtt::detail {

class reader {
  public:
    reader(const std::uint8_t* begin, const std::uint8_t* end) noexcept : p_(begin), end_(end) {}
    explicit reader(bytes_view bytes) noexcept
        : reader(bytes.data(), bytes.data() + bytes.size()) {}

    [[nodiscard]] std::size_t remaining() const noexcept {
        return static_cast<std::size_t>(end_ - p_);
    }
    [[nodiscard]] bool empty() const noexcept { return p_ == end_; }
    [[nodiscard]] const std::uint8_t* position() const noexcept { return p_; }
    [[nodiscard]] errc error() const noexcept { return error_; }
    [[nodiscard]] bool ok() const noexcept { return error_ == errc{}; }

    // Records the first error and returns false, so decoders can `return r.fail(...)`.
    bool fail(errc e) noexcept {
        if (error_ == errc{}) error_ = e;
        p_ = end_;
        return false;
    }

    bool u8(std::uint8_t& out) noexcept {
        if (p_ == end_) return fail(errc::truncated);
        out = *p_++;
        return true;
    }

    bool u16(std::uint16_t& out) noexcept {
        if (remaining() < 2) return fail(errc::truncated);
        out = static_cast<std::uint16_t>((p_[0] << 8) | p_[1]);
        p_ += 2;
        return true;
    }

    bool u32(std::uint32_t& out) noexcept {
        if (remaining() < 4) return fail(errc::truncated);
        out = (std::uint32_t{p_[0]} << 24) | (std::uint32_t{p_[1]} << 16) |
              (std::uint32_t{p_[2]} << 8) | std::uint32_t{p_[3]};
        p_ += 4;
        return true;
    }

    // Variable byte integer: at most 4 bytes, minimally encoded (MQTT-1.5.5-1).
    bool vbi(std::uint32_t& out) noexcept {
        std::uint32_t value = 0;
        for (int i = 0; i < 4; ++i) {
            if (p_ == end_) return fail(errc::truncated);
            const std::uint8_t b = *p_++;
            value |= std::uint32_t{b & 0x7Fu} << (7 * i);
            if ((b & 0x80) == 0) {
                if (b == 0 && i > 0) return fail(errc::malformed_variable_byte_integer);
                out = value;
                return true;
            }
        }
        return fail(errc::malformed_variable_byte_integer);
    }

    bool bytes(std::size_t n, bytes_view& out) noexcept {
        if (remaining() < n) return fail(errc::truncated);
        out = bytes_view(p_, n);
        p_ += n;
        return true;
    }

    // Two-byte length then that many bytes.
    bool binary(bytes_view& out) noexcept {
        std::uint16_t n;
        return u16(n) && bytes(n, out);
    }

    // Two-byte length then UTF-8 without U+0000 (MQTT-1.5.4-1, MQTT-1.5.4-2).
    bool utf8(std::string_view& out) noexcept {
        bytes_view raw;
        if (!binary(raw)) return false;
        out = std::string_view(reinterpret_cast<const char*>(raw.data()), raw.size());
        if (!valid_utf8(out)) return fail(errc::malformed_utf8);
        return true;
    }

    // Splits off the next n bytes as their own reader (a property block).
    bool sub(std::size_t n, reader& out) noexcept {
        if (remaining() < n) return fail(errc::truncated);
        out = reader(p_, p_ + n);
        p_ += n;
        return true;
    }

  private:
    const std::uint8_t* p_;
    const std::uint8_t* end_;
    errc error_{};
};

}  // namespace citygate::mqtt::detail
