// Bad input through the real binary, each case asserting what the misbehaving client sees and
// that a well-behaved client beside it is unaffected.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "tests/integration/gateway_fixture.hpp"

using citygate::test::GatewayUnderTest;
using citygate::test::run_command;
using Bytes = std::vector<std::uint8_t>;

namespace {

// A raw MQTT client on a blocking socket with a 5 s receive timeout.
class RawClient {
  public:
    explicit RawClient(std::uint16_t port) : socket_(io_) {
        socket_.connect({boost::asio::ip::make_address("127.0.0.1"), port});
        timeval timeout{5, 0};
        ::setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    }

    void send(const Bytes& bytes) { boost::asio::write(socket_, boost::asio::buffer(bytes)); }

    // The next packet's bytes, or empty once the server closed the connection.
    Bytes receive() {
        Bytes header(2);
        boost::system::error_code ec;
        boost::asio::read(socket_, boost::asio::buffer(header), ec);
        if (ec) return {};
        // Short packets only here: the remaining length fits one byte.
        Bytes body(header[1]);
        boost::asio::read(socket_, boost::asio::buffer(body), ec);
        if (ec) return {};
        header.insert(header.end(), body.begin(), body.end());
        return header;
    }

    bool closed_by_server() {
        std::uint8_t byte;
        boost::system::error_code ec;
        boost::asio::read(socket_, boost::asio::buffer(&byte, 1), ec);
        return ec == boost::asio::error::eof || ec == boost::asio::error::connection_reset;
    }

  private:
    boost::asio::io_context io_;
    boost::asio::ip::tcp::socket socket_;
};

// A fixed header (type and flags, a one-byte remaining length), then the body. Sized up front:
// GCC 12 at -O3 warns falsely (-Warray-bounds, -Wstringop-overread) on inserting into a
// two-byte vector.
Bytes framed(std::uint8_t first, const std::string& body) {
    Bytes packet(2 + body.size());
    packet[0] = first;
    packet[1] = static_cast<std::uint8_t>(body.size());
    std::copy(body.begin(), body.end(), packet.begin() + 2);
    return packet;
}

// CONNECT, clean start, keep-alive 60 s, client id "bad".
Bytes connect_packet(bool v5) {
    std::string body("\x00\x04MQTT", 6);
    body += static_cast<char>(v5 ? 5 : 4);
    body += std::string("\x02\x00\x3C", 3);
    if (v5) body += '\0';  // no properties
    body += std::string(
        "\x00\x03"
        "bad",
        5);
    return framed(0x10, body);
}

// PUBLISH QoS 1, packet id 1, with `topic` bytes as given and a small JSON payload.
Bytes publish_packet(bool v5, const Bytes& topic, std::uint8_t flags = 0x32) {
    std::string body;
    body += '\0';
    body += static_cast<char>(topic.size());
    body.append(topic.begin(), topic.end());
    body += std::string("\x00\x01", 2);
    if (v5) body += '\0';
    body += R"({"pm25": 1})";
    return framed(flags, body);
}

Bytes text(std::string_view s) {
    return Bytes(s.begin(), s.end());
}

// A v5 client that connected; REQUIREs a successful CONNACK.
std::unique_ptr<RawClient> connected(const GatewayUnderTest& gateway, bool v5) {
    auto client = std::make_unique<RawClient>(gateway.mqtt_port());
    client->send(connect_packet(v5));
    Bytes connack = client->receive();
    REQUIRE(connack.size() >= 4);
    REQUIRE(connack[0] == 0x20);
    REQUIRE(connack[3] == 0x00);
    return client;
}

// What the server answered a bad packet with: DISCONNECT reason (v5), or 0 for a plain close.
int reaction(RawClient& client, bool v5) {
    if (!v5) return client.closed_by_server() ? 0 : -1;
    Bytes disconnect = client.receive();
    if (disconnect.size() < 3 || disconnect[0] != 0xE0) return -1;
    return client.closed_by_server() ? disconnect[2] : -2;
}

void good_client_still_works(const GatewayUnderTest& gateway, const std::string& device) {
    std::string output;
    int status =
        run_command("mosquitto_pub -h 127.0.0.1 -p " + std::to_string(gateway.mqtt_port()) +
                        " -q 1 -t city/a/air/" + device + " -m '{\"pm25\": 7}'",
                    &output);
    INFO(output);
    REQUIRE(status == 0);
    auto reply = gateway.get(
        "/api/v1/query_range",
        {{"series", "pm25{device=\"" + device + "\"}"}, {"start", "0"}, {"end", "9000000000000"}});
    CHECK(reply.body.find("\"values\":[[") != std::string::npos);
}

}  // namespace

TEST_CASE("bad packets get the reason code the specification requires and others carry on") {
    GatewayUnderTest gateway("[mqtt]\nmax_packet_size = 1024\n");
    for (bool v5 : {true, false}) {
        DYNAMIC_SECTION((v5 ? "MQTT 5: " : "MQTT 3.1.1: ") << "QoS 3 is malformed (MQTT-3.3.1-4)") {
            auto client = connected(gateway, v5);
            client->send(publish_packet(v5, text("city/a/air/x"), 0x36));
            CHECK(reaction(*client, v5) == (v5 ? 0x81 : 0));
        }
        DYNAMIC_SECTION((v5 ? "MQTT 5: " : "MQTT 3.1.1: ")
                        << "a wildcard in a PUBLISH topic (MQTT-3.3.2-2)") {
            auto client = connected(gateway, v5);
            client->send(publish_packet(v5, text("city/+/air/x")));
            CHECK(reaction(*client, v5) == (v5 ? 0x90 : 0));
        }
        DYNAMIC_SECTION((v5 ? "MQTT 5: " : "MQTT 3.1.1: ")
                        << "ill-formed UTF-8 in a topic (MQTT-1.5.4-1)") {
            auto client = connected(gateway, v5);
            client->send(publish_packet(v5, Bytes{'c', '/', 0xC3, 0x28}));
            CHECK(reaction(*client, v5) == (v5 ? 0x81 : 0));
        }
        DYNAMIC_SECTION((v5 ? "MQTT 5: " : "MQTT 3.1.1: ") << "a packet over the size limit") {
            auto client = connected(gateway, v5);
            // Fixed header only: remaining length 4000, refused before the body arrives.
            client->send(Bytes{0x32, 0xA0, 0x1F});
            CHECK(reaction(*client, v5) == (v5 ? 0x95 : 0));
        }
        DYNAMIC_SECTION((v5 ? "MQTT 5: " : "MQTT 3.1.1: ") << "a second CONNECT (MQTT-3.1.0-2)") {
            auto client = connected(gateway, v5);
            client->send(connect_packet(v5));
            CHECK(reaction(*client, v5) == (v5 ? 0x82 : 0));
        }
    }
    // Catch runs the test once per section, each time with a fresh gateway: one bad packet each.
    double counted = gateway.metric(R"(citygate_errors_total{kind="malformed_packet"})").value() +
                     gateway.metric(R"(citygate_errors_total{kind="protocol_error"})").value();
    CHECK(counted == 1);
    good_client_still_works(gateway, "after-bad-packets");
}

TEST_CASE("a flood of connections beyond the limit hears server busy, within it all is well") {
    GatewayUnderTest gateway("[mqtt]\nmax_connections = 20\n");
    std::vector<std::unique_ptr<RawClient>> clients;
    int accepted = 0, busy = 0;
    for (int i = 0; i < 30; ++i) {
        auto client = std::make_unique<RawClient>(gateway.mqtt_port());
        client->send(connect_packet(true));
        Bytes connack = client->receive();
        REQUIRE(connack.size() >= 4);
        if (connack[3] == 0x00) ++accepted;
        if (connack[3] == 0x89) ++busy;  // server busy
        clients.push_back(std::move(client));
    }
    CHECK(accepted == 20);
    CHECK(busy == 10);
    CHECK(gateway.metric(R"(citygate_errors_total{kind="connection_limit"})") == 10);
    clients.clear();  // the 20 hang up; room for others again
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    good_client_still_works(gateway, "after-flood");
}

TEST_CASE("a client publishing above max_publish_rate is slowed, not dropped or disconnected") {
    GatewayUnderTest gateway("[mqtt]\nmax_publish_rate = 50\npublish_burst = 10\n");
    std::string output;
    auto started = std::chrono::steady_clock::now();
    // 150 readings in one connection, as fast as mosquitto_pub can send them (QoS 1).
    int status =
        run_command("seq 150 | sed 's/.*/{\"pm25\": &}/' | mosquitto_pub -h 127.0.0.1 -p " +
                        std::to_string(gateway.mqtt_port()) + " -q 1 -t city/a/air/rate-1 -l",
                    &output);
    auto took = std::chrono::steady_clock::now() - started;
    INFO(output);
    REQUIRE(status == 0);
    // 10 at once, then 50 a second: the last of 150 cannot be read before 2.8 s.
    CHECK(took >= std::chrono::milliseconds(2500));
    auto reply = gateway.get("/api/v1/query_range", {{"series", "pm25{device=\"rate-1\"}"},
                                                     {"start", "0"},
                                                     {"end", "9000000000000"},
                                                     {"step", "1h"},
                                                     {"function", "count"},
                                                     {"group_by", ""}});
    INFO(reply.body);
    CHECK(reply.body.find("[[") != std::string::npos);
    CHECK(gateway.metric("citygate_rate_limited_total").value() > 0);
    CHECK(gateway.metric(R"(citygate_messages_received_total{qos="1"})") == 150);
}
