// Authentication never blocks I/O: slow password hashes run on the verification pool while a
// healthy client keeps being served; failed attempts are throttled; device secrets use the cheap
// hmac-sha256 scheme; a client that closes while its CONNECT waits for the pool is harmless.
// Raw MQTT 3.1.1 over loopback sockets, several 127.0.0.x source addresses.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/gateway_fixture.hpp"

using namespace citygate::test;
using namespace std::chrono_literals;

namespace {

void append_string(std::vector<std::uint8_t>& out, const std::string& s) {
    out.push_back(static_cast<std::uint8_t>(s.size() >> 8));
    out.push_back(static_cast<std::uint8_t>(s.size() & 0xFF));
    out.insert(out.end(), s.begin(), s.end());
}

std::vector<std::uint8_t> framed(std::uint8_t first, const std::vector<std::uint8_t>& body) {
    std::vector<std::uint8_t> out{first};
    std::size_t n = body.size();
    do {
        std::uint8_t b = n % 128;
        n /= 128;
        out.push_back(static_cast<std::uint8_t>(n ? b | 0x80 : b));
    } while (n);
    out.insert(out.end(), body.begin(), body.end());
    return out;
}

// MQTT 3.1.1 CONNECT, clean session, keep-alive 60 s; user and password when not empty.
std::vector<std::uint8_t> connect_packet(const std::string& client, const std::string& user = {},
                                         const std::string& password = {}) {
    std::vector<std::uint8_t> body;
    append_string(body, "MQTT");
    body.push_back(4);
    body.push_back(static_cast<std::uint8_t>(0x02 | (user.empty() ? 0 : 0xC0)));
    body.push_back(0);
    body.push_back(60);
    append_string(body, client);
    if (!user.empty()) {
        append_string(body, user);
        append_string(body, password);
    }
    return framed(0x10, body);
}

std::vector<std::uint8_t> publish_qos1(std::uint16_t id, const std::string& topic,
                                       const std::string& payload) {
    std::vector<std::uint8_t> body;
    append_string(body, topic);
    body.push_back(static_cast<std::uint8_t>(id >> 8));
    body.push_back(static_cast<std::uint8_t>(id & 0xFF));
    body.insert(body.end(), payload.begin(), payload.end());
    return framed(0x32, body);
}

// A blocking loopback client bound to `source` (127.0.0.x).
class RawClient {
  public:
    RawClient(std::uint16_t port, const std::string& source = "127.0.0.1") {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(fd_ >= 0);
        sockaddr_in local{};
        local.sin_family = AF_INET;
        ::inet_pton(AF_INET, source.c_str(), &local.sin_addr);
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof local) == 0);
        sockaddr_in peer{};
        peer.sin_family = AF_INET;
        peer.sin_port = htons(port);
        ::inet_pton(AF_INET, "127.0.0.1", &peer.sin_addr);
        REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&peer), sizeof peer) == 0);
        int one = 1;
        ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    ~RawClient() { close(); }
    RawClient(const RawClient&) = delete;
    RawClient& operator=(const RawClient&) = delete;

    void send(const std::vector<std::uint8_t>& bytes) {
        REQUIRE(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
                static_cast<ssize_t>(bytes.size()));
    }
    // Reads exactly n bytes; empty on timeout or close.
    std::vector<std::uint8_t> read(std::size_t n, std::chrono::milliseconds timeout) {
        std::vector<std::uint8_t> out;
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (out.size() < n) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) return {};
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return {};
            std::uint8_t buffer[256];
            ssize_t got = ::recv(fd_, buffer, std::min(sizeof buffer, n - out.size()), 0);
            if (got <= 0) return {};
            out.insert(out.end(), buffer, buffer + got);
        }
        return out;
    }
    // The CONNACK return code, or -1 when none came in time.
    int connack(std::chrono::milliseconds timeout = 30s) {
        auto ack = read(4, timeout);
        if (ack.size() != 4 || ack[0] != 0x20) return -1;
        return ack[3];
    }
    void close() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

  private:
    int fd_ = -1;
};

std::string hash_of(const std::string& secret, const std::string& flags = {}) {
    std::string hash;
    REQUIRE(run_command("printf '%s\\n' " + GatewayUnderTest::shell_quote(secret) + " | " +
                            CITYGATE_BINARY + " --hash-password " + flags,
                        &hash) == 0);
    while (!hash.empty() && (hash.back() == '\n' || hash.back() == '\r'))
        hash.pop_back();
    return hash;
}

std::string reading() {
    auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
    return "{\"ts\":" + std::to_string(now) + ",\"pm25\":12.5}";
}

}  // namespace

TEST_CASE("a healthy client keeps getting PUBACKs while many wrong-password CONNECTs are hashed") {
    TempDir config_dir("citygate-auth");
    auto credentials = config_dir.path() / "credentials";
    std::ofstream(credentials) << "person:" << hash_of("a human password") << "\n";  // 100k PBKDF2
    // No throttle here: every wrong attempt costs a full hash, on the pool.
    // A connect timeout long enough that every queued attempt is answered, however slowly a
    // loaded machine hashes (the default 10 s closes those still queued, with no CONNACK).
    GatewayUnderTest gateway("[mqtt]\nconnect_timeout = \"120s\"\n[auth]\ncredentials_file = \"" +
                             credentials.string() + "\"\nmax_failures = 0\n");
    RawClient healthy(gateway.mqtt_port());
    healthy.send(connect_packet("healthy"));  // anonymous from loopback
    REQUIRE(healthy.connack() == 0);

    constexpr int attackers = 200;  // 200 x ~22 ms = seconds of hashing
    std::vector<std::unique_ptr<RawClient>> flood;
    for (int i = 0; i < attackers; ++i) {
        flood.push_back(std::make_unique<RawClient>(gateway.mqtt_port(),
                                                    "127.0.0." + std::to_string(2 + i % 50)));
        flood.back()->send(connect_packet("attacker-" + std::to_string(i), "person", "wrong"));
    }
    auto worst = 0ms;
    for (std::uint16_t id = 1; id <= 20; ++id) {
        auto start = std::chrono::steady_clock::now();
        healthy.send(publish_qos1(id, "city/putuo/air/healthy", reading()));
        auto ack = healthy.read(4, 10s);
        REQUIRE(ack.size() == 4);
        CHECK(ack[0] == 0x40);
        worst = std::max(worst, std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::steady_clock::now() - start));
        std::this_thread::sleep_for(20ms);
    }
    INFO("slowest PUBACK " << worst.count() << " ms");
    // Inline hashing blocked an I/O thread for seconds; the pool leaves it free. Generous: a
    // shared 2-core machine.
    CHECK(worst < 1000ms);
    int refused = 0, busy = 0;
    for (auto& client : flood) {
        int code = client->connack(120s);
        refused += code == 4;  // bad user name or password
        busy += code == 3;     // server unavailable: the queue was full
    }
    CHECK(refused + busy == attackers);
    CHECK(refused > 0);
    CHECK(
        gateway.metric("citygate_auth_verifications_total{scheme=\"pbkdf2-sha256\"}").value_or(0) >=
        refused);
}

TEST_CASE("failed attempts are throttled per source: later ones are refused without hashing") {
    TempDir config_dir("citygate-auth");
    auto credentials = config_dir.path() / "credentials";
    std::ofstream(credentials) << "dev-1:" << hash_of("0123456789abcdef0123", "--scheme device")
                               << "\n";
    GatewayUnderTest gateway("[auth]\nallow_anonymous = \"never\"\ncredentials_file = \"" +
                             credentials.string() +
                             "\"\nmax_failures = 3\nfailure_window = \"60s\"\n");
    for (int i = 0; i < 3; ++i) {
        RawClient guess(gateway.mqtt_port(), "127.0.0.9");
        guess.send(connect_packet("g" + std::to_string(i), "dev-1", "guess-" + std::to_string(i)));
        CHECK(guess.connack() == 4);
    }
    auto hashed =
        gateway.metric("citygate_auth_verifications_total{scheme=\"hmac-sha256\"}").value_or(-1);
    CHECK(hashed == 3);
    // The right secret from that source is refused too now (3.1.1: not authorized).
    RawClient blocked(gateway.mqtt_port(), "127.0.0.9");
    blocked.send(connect_packet("g9", "dev-1", "0123456789abcdef0123"));
    CHECK(blocked.connack() == 5);
    CHECK(gateway.metric("citygate_auth_throttled_total{by=\"source\"}").value_or(0) >= 1);
    CHECK(gateway.metric("citygate_auth_verifications_total{scheme=\"hmac-sha256\"}") == hashed);
    // The user was guessed at 3 times as well: from another source it is throttled by user.
    RawClient elsewhere(gateway.mqtt_port(), "127.0.0.10");
    elsewhere.send(connect_packet("g10", "dev-1", "0123456789abcdef0123"));
    CHECK(elsewhere.connack() == 5);
    CHECK(gateway.metric("citygate_auth_throttled_total{by=\"user\"}").value_or(0) >= 1);
}

TEST_CASE("device-scheme credentials authenticate, and --scheme device refuses short secrets") {
    TempDir config_dir("citygate-auth");
    auto credentials = config_dir.path() / "credentials";
    const std::string secret = "Zq8rT2mK9wXv4LpN7sYb";
    std::string hash = hash_of(secret, "--scheme device");
    REQUIRE(hash.starts_with("hmac-sha256$"));
    std::ofstream(credentials) << "air-7:" << hash << "\nperson:" << hash_of("pw", "") << "\n";
    CHECK(run_command("printf 'short\\n' | " + std::string(CITYGATE_BINARY) +
                      " --hash-password --scheme device") != 0);
    CHECK(run_command("printf 'x\\n' | " + std::string(CITYGATE_BINARY) +
                      " --hash-password --scheme nonsense") != 0);

    GatewayUnderTest gateway("[auth]\nallow_anonymous = \"never\"\ncredentials_file = \"" +
                             credentials.string() + "\"\n");
    RawClient device(gateway.mqtt_port());
    device.send(connect_packet("air-7", "air-7", secret));
    REQUIRE(device.connack() == 0);
    device.send(publish_qos1(1, "city/putuo/air/air-7", reading()));
    auto ack = device.read(4, 10s);
    REQUIRE(ack.size() == 4);
    CHECK(ack[0] == 0x40);
    RawClient wrong(gateway.mqtt_port(), "127.0.0.11");
    wrong.send(connect_packet("air-7b", "air-7", secret + "x"));
    CHECK(wrong.connack() == 4);
    RawClient person(gateway.mqtt_port(), "127.0.0.12");  // pbkdf2 line beside it, on the pool
    person.send(connect_packet("p", "person", "pw"));
    CHECK(person.connack() == 0);
}

TEST_CASE("clients that close while their CONNECT waits for the pool do not hurt the gateway") {
    TempDir config_dir("citygate-auth");
    auto credentials = config_dir.path() / "credentials";
    std::ofstream(credentials) << "person:" << hash_of("a human password") << "\n";
    GatewayUnderTest gateway("[auth]\ncredentials_file = \"" + credentials.string() +
                             "\"\nmax_failures = 0\n");
    for (int i = 0; i < 50; ++i) {
        RawClient quitter(gateway.mqtt_port(), "127.0.0." + std::to_string(20 + i % 10));
        auto bytes = connect_packet("q" + std::to_string(i), "person", "a human password");
        auto pub = publish_qos1(1, "city/putuo/air/q", reading());
        bytes.insert(bytes.end(), pub.begin(), pub.end());  // held while pending
        quitter.send(bytes);
        quitter.close();  // before the ~22 ms hash answers
    }
    // A shutdown while some are still pending, too: the gateway answers and drains.
    for (int i = 0; i < 10; ++i) {
        RawClient waiting(gateway.mqtt_port(), "127.0.0.40");
        waiting.send(connect_packet("w" + std::to_string(i), "person", "wrong"));
        waiting.close();
    }
    RawClient healthy(gateway.mqtt_port());
    healthy.send(connect_packet("healthy", "person", "a human password"));
    CHECK(healthy.connack() == 0);
    CHECK(gateway.get("/healthz").status == 200);
    REQUIRE(gateway.process().signal(SIGTERM));
    auto status = gateway.process().wait_for(30s);
    REQUIRE(status);
    CHECK(*status == 0);
}
