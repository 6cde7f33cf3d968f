// Which reason codes each MQTT 5 packet may carry (section 2.4 and each packet's reason table).
#include "protocols/mqtt/packet.hpp"

namespace citygate::mqtt {

bool valid_reason(packet_type type, std::uint8_t v) noexcept {
    switch (type) {
        case packet_type::connack:
            switch (v) {
                case 0x00:
                case 0x80:
                case 0x81:
                case 0x82:
                case 0x83:
                case 0x84:
                case 0x85:
                case 0x86:
                case 0x87:
                case 0x88:
                case 0x89:
                case 0x8A:
                case 0x8C:
                case 0x90:
                case 0x95:
                case 0x97:
                case 0x99:
                case 0x9A:
                case 0x9B:
                case 0x9C:
                case 0x9D:
                case 0x9F:
                    return true;
                default:
                    return false;
            }
        case packet_type::puback:
        case packet_type::pubrec:
            switch (v) {
                case 0x00:
                case 0x10:
                case 0x80:
                case 0x83:
                case 0x87:
                case 0x90:
                case 0x91:
                case 0x97:
                case 0x99:
                    return true;
                default:
                    return false;
            }
        case packet_type::pubrel:
        case packet_type::pubcomp:
            return v == 0x00 || v == 0x92;
        case packet_type::suback:
            switch (v) {
                case 0x00:
                case 0x01:
                case 0x02:
                case 0x80:
                case 0x83:
                case 0x87:
                case 0x8F:
                case 0x91:
                case 0x97:
                case 0x9E:
                case 0xA1:
                case 0xA2:
                    return true;
                default:
                    return false;
            }
        case packet_type::unsuback:
            switch (v) {
                case 0x00:
                case 0x11:
                case 0x80:
                case 0x83:
                case 0x87:
                case 0x8F:
                case 0x91:
                    return true;
                default:
                    return false;
            }
        case packet_type::disconnect:
            switch (v) {
                case 0x00:
                case 0x04:
                case 0x80:
                case 0x81:
                case 0x82:
                case 0x83:
                case 0x87:
                case 0x89:
                case 0x8B:
                case 0x8D:
                case 0x8E:
                case 0x8F:
                case 0x90:
                case 0x93:
                case 0x94:
                case 0x95:
                case 0x96:
                case 0x97:
                case 0x98:
                case 0x99:
                case 0x9A:
                case 0x9B:
                case 0x9C:
                case 0x9D:
                case 0x9E:
                case 0x9F:
                case 0xA0:
                case 0xA1:
                case 0xA2:
                    return true;
                default:
                    return false;
            }
        case packet_type::auth:
            return v == 0x00 || v == 0x18 || v == 0x19;
        default:
            return false;
    }
}

}  // namespace citygate::mqtt
