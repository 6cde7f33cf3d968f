// Encoders for every MQTT 3.1.1 / 5.0 packet. The result is a buffer sequence: the fixed and
// variable header in an owned buffer, then the application payload (PUBLISH) referenced, not
// copied.
#pragma once

#include <array>
#include <boost/system/error_code.hpp>
#include <cstdint>
#include <vector>

#include "protocols/mqtt/packet.hpp"

namespace citygate::mqtt {

namespace detail {
class packet_builder;
}

// One encoded packet. Reuse an instance to keep its header buffer's capacity. The payload view
// refers to the caller's bytes, which must stay valid while the buffers are in use.
class encoded_packet {
  public:
    [[nodiscard]] bytes_view header() const noexcept {
        return bytes_view(storage_.data() + start_, storage_.size() - start_);
    }
    [[nodiscard]] bytes_view payload() const noexcept { return payload_; }
    [[nodiscard]] std::array<bytes_view, 2> buffers() const noexcept {
        return {header(), payload_};
    }
    [[nodiscard]] std::size_t size() const noexcept { return header().size() + payload_.size(); }

    // Appends the whole packet (header then payload) to `out`.
    void append_to(std::vector<std::uint8_t>& out) const;
    [[nodiscard]] std::vector<std::uint8_t> to_vector() const;

  private:
    friend class detail::packet_builder;
    std::vector<std::uint8_t> storage_;  // 5 bytes reserved for the fixed header, then the body
    std::size_t start_ = 0;              // where the fixed header begins in storage_
    bytes_view payload_;
};

// Each returns an error only for what cannot be encoded (a field above 65535 bytes, a packet
// above the 268435455-byte limit, a reason code the version cannot carry); `out` is then unusable.
// Properties are ignored for MQTT 3.1.1.
boost::system::error_code encode(const connect_packet& p, encoded_packet& out);  // p.version
boost::system::error_code encode(const connack_packet& p, protocol_version v, encoded_packet& out);
boost::system::error_code encode(const publish_packet& p, protocol_version v, encoded_packet& out);
boost::system::error_code encode(const puback_packet& p, protocol_version v, encoded_packet& out);
boost::system::error_code encode(const pubrec_packet& p, protocol_version v, encoded_packet& out);
boost::system::error_code encode(const pubrel_packet& p, protocol_version v, encoded_packet& out);
boost::system::error_code encode(const pubcomp_packet& p, protocol_version v, encoded_packet& out);
boost::system::error_code encode(const subscribe_packet& p, protocol_version v,
                                 encoded_packet& out);
boost::system::error_code encode(const suback_packet& p, protocol_version v, encoded_packet& out);
boost::system::error_code encode(const unsubscribe_packet& p, protocol_version v,
                                 encoded_packet& out);
boost::system::error_code encode(const unsuback_packet& p, protocol_version v, encoded_packet& out);
boost::system::error_code encode(const pingreq_packet& p, protocol_version v, encoded_packet& out);
boost::system::error_code encode(const pingresp_packet& p, protocol_version v, encoded_packet& out);
boost::system::error_code encode(const disconnect_packet& p, protocol_version v,
                                 encoded_packet& out);
boost::system::error_code encode(const auth_packet& p, protocol_version v, encoded_packet& out);

// Any packet; a connect_packet uses its own version and ignores `v`.
boost::system::error_code encode(const packet& p, protocol_version v, encoded_packet& out);

}  // namespace citygate::mqtt
