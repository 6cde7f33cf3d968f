// Parsing of --bind lists and ranges.
#include "loadgen/source_addresses.hpp"

namespace citygate::loadgen {

std::vector<boost::asio::ip::address> parse_source_addresses(std::string_view spec,
                                                             std::string& error) {
    constexpr std::size_t max_addresses = 65536;  // a /16 is far more than any machine needs
    std::vector<boost::asio::ip::address> out;
    auto fail = [&](std::string message) {
        error = std::move(message);
        out.clear();
        return out;
    };
    while (!spec.empty()) {
        std::size_t comma = spec.find(',');
        std::string_view item = spec.substr(0, comma);
        spec = comma == std::string_view::npos ? std::string_view{} : spec.substr(comma + 1);
        if (item.empty()) return fail("empty address in the list");
        std::size_t dash = item.find('-');
        boost::system::error_code ec;
        if (dash == std::string_view::npos) {
            out.push_back(boost::asio::ip::make_address(std::string(item), ec));
            if (ec) return fail("not an IP address: " + std::string(item));
            continue;
        }
        auto first = boost::asio::ip::make_address_v4(std::string(item.substr(0, dash)), ec);
        if (ec) return fail("not an IPv4 address: " + std::string(item.substr(0, dash)));
        auto last = boost::asio::ip::make_address_v4(std::string(item.substr(dash + 1)), ec);
        if (ec) return fail("not an IPv4 address: " + std::string(item.substr(dash + 1)));
        if (last.to_uint() < first.to_uint())
            return fail("range ends before it starts: " + std::string(item));
        if (last.to_uint() - first.to_uint() >= max_addresses)
            return fail("range too large: " + std::string(item));
        for (auto a = first.to_uint(); a <= last.to_uint(); ++a)
            out.push_back(boost::asio::ip::address_v4(a));
    }
    if (out.size() > max_addresses) return fail("too many addresses");
    if (out.empty()) error = "no address given";
    return out;
}

}  // namespace citygate::loadgen
