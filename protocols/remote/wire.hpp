// Protocol Buffers wire format, the part prometheus.WriteRequest and ReadRequest need: a reader
// over a byte span that checks every length against the end of its buffer before trusting it,
// and writers that append to a std::string. Zero-copy: strings and nested messages are views
// into the input.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "protocols/remote/error.hpp"

namespace citygate::remote::wire {

enum class WireType : std::uint8_t { varint = 0, fixed64 = 1, length = 2, fixed32 = 5 };

// Reads one message's fields in order. Each call either succeeds or sets error() and leaves the
// reader at its end, so a loop `while (reader.next(field))` stops on both.
class Reader {
  public:
    explicit Reader(std::string_view bytes)
        : at_(bytes.data()), end_(bytes.data() + bytes.size()) {}

    struct Field {
        std::uint32_t number = 0;
        WireType type = WireType::varint;
        std::uint64_t integer = 0;  // varint, fixed64 and fixed32 values
        std::string_view bytes;     // length-delimited contents
    };

    // The next field, false at the end of the message or on an error.
    bool next(Field& field) {
        if (at_ == end_ || error_ != errc{}) return false;
        std::uint64_t key = 0;
        if (!varint(key)) return false;
        field.number = static_cast<std::uint32_t>(key >> 3);
        if (field.number == 0 || (key >> 3) > 0x1FFFFFFF) return fail(errc::bad_field_number);
        switch (key & 7) {
            case 0:
                field.type = WireType::varint;
                return varint(field.integer);
            case 1:
                field.type = WireType::fixed64;
                return fixed(field.integer, 8);
            case 2: {
                field.type = WireType::length;
                std::uint64_t length = 0;
                if (!varint(length)) return false;
                if (length > static_cast<std::uint64_t>(end_ - at_)) return fail(errc::truncated);
                field.bytes = std::string_view(at_, static_cast<std::size_t>(length));
                at_ += length;
                return true;
            }
            case 5:
                field.type = WireType::fixed32;
                return fixed(field.integer, 4);
            default:
                return fail(errc::bad_wire_type);
        }
    }

    // Packed repeated varints (or one unpacked) are the caller's: see for_each_varint.
    bool fail(errc e) {
        error_ = e;
        at_ = end_;
        return false;
    }
    errc error() const { return error_; }
    bool ok() const { return error_ == errc{}; }

  private:
    bool varint(std::uint64_t& value) {
        // Keys, lengths of small messages, small numbers: one byte.
        if (at_ != end_ && !(static_cast<std::uint8_t>(*at_) & 0x80)) {
            value = static_cast<std::uint8_t>(*at_++);
            return true;
        }
        value = 0;
        for (int shift = 0; shift < 70; shift += 7) {
            if (at_ == end_) return fail(errc::truncated);
            auto byte = static_cast<std::uint8_t>(*at_++);
            if (shift == 63 && byte > 1) return fail(errc::bad_varint);
            value |= static_cast<std::uint64_t>(byte & 0x7F) << shift;
            if (!(byte & 0x80)) return true;
        }
        return fail(errc::bad_varint);
    }
    bool fixed(std::uint64_t& value, int bytes) {
        if (end_ - at_ < bytes) return fail(errc::truncated);
        value = 0;
        for (int i = 0; i < bytes; ++i)
            value |= static_cast<std::uint64_t>(static_cast<std::uint8_t>(at_[i])) << (8 * i);
        at_ += bytes;
        return true;
    }

    const char* at_;
    const char* end_;
    errc error_{};
};

inline double as_double(std::uint64_t bits) {
    return std::bit_cast<double>(bits);
}

// Writers.
inline std::size_t varint_size(std::uint64_t value) {
    std::size_t n = 1;
    while (value >= 0x80) {
        value >>= 7;
        ++n;
    }
    return n;
}
inline void put_varint(std::string& out, std::uint64_t value) {
    while (value >= 0x80) {
        out += static_cast<char>((value & 0x7F) | 0x80);
        value >>= 7;
    }
    out += static_cast<char>(value);
}
inline void put_key(std::string& out, std::uint32_t number, WireType type) {
    put_varint(out, (static_cast<std::uint64_t>(number) << 3) | static_cast<std::uint8_t>(type));
}
inline void put_fixed64(std::string& out, std::uint64_t value) {
    char bytes[8];
    for (int i = 0; i < 8; ++i)
        bytes[i] = static_cast<char>(value >> (8 * i));
    out.append(bytes, 8);
}
// Length-delimited field with a key of one byte (numbers below 16), as every field here has.
inline std::size_t length_field_size(std::size_t length) {
    return 1 + varint_size(length) + length;
}
inline void put_bytes(std::string& out, std::uint32_t number, std::string_view bytes) {
    put_key(out, number, WireType::length);
    put_varint(out, bytes.size());
    out += bytes;
}

}  // namespace citygate::remote::wire
