// libFuzzer target for the MQTT parser: any bytes, both versions, two limit sets. Every packet
// the parser accepts must re-encode, and the re-encoding must parse back to the same bytes.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "protocols/mqtt/encoder.hpp"
#include "protocols/mqtt/parser.hpp"

using namespace citygate::mqtt;

namespace {

void check_round_trip(const packet& p, protocol_version v, const parser_limits& limits) {
    encoded_packet first;
    if (encode(p, v, first)) {
        // Only unsendable sizes may fail, and no accepted packet is that large.
        std::abort();
    }
    const std::vector<std::uint8_t> bytes = first.to_vector();
    parser_limits relaxed = limits;
    relaxed.maximum_packet_size = 0xFFFFFFFF;  // canonical forms can be a little longer
    packet again;
    const auto r = parse(bytes, v, relaxed, again);
    if (r.status != parse_status::complete || r.consumed != bytes.size()) std::abort();
    encoded_packet second;
    if (encode(again, v, second)) std::abort();
    if (second.to_vector() != bytes) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::uint8_t config = data[0];
    const protocol_version version =
        (config & 0x01) != 0 ? protocol_version::v5 : protocol_version::v3_1_1;
    parser_limits limits;
    if ((config & 0x02) != 0) {
        limits.maximum_packet_size = 64;
        limits.maximum_topic_length = 8;
        limits.maximum_user_properties = 2;
        limits.maximum_topic_filters = 2;
    }
    bytes_view in(data + 1, size - 1);
    packet p;  // reused, as the session does
    while (!in.empty()) {
        const auto r = parse(in, version, limits, p);
        if (r.status != parse_status::complete) break;
        if (r.consumed == 0 || r.consumed > in.size()) std::abort();
        // A CONNECT may switch the version, as it does for a session.
        const protocol_version v =
            type_of(p) == packet_type::connect ? std::get<connect_packet>(p).version : version;
        check_round_trip(p, v, limits);
        in = in.subspan(r.consumed);
    }
    return 0;
}
