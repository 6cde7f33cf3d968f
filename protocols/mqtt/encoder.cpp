// Fixed header placement and the any-packet dispatch of the encoders.
#include "protocols/mqtt/encoder.hpp"

#include "protocols/mqtt/detail/codec.hpp"

namespace citygate::mqtt {

void encoded_packet::append_to(std::vector<std::uint8_t>& out) const {
    const bytes_view h = header();
    out.insert(out.end(), h.begin(), h.end());
    out.insert(out.end(), payload_.begin(), payload_.end());
}

std::vector<std::uint8_t> encoded_packet::to_vector() const {
    std::vector<std::uint8_t> out;
    out.reserve(size());
    append_to(out);
    return out;
}

namespace detail {

boost::system::error_code packet_builder::finish(packet_type type, std::uint8_t flags,
                                                 bytes_view payload) {
    auto& s = out_.storage_;
    const std::size_t remaining = s.size() - 5 + payload.size();
    if (remaining > max_vbi) return errc::packet_too_large;
    std::uint8_t length[4];
    const std::size_t n = encode_vbi(static_cast<std::uint32_t>(remaining), length);
    out_.start_ = 5 - 1 - n;
    s[out_.start_] = static_cast<std::uint8_t>((static_cast<unsigned>(type) << 4) | flags);
    for (std::size_t i = 0; i < n; ++i)
        s[out_.start_ + 1 + i] = length[i];
    out_.payload_ = payload;
    return {};
}

}  // namespace detail

boost::system::error_code encode(const packet& p, protocol_version v, encoded_packet& out) {
    return std::visit(
        [&](const auto& typed) -> boost::system::error_code {
            using P = std::decay_t<decltype(typed)>;
            if constexpr (std::is_same_v<P, connect_packet>) {
                return encode(typed, out);
            } else {
                return encode(typed, v, out);
            }
        },
        p);
}

}  // namespace citygate::mqtt
