// Internal interface between the parser/encoder front ends and the per-family codec files.
#pragma once

#include <boost/system/error_code.hpp>
#include <cstdint>
#include <vector>

#include "protocols/mqtt/detail/reader.hpp"
#include "protocols/mqtt/detail/writer.hpp"
#include "protocols/mqtt/encoder.hpp"
#include "protocols/mqtt/parser.hpp"
#include "protocols/mqtt/properties.hpp"

namespace citygate::mqtt::detail {

// Decoding runs once without filling vectors (validating and counting); only if the packet is
// valid and has list entries does it run again with store_lists set. So a rejected packet never
// allocates, and a reused packet object keeps its vectors' capacity.
struct decode_state {
    const parser_limits& limits;
    protocol_version version;
    bool store_lists = false;
    bool has_lists = false;
    std::size_t user_properties = 0;
};

bool decode_properties(reader& r, property_context where, properties& out, decode_state& st);
// Appends the property length and the properties; false if a field is too long.
bool encode_properties(writer& w, const properties& props);

bool decode_connect(reader& r, connect_packet& out, decode_state& st,
                    std::optional<protocol_version>& version_seen);
bool decode_connack(reader& r, connack_packet& out, decode_state& st);
bool decode_publish(reader& r, std::uint8_t flags, publish_packet& out, decode_state& st);
template <packet_type T>
bool decode_ack(reader& r, basic_ack_packet<T>& out, decode_state& st);
bool decode_subscribe(reader& r, subscribe_packet& out, decode_state& st);
bool decode_suback(reader& r, suback_packet& out, decode_state& st);
bool decode_unsubscribe(reader& r, unsubscribe_packet& out, decode_state& st);
bool decode_unsuback(reader& r, unsuback_packet& out, decode_state& st);
bool decode_disconnect(reader& r, disconnect_packet& out, decode_state& st);
bool decode_auth(reader& r, auth_packet& out, decode_state& st);

// Builds one packet in an encoded_packet: body first, fixed header placed in front at the end.
class packet_builder {
  public:
    explicit packet_builder(encoded_packet& out) : out_(out), w_(out.storage_) {
        out_.storage_.resize(5);
        out_.payload_ = {};
        out_.start_ = 0;
    }
    writer& body() noexcept { return w_; }
    // Places the fixed header in front; fails if the remaining length exceeds the VBI range.
    boost::system::error_code finish(packet_type type, std::uint8_t flags, bytes_view payload = {});

  private:
    encoded_packet& out_;
    writer w_;
};

inline bool fits_u16(std::size_t n) noexcept {
    return n <= 0xFFFF;
}

}  // namespace citygate::mqtt::detail
