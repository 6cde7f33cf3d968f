// The HTTP listener under hostile clients, through the real binary: slowloris sockets closed by
// the header deadline while /healthz keeps answering, a per-source connection limit, bearer
// tokens with scopes (reloaded on SIGHUP), admin endpoints only from admin_from without tokens,
// checkpoints rate-limited, and HTTPS.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/resource.h>

#include <atomic>
#include <fstream>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include "gateway/http/tokens.hpp"
#include "tests/integration/gateway_fixture.hpp"

using citygate::test::GatewayUnderTest;
using citygate::test::run_command;
using citygate::test::TempDir;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

struct Reply {
    int status = 0;  // 0: no HTTP answer at all
    std::string headers;
    std::string body;
};

// One request with curl; `options` go on its command line (-X POST, -H ..., --interface ...).
Reply curl(const GatewayUnderTest& gateway, const std::string& path,
           const std::string& options = {}, const std::string& scheme = "http") {
    static std::atomic<int> calls{0};
    std::string stem = (gateway.dir() / ("curl-" + std::to_string(++calls))).string();
    std::string command = "curl -sS --max-time 10 -D " + stem + ".headers -o " + stem +
                          ".body -w '%{http_code}' " + options + " '" + scheme +
                          "://127.0.0.1:" + std::to_string(gateway.http_port()) + path + "'";
    std::string output;
    Reply reply;
    if (run_command(command, &output) != 0) return reply;
    reply.status = std::stoi(output);
    std::ifstream headers(stem + ".headers"), body(stem + ".body");
    reply.headers.assign(std::istreambuf_iterator<char>(headers), {});
    reply.body.assign(std::istreambuf_iterator<char>(body), {});
    return reply;
}

std::string bearer(const std::string& token) {
    return "-H 'Authorization: Bearer " + token + "'";
}

// A TCP connection to the gateway's HTTP port from `source` (any 127.0.0.x), non-blocking.
tcp::socket connect_from(asio::io_context& io, const GatewayUnderTest& gateway,
                         const std::string& source) {
    tcp::socket socket(io);
    socket.open(tcp::v4());
    socket.bind({asio::ip::make_address(source), 0});
    socket.connect({asio::ip::make_address("127.0.0.1"), gateway.http_port()});
    socket.non_blocking(true);
    return socket;
}

// Whether the gateway has closed `socket` (EOF or reset); reads and drops what it sent.
bool closed_by_peer(tcp::socket& socket) {
    char buffer[512];
    boost::system::error_code ec;
    while (true) {
        socket.read_some(asio::buffer(buffer), ec);
        if (ec == asio::error::would_block) return false;
        if (ec) return true;
    }
}

// Waits until `socket` is closed by the gateway or `timeout` passes.
bool closed_within(tcp::socket& socket, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (closed_by_peer(socket)) return true;
        std::this_thread::sleep_for(50ms);
    }
    return false;
}

std::string token_entry(const std::string& name, const std::string& token,
                        const std::string& scopes) {
    return "[[token]]\nname = \"" + name + "\"\nhash = \"" + citygate::gateway::hash_token(token) +
           "\"\nscopes = " + scopes + "\n";
}

std::size_t checkpoints_in(const std::filesystem::path& directory) {
    std::size_t count = 0;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator(directory, ec);
         !ec && it != std::filesystem::directory_iterator(); ++it)
        ++count;
    return count;
}

}  // namespace

TEST_CASE(
    "slowloris: sockets dribbling a header are closed by the header deadline while "
    "/healthz answers") {
    GatewayUnderTest gateway("[http]\nheader_timeout = \"2s\"\n");
    asio::io_context io;
    std::vector<tcp::socket> dribblers;
    for (int i = 0; i < 64; ++i) {  // 16 from each of four sources: under the per-source limit
        dribblers.push_back(connect_from(io, gateway, "127.0.0." + std::to_string(10 + i % 4)));
    }
    std::atomic<bool> attacking{true};
    std::atomic<int> probes{0}, answered{0};
    std::thread prober([&] {
        while (attacking) {
            ++probes;
            if (curl(gateway, "/healthz", "--max-time 3").status == 200) ++answered;
            std::this_thread::sleep_for(250ms);
        }
    });

    const std::string header = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    auto start = std::chrono::steady_clock::now();
    std::size_t closed = 0, closed_early = 0;
    std::vector<bool> gone(dribblers.size());
    for (std::size_t tick = 0; closed < dribblers.size() && tick < 20; ++tick) {  // 10 s at most
        for (std::size_t i = 0; i < dribblers.size(); ++i) {
            if (gone[i]) continue;
            if (closed_by_peer(dribblers[i])) {
                gone[i] = true;
                ++closed;
                if (std::chrono::steady_clock::now() - start < 1s) ++closed_early;
                continue;
            }
            char byte = tick < header.size() ? header[tick] : 'a';
            boost::system::error_code ignored;
            dribblers[i].write_some(asio::buffer(&byte, 1), ignored);
        }
        std::this_thread::sleep_for(500ms);
    }
    auto took = std::chrono::steady_clock::now() - start;
    attacking = false;
    prober.join();

    CHECK(closed == dribblers.size());  // the deadline is for the whole header, not per byte
    CHECK(closed_early == 0);           // ... and it is the deadline that closed them
    CHECK(took < 9s);
    INFO("healthz answered " << answered << " of " << probes);
    CHECK(probes >= 4);
    CHECK(answered == probes);
    CHECK(
        gateway.metric("citygate_http_connections_timed_out_total{phase=\"header\"}").value_or(0) >=
        64);
}

TEST_CASE("a source at its connection limit is refused while other sources still get in") {
    GatewayUnderTest gateway("[http]\nmax_connections_per_source = 4\nheader_timeout = \"60s\"\n");
    asio::io_context io;
    std::vector<tcp::socket> held;
    for (int i = 0; i < 4; ++i)
        held.push_back(connect_from(io, gateway, "127.0.0.1"));
    std::this_thread::sleep_for(300ms);  // accepted and counted
    for (auto& socket : held)
        CHECK_FALSE(closed_by_peer(socket));

    auto fifth = connect_from(io, gateway, "127.0.0.1");
    CHECK(closed_within(fifth, 5s));
    CHECK(curl(gateway, "/healthz", "--interface 127.0.0.1").status == 0);
    CHECK(curl(gateway, "/healthz", "--interface 127.0.0.2").status == 200);

    held.pop_back();  // one slot back: 127.0.0.1 gets in again
    int status = 0;
    for (int attempt = 0; attempt < 50 && status != 200; ++attempt) {
        status = curl(gateway, "/healthz", "--interface 127.0.0.1").status;
        if (status != 200) std::this_thread::sleep_for(100ms);
    }
    CHECK(status == 200);
    CHECK(gateway
              .metric(
                  "citygate_http_connections_refused_total{reason=\"max_connections_per_source\"}")
              .value_or(0) >= 2);
    INFO(gateway.process().log());
    CHECK(gateway.process().log().find("http.max_connections_per_source = 4") != std::string::npos);
}

TEST_CASE(
    "at the connection cap the oldest connection still waiting for a header makes room: "
    "slowloris from many sources cannot lock out /healthz") {
    GatewayUnderTest gateway(
        "[http]\nmax_connections = 32\nmax_connections_per_source = 4\n"
        "header_timeout = \"60s\"\n");
    asio::io_context io;
    std::vector<tcp::socket> held;  // 8 sources x 4: the whole cap, each under its source limit
    for (int i = 0; i < 32; ++i) {
        held.push_back(connect_from(io, gateway, "127.0.0." + std::to_string(20 + i / 4)));
        std::this_thread::sleep_for(10ms);  // accepted in this order, oldest first
    }
    std::this_thread::sleep_for(300ms);
    for (auto& socket : held)
        REQUIRE_FALSE(closed_by_peer(socket));

    // Ten newcomers, from other sources, take the places of the ten oldest waiting connections.
    std::vector<tcp::socket> newcomers;
    for (int i = 0; i < 10; ++i) {
        newcomers.push_back(connect_from(io, gateway, "127.0.0." + std::to_string(40 + i)));
        std::this_thread::sleep_for(10ms);
    }
    for (std::size_t i = 0; i < held.size(); ++i) {
        INFO("connection " << i);
        if (i < 10) {
            CHECK(closed_within(held[i], 5s));
        } else {
            CHECK_FALSE(closed_by_peer(held[i]));
        }
    }
    for (auto& socket : newcomers)
        CHECK_FALSE(closed_by_peer(socket));
    // The scrape's own connection made room the same way: held[10] gave it its place.
    CHECK(gateway.metric("citygate_http_connections_evicted_total") == 11);
    CHECK(closed_within(held[10], 5s));
    // So does a probe, every time.
    int answered = 0;
    for (int probe = 0; probe < 5; ++probe) {
        if (curl(gateway, "/healthz", "--interface 127.0.0.2").status == 200) ++answered;
    }
    CHECK(answered == 5);
    CHECK(gateway.metric("citygate_http_connections_refused_total{reason=\"max_connections\"}") ==
          0);
}

TEST_CASE("out of descriptors, the HTTP acceptor backs off instead of spinning, then recovers") {
    GatewayUnderTest gateway;
    auto pid = gateway.process().pid();
    std::size_t open_files = 0;
    for ([[maybe_unused]] const auto& fd :
         std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd"))
        ++open_files;
    // Room for a few more descriptors only (the soft limit of the running process, from outside).
    rlimit before{};
    REQUIRE(::prlimit(pid, RLIMIT_NOFILE, nullptr, &before) == 0);
    rlimit tight{open_files + 4, before.rlim_max};
    REQUIRE(::prlimit(pid, RLIMIT_NOFILE, &tight, nullptr) == 0);

    asio::io_context io;
    std::vector<tcp::socket> held;
    for (int i = 0; i < 24; ++i)  // completed by the kernel; most wait in the backlog
        held.push_back(connect_from(io, gateway, "127.0.0." + std::to_string(30 + i % 3)));
    std::this_thread::sleep_for(3s);
    held.clear();
    REQUIRE(::prlimit(pid, RLIMIT_NOFILE, &before, nullptr) == 0);

    // It answers again, by itself.
    int status = 0;
    for (int attempt = 0; attempt < 50 && status != 200; ++attempt) {
        status = curl(gateway, "/healthz").status;
        if (status != 200) std::this_thread::sleep_for(200ms);
    }
    CHECK(status == 200);
    // A tight retry loop would have failed millions of times in 3 s; backing off from 100 ms to
    // 1 s, a few dozen at most. And one warning per 10 s, not one per failure.
    auto errors = gateway.metric("citygate_http_accept_errors_total").value_or(0);
    INFO("accept errors: " << errors);
    CHECK(errors >= 1);
    CHECK(errors <= 40);
    std::string log = gateway.process().log();
    std::size_t warnings = 0;
    for (std::size_t at = 0; (at = log.find("http accept: ", at)) != std::string::npos; ++at)
        ++warnings;
    CHECK(warnings >= 1);
    CHECK(warnings <= 2);
}

TEST_CASE(
    "bearer tokens: 401 without one, 403 without the scope, probes open, and SIGHUP adds one") {
    TempDir dir("citygate-tokens");
    auto file = dir.path() / "tokens.toml";
    const std::string reader = "reader-0123456789abcdef", admin = "admin-0123456789abcdef";
    std::ofstream(file) << token_entry("grafana", reader, "[\"read\"]")
                        << token_entry("ops", admin, "[\"read\", \"admin\"]");
    GatewayUnderTest gateway("[http]\ntokens_file = \"" + file.string() + "\"\n");

    for (const char* open : {"/healthz", "/readyz", "/metrics", "/", "/api/v1/status"})
        CHECK(curl(gateway, open).status == 200);

    Reply none = curl(gateway, "/api/v1/series?match=x");
    CHECK(none.status == 401);
    CHECK_THAT(none.headers, Catch::Contains("WWW-Authenticate: Bearer"));
    CHECK(curl(gateway, "/api/v1/series?match=x", bearer("not-a-token-0123456789")).status == 401);
    CHECK(curl(gateway, "/api/v1/series?match=x", bearer(reader)).status == 200);
    CHECK(curl(gateway, "/api/v1/log_level", bearer(reader)).status == 200);
    Reply forbidden = curl(gateway, "/api/v1/log_level", "-X PUT -d debug " + bearer(reader));
    CHECK(forbidden.status == 403);
    CHECK_THAT(forbidden.body, Catch::Contains("lacks the admin scope"));
    CHECK(curl(gateway, "/api/v1/admin/checkpoint", "-X POST " + bearer(reader)).status == 403);
    CHECK(curl(gateway, "/api/v1/log_level", "-X PUT -d info " + bearer(admin)).status == 200);
    // Admin calls are rate-limited even with the right token: one log level change a second.
    Reply again = curl(gateway, "/api/v1/log_level", "-X PUT -d debug " + bearer(admin));
    CHECK(again.status == 429);
    CHECK_THAT(again.headers, Catch::Contains("Retry-After: 1"));
    CHECK(curl(gateway, "/api/v1/log_level", bearer(reader)).body.find("\"info\"") !=
          std::string::npos);
    CHECK(gateway.metric("citygate_http_requests_refused_total{reason=\"rate_limited\"}") == 1);
    CHECK(curl(gateway, "/api/v1/admin/checkpoint", "-X POST " + bearer(admin)).status == 200);
    CHECK(gateway.metric("citygate_http_requests_refused_total{reason=\"unauthenticated\"}") == 2);
    CHECK(gateway.metric("citygate_http_requests_refused_total{reason=\"forbidden\"}") == 2);

    const std::string added = "added-0123456789abcdef";
    CHECK(curl(gateway, "/api/v1/series?match=x", bearer(added)).status == 401);
    std::ofstream(file) << token_entry("grafana", reader, "[\"read\"]")
                        << token_entry("ops", admin, "[\"read\", \"admin\"]")
                        << token_entry("new", added, "[\"read\"]");
    REQUIRE(gateway.process().signal(SIGHUP));
    REQUIRE(gateway.process().wait_for_log("reloaded HTTP tokens (3)", 10s));
    CHECK(curl(gateway, "/api/v1/series?match=x", bearer(added)).status == 200);

    // A broken file keeps the tokens there were, and says why.
    std::ofstream(file) << "[[token]]\nname = \"half\"\n";
    REQUIRE(gateway.process().signal(SIGHUP));
    REQUIRE(gateway.process().wait_for_log("keeping the previous HTTP tokens", 10s));
    CHECK(curl(gateway, "/api/v1/series?match=x", bearer(added)).status == 200);
}

TEST_CASE("without a token file, admin endpoints answer only to admin_from while reads stay open") {
    GatewayUnderTest gateway("[http]\nadmin_from = [\"127.0.0.1/32\"]\n");
    Reply outside = curl(gateway, "/api/v1/log_level", "-X PUT -d debug --interface 127.0.0.2");
    CHECK(outside.status == 403);
    CHECK_THAT(outside.body, Catch::Contains("http.admin_from"));
    CHECK(curl(gateway, "/api/v1/admin/checkpoint", "-X POST --interface 127.0.0.2").status == 403);
    CHECK(curl(gateway, "/api/v1/log_level", "--interface 127.0.0.2").status == 200);
    CHECK(curl(gateway, "/api/v1/series?match=x", "--interface 127.0.0.2").status == 200);
    CHECK(curl(gateway, "/api/v1/log_level", "-X PUT -d info --interface 127.0.0.1").status == 200);
}

TEST_CASE("checkpoints are rate-limited: concurrent POSTs take one, the rest get 429 or 409") {
    TempDir backups("citygate-backups");
    GatewayUnderTest gateway("[http]\ncheckpoint_interval = \"1h\"\n[storage]\nbackup_dir = \"" +
                             backups.path().string() + "\"\n");
    std::string script;
    for (int i = 0; i < 10; ++i) {
        script +=
            "curl -s -o /dev/null -w '%{http_code}\\n' -X POST --max-time 20 "
            "http://127.0.0.1:" +
            std::to_string(gateway.http_port()) + "/api/v1/admin/checkpoint & ";
    }
    script += "wait";
    std::string output;
    REQUIRE(run_command("bash -c " + GatewayUnderTest::shell_quote(script), &output) == 0);
    auto count = [&](const std::string& status) {
        std::size_t n = 0;
        for (std::size_t at = output.find(status); at != std::string::npos;
             at = output.find(status, at + 1))
            ++n;
        return n;
    };
    INFO(output);
    CHECK(count("200") == 1);
    // 409 for those that came while it ran, 429 for those after it, within the interval.
    CHECK(count("429") + count("409") == 9);
    CHECK(checkpoints_in(backups.path()) == 1);
    Reply later = curl(gateway, "/api/v1/admin/checkpoint", "-X POST");
    CHECK(later.status == 429);
    CHECK_THAT(later.headers, Catch::Contains("Retry-After: "));
    CHECK(gateway.metric("citygate_http_requests_refused_total{reason=\"rate_limited\"}") == 10);
}

TEST_CASE("with a certificate and key the HTTP listener speaks HTTPS only") {
    TempDir certs("citygate-certs");
    std::string d = certs.path().string();
    std::string output;
    REQUIRE(run_command("bash -c " + GatewayUnderTest::shell_quote(
                                         "set -e; cd " + d +
                                         "; openssl req -x509 -newkey rsa:2048 -nodes -keyout "
                                         "server.key -out server.pem -days 2 -subj /CN=127.0.0.1 "
                                         "-addext subjectAltName=IP:127.0.0.1"),
                        &output) == 0);
    GatewayUnderTest gateway("[http]\ntls_cert_file = \"" + d + "/server.pem\"\ntls_key_file = \"" +
                             d + "/server.key\"\n");
    Reply secure = curl(gateway, "/healthz", "--cacert " + d + "/server.pem", "https");
    CHECK(secure.status == 200);
    CHECK(secure.body == "{\"status\":\"ok\"}");
    CHECK(
        curl(gateway, "/api/v1/series?match=x", "--cacert " + d + "/server.pem", "https").status ==
        200);
    CHECK(curl(gateway, "/healthz").status != 200);  // plain HTTP gets no answer
    // The server still answers after a plain client was turned away.
    CHECK(curl(gateway, "/healthz", "--cacert " + d + "/server.pem", "https").status == 200);
}

TEST_CASE("citygate --hash-token refuses a short token and hashes a long one") {
    std::string output;
    CHECK(run_command("echo short | " + std::string(CITYGATE_BINARY) + " --hash-token", &output) ==
          2);
    CHECK_THAT(output, Catch::Contains("at least 16"));
    CHECK(
        run_command("echo 0123456789abcdef0123 | " + std::string(CITYGATE_BINARY) + " --hash-token",
                    &output) == 0);
    CHECK(output.starts_with("sha256$"));
}
