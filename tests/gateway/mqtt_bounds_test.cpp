// Per-connection MQTT bounds without sockets: the incomplete-packet buffer and the options.
#include <catch2/catch.hpp>

#include <algorithm>

#include "gateway/config.hpp"
#include "gateway/mqtt/packet_buffer.hpp"

using namespace citygate::gateway;
using namespace std::chrono_literals;

TEST_CASE("a packet buffer holds exactly the size asked for, from the heap or mapped") {
    for (std::size_t size :
         {std::size_t{5}, std::size_t{4096}, PacketBuffer::map_threshold, std::size_t{250'000}}) {
        PacketBuffer buffer = PacketBuffer::allocate(size);
        REQUIRE(buffer.size() == size);
        CHECK(buffer.mapped() == (size >= PacketBuffer::map_threshold));
        std::fill_n(buffer.data(), size, std::uint8_t{0xAB});
        CHECK(buffer.bytes(size).back() == 0xAB);
    }
}

TEST_CASE("a packet buffer moves its bytes and leaves the source empty") {
    PacketBuffer first = PacketBuffer::allocate(100'000);
    first.data()[99'999] = 7;
    PacketBuffer second = std::move(first);
    CHECK(first.empty());  // NOLINT(bugprone-use-after-move): the contract under test
    CHECK(first.data() == nullptr);
    REQUIRE(second.size() == 100'000);
    CHECK(second.data()[99'999] == 7);
    second = PacketBuffer::allocate(16);
    CHECK(second.size() == 16);
    CHECK_FALSE(second.mapped());
    CHECK(PacketBuffer::allocate(0).empty());
}

TEST_CASE("per-connection bounds have defaults and are read from the file") {
    Config defaults;
    CHECK(defaults.mqtt.max_send_queue == 64 * 1024);
    CHECK(defaults.mqtt.write_timeout == 30s);
    CHECK(defaults.mqtt.partial_packet_timeout == 10s);
    CHECK(defaults.mqtt.max_partial_bytes_total == 256u * 1024 * 1024);
    Config config = parse_config(
        "[mqtt]\nmax_send_queue = 4096\nwrite_timeout = \"5s\"\npartial_packet_timeout = "
        "\"2s\"\nmax_partial_bytes_total = 1048576\n",
        "test");
    CHECK(config.mqtt.max_send_queue == 4096);
    CHECK(config.mqtt.write_timeout == 5s);
    CHECK(config.mqtt.partial_packet_timeout == 2s);
    CHECK(config.mqtt.max_partial_bytes_total == 1048576);
    REQUIRE_NOTHROW(validate(config));
}

TEST_CASE("bad per-connection bounds are refused with the option named") {
    auto error_of = [](const std::string& toml) -> std::string {
        try {
            validate(parse_config(toml, "test"));
        } catch (const ConfigError& e) {
            return e.what();
        }
        return "";
    };
    CHECK_THAT(error_of("[mqtt]\nmax_send_queue = 10\n"), Catch::Contains("mqtt.max_send_queue"));
    CHECK_THAT(error_of("[mqtt]\nwrite_timeout = \"0s\"\n"), Catch::Contains("mqtt.write_timeout"));
    CHECK_THAT(error_of("[mqtt]\npartial_packet_timeout = \"0s\"\n"),
               Catch::Contains("mqtt.partial_packet_timeout"));
    CHECK_THAT(error_of("[mqtt]\npartial_packet_timeout = 10\n"),
               Catch::Contains("mqtt.partial_packet_timeout"));
    // Below one packet of the maximum size: no packet could ever be held.
    CHECK_THAT(error_of("[mqtt]\nmax_partial_bytes_total = 4096\n"),
               Catch::Contains("mqtt.max_partial_bytes_total"));
}
