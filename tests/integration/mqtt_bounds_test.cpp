// Per-connection bounds through the real binary: a client that does not read what it is sent,
// incomplete packets left hanging (each connection and all together) and a packet dribbled a
// byte per segment. Each case asserts the bound and that a healthy client beside it still works.
#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <fstream>
#include <optional>
#include <thread>

#include "tests/integration/gateway_fixture.hpp"

using citygate::test::GatewayUnderTest;
using citygate::test::run_command;
using Bytes = std::vector<std::uint8_t>;
using namespace std::chrono_literals;

namespace {

Bytes remaining_length(std::size_t n) {
    Bytes out;
    do {
        auto byte = static_cast<std::uint8_t>(n % 128);
        n /= 128;
        out.push_back(n ? byte | 0x80 : byte);
    } while (n);
    return out;
}

Bytes framed(std::uint8_t first, const Bytes& body) {
    Bytes length = remaining_length(body.size());
    Bytes packet(1 + length.size() + body.size());
    packet[0] = first;
    std::copy(length.begin(), length.end(), packet.begin() + 1);
    std::copy(body.begin(), body.end(), packet.begin() + 1 + static_cast<long>(length.size()));
    return packet;
}

void append(Bytes& to, std::string_view text) {
    to.insert(to.end(), text.begin(), text.end());
}

Bytes connect_packet(const std::string& client_id, bool v5, std::uint16_t keep_alive) {
    Bytes body;
    append(body, std::string_view("\x00\x04MQTT", 6));
    body.push_back(v5 ? 5 : 4);
    body.push_back(0x02);  // clean start
    body.push_back(static_cast<std::uint8_t>(keep_alive >> 8));
    body.push_back(static_cast<std::uint8_t>(keep_alive & 0xFF));
    if (v5) body.push_back(0);  // no properties
    body.push_back(0);
    body.push_back(static_cast<std::uint8_t>(client_id.size()));
    append(body, client_id);
    return framed(0x10, body);
}

// A QoS 1 PUBLISH of exactly `size` bytes: a JSON reading padded with spaces.
Bytes publish_packet(const std::string& device, std::size_t size, bool v5 = false) {
    std::string topic = "city/a/air/" + device;
    Bytes body;
    body.push_back(0);
    body.push_back(static_cast<std::uint8_t>(topic.size()));
    append(body, topic);
    body.push_back(0);
    body.push_back(1);  // packet id
    if (v5) body.push_back(0);
    append(body, R"({"pm25": 5})");
    // The remaining length takes 1 to 3 bytes: pad so that the whole packet is `size`.
    std::size_t header = framed(0x32, body).size() - body.size();
    body.resize(size - header - 2, ' ');  // the header may grow as the body does
    while (framed(0x32, body).size() < size)
        body.push_back(' ');
    Bytes packet = framed(0x32, body);
    REQUIRE(packet.size() == size);
    return packet;
}

// A raw MQTT client on a socket of its own; blocking with timeouts unless made non-blocking.
class RawClient {
  public:
    // A small receive buffer makes a client that does not read fill up quickly.
    explicit RawClient(std::uint16_t port, int receive_buffer = 0) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(fd_ >= 0);
        if (receive_buffer > 0) {
            ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
        }
        int one = 1;
        ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        timeval timeout{10, 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
        ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_port = htons(port);
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    }
    ~RawClient() { ::close(fd_); }
    RawClient(const RawClient&) = delete;
    RawClient& operator=(const RawClient&) = delete;

    // Sends everything; false once the server closed the connection.
    bool send(const Bytes& bytes) {
        std::size_t done = 0;
        while (done < bytes.size()) {
            ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
            if (n <= 0) return false;
            done += static_cast<std::size_t>(n);
        }
        return true;
    }

    // Sends what the socket takes within 200 ms: 0 when it takes nothing, -1 once closed.
    long send_some(const Bytes& bytes) {
        pollfd p{fd_, POLLOUT, 0};
        if (::poll(&p, 1, 200) <= 0) return 0;
        if (p.revents & (POLLERR | POLLHUP)) return -1;
        ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        return n;
    }

    // Up to `n` bytes, fewer when the server closed or nothing came within the timeout.
    Bytes receive(std::size_t n) {
        Bytes bytes(n);
        std::size_t have = 0;
        while (have < n) {
            ssize_t got = ::recv(fd_, bytes.data() + have, n - have, 0);
            if (got <= 0) break;
            have += static_cast<std::size_t>(got);
        }
        bytes.resize(have);
        return bytes;
    }

    // Whether the server closed within `wait` (bytes it sent first are skipped).
    bool closed_within(std::chrono::milliseconds wait) {
        auto deadline = std::chrono::steady_clock::now() + wait;
        std::uint8_t scratch[4096];
        while (std::chrono::steady_clock::now() < deadline) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 100) <= 0) continue;
            ssize_t n = ::recv(fd_, scratch, sizeof scratch, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) return true;
        }
        return false;
    }

    void connect(const std::string& client_id, bool v5 = false, std::uint16_t keep_alive = 60) {
        REQUIRE(send(connect_packet(client_id, v5, keep_alive)));
        Bytes connack = receive(2);  // v5 properties included, it stays under 128 bytes
        REQUIRE(connack.size() == 2);
        REQUIRE(connack[0] == 0x20);
        Bytes rest = receive(connack[1]);
        REQUIRE(rest.size() == connack[1]);
        REQUIRE(rest.at(1) == 0x00);  // reason / return code
    }

  private:
    int fd_ = -1;
};

bool healthy_client_publishes(const GatewayUnderTest& gateway, const std::string& device) {
    std::string output;
    int status = run_command("timeout 20 mosquitto_pub -h 127.0.0.1 -p " +
                                 std::to_string(gateway.mqtt_port()) + " -q 1 -t city/a/air/" +
                                 device + " -m '{\"pm25\": 7}'",
                             &output);
    INFO(output);
    return status == 0;
}

double error_count(const GatewayUnderTest& gateway, const std::string& kind) {
    return gateway.metric(R"(citygate_errors_total{kind=")" + kind + "\"}").value_or(-1);
}

}  // namespace

TEST_CASE("a client that does not read what it is sent is bounded, then closed") {
    // Small bounds so that the test is quick; the defaults are 64 KiB and 30 s.
    bool qos1 = GENERATE(false, true);
    bool by_keep_alive = GENERATE(false, true);
    std::string toml = by_keep_alive ? "[mqtt]\nmax_send_queue = 4096\nwrite_timeout = \"60s\"\n"
                                     : "[mqtt]\nmax_send_queue = 4096\nwrite_timeout = \"3s\"\n";
    INFO((qos1 ? "QoS 1 PUBLISH" : "PINGREQ")
         << " flood, closed by " << (by_keep_alive ? "keep-alive" : "write_timeout"));
    GatewayUnderTest gateway(toml);
    long rss_start = citygate::test::resident_kib(gateway.process().pid());

    RawClient flooder(gateway.mqtt_port(), 4096);
    // Keep-alive 2 s (closed at 1.5 x, 3 s after its last packet read) or 60 s (write_timeout).
    flooder.connect("flooder", false, by_keep_alive ? 2 : 60);
    Bytes unit = qos1 ? publish_packet("flooder", 40) : Bytes{0xC0, 0x00};
    Bytes chunk;
    while (chunk.size() < 64 * 1024)
        chunk.insert(chunk.end(), unit.begin(), unit.end());

    std::atomic<bool> healthy{false};
    std::thread healthy_client([&] {
        std::this_thread::sleep_for(1s);  // into the flood
        healthy = healthy_client_publishes(gateway, "healthy");
    });
    long peak_rss = rss_start;
    std::size_t sent = 0;
    bool closed = false;
    auto began = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - began < 25s) {
        long n = flooder.send_some(chunk);
        peak_rss = std::max(peak_rss, citygate::test::resident_kib(gateway.process().pid()));
        if (n < 0) {
            closed = true;
            break;
        }
        sent += static_cast<std::size_t>(n);
    }
    auto open_for = std::chrono::steady_clock::now() - began;
    healthy_client.join();
    INFO("sent " << sent << " bytes; RSS " << rss_start << " -> peak " << peak_rss << " KiB");
    CHECK(closed);
    CHECK(open_for < 20s);  // 3 s of not reading, plus filling the socket buffers
    // Before the bound the gateway grew by what the flooder sent (~50 MB/s here).
    CHECK(peak_rss - rss_start < 48 * 1024);
    CHECK(healthy);
    CHECK(error_count(gateway, "slow_consumer") >= 1);
    CHECK(healthy_client_publishes(gateway, "after"));
}

TEST_CASE("incomplete packets are closed after partial_packet_timeout and their memory returned") {
    GatewayUnderTest gateway("[mqtt]\npartial_packet_timeout = \"2s\"\n");
    std::this_thread::sleep_for(500ms);
    long rss_start = citygate::test::resident_kib(gateway.process().pid());
    constexpr int clients = 200;
    Bytes head = publish_packet("partial", 250'000);
    head.resize(100'000);
    std::vector<std::unique_ptr<RawClient>> partial;
    auto began = std::chrono::steady_clock::now();
    for (int i = 0; i < clients; ++i) {
        partial.push_back(std::make_unique<RawClient>(gateway.mqtt_port()));
        partial.back()->connect("partial-" + std::to_string(i));
        REQUIRE(partial.back()->send(head));
    }
    long rss_held = citygate::test::resident_kib(gateway.process().pid());
    INFO("RSS " << rss_start << " KiB at start, " << rss_held << " KiB held");
    CHECK(healthy_client_publishes(gateway, "beside"));

    int closed = 0;
    for (auto& client : partial)
        closed += client->closed_within(15s) ? 1 : 0;
    auto took = std::chrono::steady_clock::now() - began;
    CHECK(closed == clients);
    CHECK(took > 2s);  // not before the deadline
    CHECK(error_count(gateway, "partial_packet_timeout") == clients);
    partial.clear();
    std::this_thread::sleep_for(1s);
    long rss_after = citygate::test::resident_kib(gateway.process().pid());
    INFO("RSS after they closed: " << rss_after << " KiB");
    // 200 x 100 KB were held (about 20 MB); what is left must be a small part of it.
    CHECK(rss_after - rss_start < 8 * 1024);
    CHECK(healthy_client_publishes(gateway, "after"));
}

TEST_CASE("the bytes of all incomplete packets together are bounded") {
    // 1 MiB: four packets of 250 KB fit, the fifth connection is closed (v5: DISCONNECT 0x97).
    GatewayUnderTest gateway("[mqtt]\nmax_partial_bytes_total = 1048576\n");
    std::vector<std::unique_ptr<RawClient>> held;
    for (int i = 0; i < 4; ++i) {
        held.push_back(std::make_unique<RawClient>(gateway.mqtt_port()));
        held.back()->connect("held-" + std::to_string(i));
        Bytes head = publish_packet("held", 250'000);
        head.resize(100'000);
        REQUIRE(held.back()->send(head));
    }
    std::this_thread::sleep_for(300ms);
    RawClient refused(gateway.mqtt_port());
    refused.connect("refused", true);
    Bytes head = publish_packet("refused", 250'000, true);
    head.resize(100'000);
    refused.send(head);  // may fail once the gateway closed
    Bytes disconnect = refused.receive(3);
    REQUIRE(disconnect.size() == 3);
    CHECK(disconnect[0] == 0xE0);
    CHECK(disconnect[2] == 0x97);  // quota exceeded
    CHECK(refused.closed_within(5s));
    CHECK(error_count(gateway, "partial_bytes_limit") == 1);
    // The four within the bound are still open, and complete normally.
    Bytes rest = publish_packet("held", 250'000);
    rest.erase(rest.begin(), rest.begin() + 100'000);
    for (auto& client : held) {
        REQUIRE(client->send(rest));
        Bytes puback = client->receive(4);
        REQUIRE(puback.size() == 4);
        CHECK(puback[0] == 0x40);
    }
    CHECK(healthy_client_publishes(gateway, "beside"));
}

TEST_CASE("a 100 KB packet dribbled a byte per segment is accepted and stored") {
    GatewayUnderTest gateway;
    RawClient client(gateway.mqtt_port());
    client.connect("dribbler");
    Bytes packet = publish_packet("dribbler", 100'000);
    for (std::size_t i = 0; i < packet.size(); ++i) {
        REQUIRE(client.send(Bytes{packet[i]}));
        if (i % 1000 == 0) std::this_thread::sleep_for(1ms);  // let segments reach the gateway
    }
    Bytes puback = client.receive(4);
    REQUIRE(puback.size() == 4);
    CHECK(puback == Bytes{0x40, 0x02, 0x00, 0x01});
    auto reply = gateway.get(
        "/api/v1/query_range",
        {{"series", "pm25{device=\"dribbler\"}"}, {"start", "0"}, {"end", "9000000000000"}});
    CHECK(reply.body.find("\"values\":[[") != std::string::npos);
}

TEST_CASE("over TLS a packet spanning many reads and packets sharing one read are all stored") {
    // Decrypted bytes arrive 4 KiB at a time: a 200 KB PUBLISH is held across ~50 of them, and
    // small PUBLISHes share one.
    citygate::test::TempDir certs("citygate-certs");
    std::string d = certs.path().string();
    std::string output;
    std::string script =
        "set -e; cd " + d +
        "; openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
        "-subj /CN=citygate-test-ca"
        "; openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr "
        "-subj /CN=127.0.0.1"
        "; printf 'subjectAltName=IP:127.0.0.1' > san.ext"
        "; openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
        "-out server.pem -days 2 -extfile san.ext"
        "; printf '{\"pm25\": 9}' > big.json; head -c 200000 /dev/zero | tr '\\0' ' ' >> big.json"
        "; seq 50 | sed 's/.*/{\"pm25\": &}/' > small.txt";
    REQUIRE(run_command("bash -c " + GatewayUnderTest::shell_quote(script), &output) == 0);
    GatewayUnderTest gateway(
        "[tls]\nenabled = true\nlisten = \"127.0.0.1\"\nport = 0\ncert_file = \"" + d +
        "/server.pem\"\nkey_file = \"" + d + "/server.key\"\n");
    auto line = gateway.process().wait_for_log("mqtts listening on ", 10s);
    REQUIRE(line);
    std::string tls = "timeout 30 mosquitto_pub -h 127.0.0.1 -q 1 -p " +
                      std::to_string(std::stoi(line->substr(line->rfind(':') + 1))) + " --cafile " +
                      d + "/ca.pem";
    INFO(output);
    REQUIRE(run_command(tls + " -t city/a/air/tls-big -f " + d + "/big.json", &output) == 0);
    REQUIRE(run_command(tls + " -t city/a/air/tls-small -l < " + d + "/small.txt", &output) == 0);
    CHECK(gateway.metric(R"(citygate_messages_received_total{qos="1"})") == 51);
    CHECK(gateway.metric("citygate_samples_written_total") == 51);
}

TEST_CASE("a client silent for 1.5 x its keep-alive is closed, one that pings stays") {
    GatewayUnderTest gateway;
    RawClient pinging(gateway.mqtt_port());
    pinging.connect("pinging", false, 1);
    RawClient silent(gateway.mqtt_port());
    auto before_connect = std::chrono::steady_clock::now();
    silent.connect("silent", false, 1);  // keep-alive 1 s: closed 1.5 s after its CONNECT

    std::optional<std::chrono::steady_clock::duration> silent_closed;
    auto began = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - began < 4s) {
        REQUIRE(pinging.send({0xC0, 0x00}));  // PINGREQ
        CHECK(pinging.receive(2) == Bytes{0xD0, 0x00});
        if (silent_closed) {
            std::this_thread::sleep_for(400ms);
        } else if (silent.closed_within(400ms)) {
            silent_closed = std::chrono::steady_clock::now() - before_connect;
        }
    }
    REQUIRE(silent_closed);
    CHECK(*silent_closed >= 1500ms);  // never early
    CHECK(*silent_closed < 3500ms);   // a tick of the timer wheel late, and a poll
    CHECK_FALSE(pinging.closed_within(100ms));
}
