// Local source addresses for client sockets. Each address gives about 64k connections to one
// server port, so a million connections need ~16 addresses (all of 127.0.0.0/8 is loopback).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/address.hpp>

namespace citygate::loadgen {

// "127.0.0.2", "127.0.0.1-127.0.0.16", or a comma-separated list of both. Ranges are IPv4 and
// inclusive. Returns the addresses in order, or an empty list with `error` set.
std::vector<boost::asio::ip::address> parse_source_addresses(std::string_view spec,
                                                             std::string& error);

}  // namespace citygate::loadgen
