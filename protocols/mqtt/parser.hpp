// Incremental MQTT packet parser: bytes in, then a packet, "need more" or an error carrying the
// reason code to answer with. Stateless between calls: the caller keeps an incomplete packet's
// bytes and passes them again with more. Never allocates for a packet it rejects.
#pragma once

#include <boost/system/error_code.hpp>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "protocols/mqtt/packet.hpp"

namespace citygate::mqtt {

// Hard limits of the receiver, checked before anything is allocated or buffered.
struct parser_limits {
    std::uint32_t maximum_packet_size = 256 * 1024;  // whole packet, fixed header included
    std::uint16_t maximum_topic_length = 1024;       // topic names and filters, bytes
    std::uint16_t maximum_user_properties = 32;      // per packet, will properties included
    std::uint16_t maximum_topic_filters = 64;        // entries of one SUBSCRIBE / UNSUBSCRIBE
};

struct fixed_header {
    packet_type type = packet_type::connect;
    std::uint8_t flags = 0;  // low nibble of the first byte
    std::uint32_t remaining_length = 0;
    std::uint8_t length = 0;  // bytes of the fixed header itself (2 to 5)

    [[nodiscard]] std::size_t total() const noexcept {
        return length + std::size_t{remaining_length};
    }
};

enum class parse_status : std::uint8_t { complete, need_more, error };

struct parse_result {
    parse_status status = parse_status::need_more;
    std::size_t consumed = 0;  // bytes of the packet when complete, else 0
    // Once the fixed header is readable: the packet's total size, so a caller can size its
    // buffer exactly (it is already checked against maximum_packet_size). 0 before that.
    std::size_t needed = 0;
    boost::system::error_code error;
    // For CONNECT: the protocol version read, even when a later field fails, so a server can
    // answer in the right version (MQTT 5 CONNACK with a reason code, or 3.1.1 close).
    std::optional<protocol_version> connect_version;
};

// Checks the fixed header at the start of `in`: packet type valid for `version`, reserved flags
// (MQTT-2.2.2-1/-2, MQTT-3.3.1-4), remaining length encoding and maximum_packet_size.
// need_more until the whole fixed header is there.
parse_status parse_fixed_header(bytes_view in, protocol_version version,
                                const parser_limits& limits, fixed_header& out,
                                boost::system::error_code& error) noexcept;

// Parses one packet from the start of `in`. `version` is the connection's protocol version
// (a CONNECT carries its own). On complete, `out` holds views into `in`.
parse_result parse(bytes_view in, protocol_version version, const parser_limits& limits,
                   packet& out);

}  // namespace citygate::mqtt
