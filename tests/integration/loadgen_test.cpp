// citygate-loadgen against the real gateway at small scale: every acknowledged reading arrives.
#include <csignal>
#include <fstream>
#include <thread>

#include <catch2/catch.hpp>

#include <simdjson.h>

#include <boost/asio/ip/tcp.hpp>

#include "tests/integration/gateway_fixture.hpp"
#include "tests/support/temp_dir.hpp"

using citygate::test::GatewayUnderTest;
using citygate::test::Process;
using citygate::test::run_command;
using namespace std::chrono_literals;

namespace {

std::string last_line(const std::string& text) {
    std::size_t end = text.find_last_not_of('\n');
    std::size_t start = text.rfind('\n', end);
    return text.substr(start == std::string::npos ? 0 : start + 1, end - start);
}

}  // namespace

TEST_CASE("the load generator's QoS 1 readings are all acknowledged and stored") {
    GatewayUnderTest gateway;
    std::string output;
    int status = run_command(std::string(CITYGATE_LOADGEN_BINARY) + " --port " +
                                 std::to_string(gateway.mqtt_port()) +
                                 " --clients 20 --messages 50 --qos 1 --inflight 8 --threads 2",
                             &output);
    INFO(output);
    REQUIRE(status == 0);
    simdjson::dom::parser parser;
    simdjson::dom::element report = parser.parse(last_line(output));
    CHECK(uint64_t(report["connected"]) == 20);
    CHECK(uint64_t(report["acknowledged"]) == 1000);
    CHECK(uint64_t(report["protocol_errors"]) == 0);
    CHECK(double(report["ack_ms"]["p99"]) > 0);

    CHECK(gateway.metric(R"(citygate_messages_received_total{qos="1"})") == 1000);
    CHECK(gateway.metric(R"(citygate_errors_total{kind="payload_invalid"})") == 0);
    CHECK(gateway.metric(R"(citygate_errors_total{kind="storage_rejected"})") == 0);
    // 20 sensors, 50 readings each: every one of their series holds 50 points.
    auto series = gateway.get("/api/v1/series", {{"match", R"({district=~".+"})"}});
    REQUIRE(series.status == 200);
    simdjson::dom::element listed = parser.parse(series.body);
    simdjson::dom::array keys = listed["data"];
    REQUIRE(keys.size() >= 20);
    for (simdjson::dom::element key : keys) {
        auto reply =
            gateway.get("/api/v1/query_range", {{"series", std::string(std::string_view(key))},
                                                {"start", "0"},
                                                {"end", "9000000000000"}});
        REQUIRE(reply.status == 200);
        simdjson::dom::parser points_parser;
        simdjson::dom::element points = points_parser.parse(reply.body);
        CHECK(points["data"]["result"].at(0)["values"].get_array().size() == 50);
    }
}

TEST_CASE("the load generator fails loudly when no broker listens") {
    std::string output;
    int status = run_command(
        std::string(CITYGATE_LOADGEN_BINARY) + " --port 1 --clients 2 --messages 1 --threads 1",
        &output);
    INFO(output);
    CHECK(status == 1);
    CHECK_THAT(last_line(output), Catch::Contains("\"connect_failed\":2"));
}

namespace {

std::string loadgen(const GatewayUnderTest& gateway, const std::string& flags) {
    return std::string(CITYGATE_LOADGEN_BINARY) + " --port " + std::to_string(gateway.mqtt_port()) +
           " --http-port " + std::to_string(gateway.http_port()) + " " + flags;
}

}  // namespace

TEST_CASE(
    "loadgen --verify proves every acknowledged reading stored, over MQTT 5 QoS 2 from 3 "
    "addresses") {
    GatewayUnderTest gateway;
    std::string output;
    int status = run_command(loadgen(gateway,
                                     "--scenario smoke --protocol 5 --qos 2 --clients 12 "
                                     "--bind 127.0.0.1-127.0.0.3 --threads 2 --verify"),
                             &output);
    INFO(output);
    REQUIRE(status == 0);
    simdjson::dom::parser parser;
    simdjson::dom::element report = parser.parse(last_line(output));
    CHECK(std::string_view(report["scenario"]) == "smoke");
    CHECK(uint64_t(report["acknowledged"]) == 12 * 20);
    CHECK(bool(report["verify"]["ok"]));
    CHECK(uint64_t(report["verify"]["readings_missing"]) == 0);
    CHECK(uint64_t(report["verify"]["values_checked"]) ==
          uint64_t(report["verify"]["readings_expected"]));
    CHECK(uint64_t(report["verify"]["readings_expected"]) >= 12 * 20);
}

TEST_CASE("loadgen --verify catches readings the gateway acknowledged but did not store") {
    // Only air sensors match the template: the others are acknowledged and counted as
    // topic_unmatched, so their readings are missing from the store.
    GatewayUnderTest gateway("[ingest]\ntopic_templates = [\"city/{district}/air/{device}\"]\n");
    std::string output;
    int status = run_command(
        loadgen(gateway, "--scenario smoke --clients 20 --messages 5 --verify"), &output);
    INFO(output);
    CHECK(status == 1);
    simdjson::dom::parser parser;
    simdjson::dom::element report = parser.parse(last_line(output));
    CHECK(uint64_t(report["acknowledged"]) == 100);
    CHECK_FALSE(bool(report["verify"]["ok"]));
    CHECK(uint64_t(report["verify"]["series_missing"]) > 0);
    CHECK(uint64_t(report["verify"]["readings_missing"]) ==
          5 * uint64_t(report["verify"]["series_missing"]));
    // Every series named missing is a non-air sensor's; the air sensors verified.
    std::size_t named = 0, at = 0;
    while ((at = output.find("verify: missing series ", at)) != std::string::npos) {
        std::size_t end = output.find('\n', at);
        std::string line = output.substr(at, end - at);
        CHECK_THAT(line, !Catch::Contains("type=\"air\""));
        ++named;
        at = end;
    }
    CHECK(named == uint64_t(report["verify"]["series_missing"]));
    CHECK(uint64_t(report["verify"]["values_checked"]) > 0);  // the air sensors' readings
}

TEST_CASE("the load generator writes its JSON and HTML reports to files") {
    GatewayUnderTest gateway;
    auto json = gateway.dir() / "report.json", html = gateway.dir() / "report.html";
    std::string output;
    int status = run_command(loadgen(gateway, "--scenario smoke --format json --report " +
                                                  json.string() + " --html " + html.string()),
                             &output);
    INFO(output);
    REQUIRE(status == 0);
    std::ifstream in(json);
    std::string file_line;
    std::getline(in, file_line);
    CHECK(file_line == last_line(output));
    std::ifstream page(html);
    std::string text((std::istreambuf_iterator<char>(page)), {});
    CHECK_THAT(text, Catch::Contains(file_line));
}

TEST_CASE("the load generator speaks TLS with a client certificate and per-device passwords") {
    // Mosquitto stands in for a TLS broker that requires client certificates and passwords.
    if (run_command("command -v mosquitto > /dev/null && command -v openssl > /dev/null") != 0) {
        FAIL("mosquitto and openssl are needed: run deploy/install-deps.sh");
    }
    citygate::test::TempDir dir("loadgen-tls");
    auto d = dir.path().string();
    std::string make_certs =
        "cd " + d +
        " && openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=test-ca -keyout ca.key "
        "-out ca.crt && openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout "
        "server.key -out server.csr && printf 'subjectAltName=IP:127.0.0.1' > san.ext && openssl "
        "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 -extfile "
        "san.ext -out server.crt && openssl req -newkey rsa:2048 -nodes -subj /CN=sensor -keyout "
        "client.key -out client.csr && openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key "
        "-CAcreateserial -days 1 -out client.crt && touch passwords";
    for (int i = 0; i < 3; ++i) {
        make_certs +=
            " && mosquitto_passwd -b passwords u-" + std::to_string(i) + " pw-" + std::to_string(i);
    }
    std::string certs_output;
    REQUIRE(run_command(make_certs + " 2>&1", &certs_output) == 0);
    // A free port: bind to 0, read it, close.
    boost::asio::io_context io;
    boost::asio::ip::tcp::acceptor probe(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
    auto port = std::to_string(probe.local_endpoint().port());
    probe.close();
    std::ofstream(dir.path() / "mosquitto.conf")
        << "listener " << port << " 127.0.0.1\n"
        << "cafile " << d << "/ca.crt\ncertfile " << d << "/server.crt\nkeyfile " << d
        << "/server.key\nrequire_certificate true\nallow_anonymous false\npassword_file " << d
        << "/passwords\npersistence false\nuser root\nlog_dest stderr\n";
    std::string mosquitto;
    REQUIRE(run_command("command -v mosquitto", &mosquitto) == 0);
    mosquitto.erase(mosquitto.find_last_not_of("\n") + 1);  // execv needs a path
    citygate::test::Process broker({mosquitto, "-c", d + "/mosquitto.conf", "-v"},
                                   dir.path() / "mosquitto.log");
    REQUIRE(broker.wait_for_log("running", std::chrono::seconds(10)));

    std::string common = std::string(CITYGATE_LOADGEN_BINARY) + " --port " + port +
                         " --tls --cafile " + d + "/ca.crt --clients 3 --messages 10 --qos 1 " +
                         "--protocol 5 --duration 20 --username 'u-{index}' ";
    std::string output;
    int status = run_command(
        common + "--password 'pw-{index}' --cert " + d + "/client.crt --key " + d + "/client.key",
        &output);
    INFO(output);
    CHECK(status == 0);
    CHECK_THAT(last_line(output), Catch::Contains("\"acknowledged\":30"));
    CHECK_THAT(last_line(output), Catch::Contains("\"tls\":true"));

    // Without the client certificate the broker refuses the TLS session; with a wrong password
    // CONNACK refuses.
    status = run_command(common + "--password 'pw-{index}'", &output);
    CHECK(status == 1);
    // (TLS 1.3: the client's handshake completes before the server checks its certificate, so
    // the refusal shows as the server closing the connection, never as a CONNACK.)
    CHECK_THAT(last_line(output), Catch::Contains("\"connected\":0,\"connect_failed\":3"));
    status = run_command(
        common + "--password wrong --cert " + d + "/client.crt --key " + d + "/client.key",
        &output);
    CHECK(status == 1);
    CHECK_THAT(last_line(output), Catch::Contains("\"connack_refused\":3"));
}

namespace {

std::uint16_t free_port() {
    boost::asio::io_context io;
    boost::asio::ip::tcp::acceptor probe(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
    return probe.local_endpoint().port();
}

// A gateway that comes back on the same MQTT and HTTP ports after a restart, so reconnecting
// clients and --verify find it again. (GatewayUnderTest always asks for port 0, and the command
// line wins over the config file's ports.)
class PinnedGateway {
  public:
    PinnedGateway() { start(); }

    void start() {
        process_ = std::make_unique<Process>(
            std::vector<std::string>{CITYGATE_BINARY, "--mqtt-listen", "127.0.0.1", "--http-listen",
                                     "127.0.0.1", "--mqtt-port", std::to_string(mqtt_port_),
                                     "--http-port", std::to_string(http_port_), "--data-dir",
                                     (dir_.path() / "var").string(), "--io-threads", "2",
                                     "--shards", "2"},
            dir_.path() / ("citygate-" + std::to_string(++starts_) + ".log"));
        INFO("citygate log:\n" << process_->log());
        REQUIRE(process_->wait_for_log("mqtt listening on", 30s));
        REQUIRE(process_->wait_for_log("http listening on", 30s));
    }

    Process& process() { return *process_; }
    std::uint16_t mqtt_port() const { return mqtt_port_; }
    std::uint16_t http_port() const { return http_port_; }
    const std::filesystem::path& dir() const { return dir_.path(); }

  private:
    citygate::test::TempDir dir_{"loadgen-reconnect"};
    std::uint16_t mqtt_port_ = free_port(), http_port_ = free_port();
    std::unique_ptr<Process> process_;
    int starts_ = 0;
};

std::uint64_t member_or_zero(simdjson::dom::element object, const char* key) {
    std::uint64_t value = 0;
    return object[key].get(value) == simdjson::SUCCESS ? value : 0;
}

}  // namespace

TEST_CASE("loadgen clients reconnect with back-off after the gateway is killed and restarted") {
    PinnedGateway gateway;
    // 10 sensors, a reading every 100 ms for 4 s; the gateway dies 2 s in and is down for 1 s,
    // in which every client, backing off 100 to 400 ms, is refused at least once.
    constexpr std::uint64_t clients = 10, messages = 40;
    Process loadgen({CITYGATE_LOADGEN_BINARY,
                     "--port",
                     std::to_string(gateway.mqtt_port()),
                     "--http-port",
                     std::to_string(gateway.http_port()),
                     "--clients",
                     std::to_string(clients),
                     "--messages",
                     std::to_string(messages),
                     "--interval-ms",
                     "100",
                     "--qos",
                     "1",
                     "--connect-rate",
                     "0",
                     "--threads",
                     "2",
                     "--reconnect",
                     "true",
                     "--reconnect-min-ms",
                     "100",
                     "--reconnect-max-ms",
                     "400",
                     "--reconnect-attempts",
                     "0",
                     "--duration",
                     "30",
                     "--drain",
                     "5",
                     "--verify"},
                    gateway.dir() / "loadgen.log");
    REQUIRE(loadgen.wait_for_log("[   2s] open 10,", 20s));
    REQUIRE(gateway.process().signal(SIGKILL));
    REQUIRE(gateway.process().wait_for(10s) == 128 + SIGKILL);
    std::this_thread::sleep_for(1s);
    gateway.start();

    auto status = loadgen.wait_for(45s);
    std::string output = loadgen.log();
    INFO(output);
    REQUIRE(status);  // the run finished on its own
    simdjson::dom::parser parser;
    simdjson::dom::element report = parser.parse(last_line(output));

    // Every client came back and published all its readings.
    CHECK(uint64_t(report["connected"]) == clients);
    CHECK(uint64_t(report["connect_failed"]) == 0);
    CHECK(uint64_t(report["disconnected_early"]) == 0);
    CHECK(uint64_t(report["sent"]) == clients * messages);
    CHECK(uint64_t(report["negative_acks"]) == 0);
    CHECK(uint64_t(report["protocol_errors"]) == 0);
    // Readings in flight at the kill were never acknowledged; everything else was.
    std::uint64_t acknowledged = report["acknowledged"], unacknowledged = report["unacknowledged"];
    CHECK(acknowledged + unacknowledged == clients * messages);
    CHECK(unacknowledged <= clients * 16);  // at most a window each

    // Disconnects and reconnects by reason: each client lost its connection to the kill, was
    // refused while the gateway was down, and its reconnect is filed under the loss.
    simdjson::dom::element disconnects = report["disconnects"], reconnects = report["reconnects"];
    std::uint64_t lost = member_or_zero(disconnects, "closed_by_server") +
                         member_or_zero(disconnects, "write_error");
    CHECK(lost == clients);
    CHECK(member_or_zero(disconnects, "connect_error") >= clients);
    CHECK(uint64_t(report["reconnected"]) == clients);
    CHECK(member_or_zero(reconnects, "closed_by_server") +
              member_or_zero(reconnects, "write_error") ==
          clients);
    CHECK(member_or_zero(reconnects, "connect_error") == 0);
    // The timeline shows the outage: connections open fell and came back.
    simdjson::dom::array timeline = report["timeline"];
    bool dipped = false;
    for (simdjson::dom::element row : timeline)
        dipped = dipped || uint64_t(row.at(1)) < clients;
    CHECK(dipped);
    CHECK(uint64_t(timeline.at(timeline.size() - 1).at(6)) == clients);

    // Every acknowledged reading survived the SIGKILL: --verify found them all in the restarted
    // gateway.
    CHECK(bool(report["verify"]["ok"]));
    CHECK(uint64_t(report["verify"]["readings_missing"]) == 0);
    CHECK(uint64_t(report["verify"]["value_mismatches"]) == 0);
    CHECK(uint64_t(report["verify"]["readings_expected"]) >= acknowledged);
    // Complete (exit 0) exactly when nothing was in flight at the kill.
    CHECK(bool(report["complete"]) == (unacknowledged == 0));
    CHECK(*status == (unacknowledged == 0 ? 0 : 1));
}
