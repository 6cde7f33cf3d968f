// Security through the real binary: TLS, client certificates whose CN is the device identity,
// username/password from a hashed credentials file reloaded on SIGHUP, anonymous policy, and
// ACLs confining a device to its own topic. Certificates are made by the test with openssl.
#include <catch2/catch.hpp>

#include <signal.h>

#include <fstream>
#include <thread>

#include "tests/integration/gateway_fixture.hpp"

using citygate::test::GatewayUnderTest;
using citygate::test::run_command;
using citygate::test::TempDir;
using namespace std::chrono_literals;

namespace {

// A CA, a server certificate for 127.0.0.1, and client certificates for two devices.
class Certificates {
  public:
    Certificates() {
        std::string d = dir_.path().string();
        std::string script =
            "set -e; cd " + d +
            "; openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
            "-subj /CN=citygate-test-ca"
            "; openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr "
            "-subj /CN=127.0.0.1"
            "; printf 'subjectAltName=IP:127.0.0.1,DNS:localhost' > san.ext"
            "; openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
            "-out server.pem -days 2 -extfile san.ext";
        for (const char* device : {"air-000042", "air-000043"}) {
            script += std::string("; openssl req -newkey rsa:2048 -nodes -keyout ") + device +
                      ".key -out " + device + ".csr -subj /CN=" + device +
                      "; openssl x509 -req -in " + device + ".csr -CA ca.pem -CAkey ca.key " +
                      "-CAcreateserial -out " + device + ".pem -days 2";
        }
        std::string output;
        int status = run_command("bash -c " + GatewayUnderTest::shell_quote(script), &output);
        INFO(output);
        REQUIRE(status == 0);
    }
    std::string path(const std::string& name) const { return (dir_.path() / name).string(); }

  private:
    TempDir dir_{"citygate-certs"};
};

std::uint16_t tls_port(GatewayUnderTest& gateway) {
    auto line = gateway.process().wait_for_log("mqtts listening on ", 10s);
    REQUIRE(line);
    return static_cast<std::uint16_t>(std::stoi(line->substr(line->rfind(':') + 1)));
}

int publish(const std::string& connection, const std::string& topic, const std::string& payload,
            std::string* output = nullptr) {
    return run_command("mosquitto_pub -h 127.0.0.1 -q 1 " + connection + " -t " +
                           GatewayUnderTest::shell_quote(topic) + " -m " +
                           GatewayUnderTest::shell_quote(payload),
                       output);
}

std::string reading(double value) {
    auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
    return "{\"ts\":" + std::to_string(now) + ",\"pm25\":" + std::to_string(value) + "}";
}

std::size_t stored(const GatewayUnderTest& gateway, const std::string& device) {
    auto reply = gateway.get(
        "/api/v1/query_range",
        {{"series", "pm25{device=\"" + device + "\"}"}, {"start", "0"}, {"end", "9000000000000"}});
    REQUIRE(reply.status == 200);
    std::size_t count = 0;
    for (std::size_t at = 0; (at = reply.body.find("],[", at)) != std::string::npos; ++at)
        ++count;
    return reply.body.find("\"values\":[[") == std::string::npos ? 0 : count + 1;
}

}  // namespace

TEST_CASE("TLS with client certificates: the CN is the device, and the ACL keeps it in its lane") {
    Certificates certs;
    TempDir config_dir("citygate-acl");
    std::string acl = (config_dir.path() / "acl.toml").string();
    std::ofstream(acl) << "[[rule]]\nuser = \"*\"\npublish = [\"city/+/+/%u\"]\n";
    GatewayUnderTest gateway(
        "[tls]\nenabled = true\nlisten = \"127.0.0.1\"\nport = 0\n"
        "cert_file = \"" +
        certs.path("server.pem") +
        "\"\n"
        "key_file = \"" +
        certs.path("server.key") +
        "\"\n"
        "ca_file = \"" +
        certs.path("ca.pem") +
        "\"\n"
        "require_client_cert = true\n"
        "[auth]\nallow_anonymous = \"never\"\nacl_file = \"" +
        acl + "\"\n");
    std::uint16_t port = tls_port(gateway);
    std::string device42 = "-p " + std::to_string(port) + " --cafile " + certs.path("ca.pem") +
                           " --cert " + certs.path("air-000042.pem") + " --key " +
                           certs.path("air-000042.key");

    std::string output;
    REQUIRE(publish(device42, "city/pudong/air/air-000042", reading(12), &output) == 0);
    CHECK(stored(gateway, "air-000042") == 1);

    // Its own certificate does not let it speak for another device.
    CHECK(publish(device42, "city/pudong/air/air-000043", reading(13), &output) == 0);
    CHECK(stored(gateway, "air-000043") == 0);
    CHECK(gateway.metric(R"(citygate_errors_total{kind="acl_denied"})") == 1);

    // No client certificate: the handshake fails and nothing else is disturbed.
    std::string no_cert = "-p " + std::to_string(port) + " --cafile " + certs.path("ca.pem");
    CHECK(publish(no_cert, "city/pudong/air/air-000042", reading(14), &output) != 0);
    CHECK(gateway.metric(R"(citygate_errors_total{kind="tls_handshake_failed"})") >= 1);

    // Plain TCP with anonymous access off is refused at CONNECT.
    std::string plain = "-p " + std::to_string(gateway.mqtt_port());
    CHECK(publish(plain, "city/pudong/air/air-000042", reading(15), &output) != 0);
    CHECK(gateway.metric(R"(citygate_errors_total{kind="auth_failed"})") == 1);
    CHECK(stored(gateway, "air-000042") == 1);
}

TEST_CASE("username and password from a hashed credentials file, reloaded on SIGHUP") {
    TempDir config_dir("citygate-creds");
    std::string credentials = (config_dir.path() / "credentials").string();
    auto add_user = [&](const std::string& user, const std::string& password) {
        std::string hash;
        REQUIRE(run_command("printf '%s\\n' " + GatewayUnderTest::shell_quote(password) + " | " +
                                CITYGATE_BINARY + " --hash-password",
                            &hash) == 0);
        REQUIRE(hash.starts_with("pbkdf2-sha256$"));
        std::ofstream(credentials) << user << ":" << hash;
    };
    add_user("sensor-7", "first-secret");
    GatewayUnderTest gateway("[auth]\nallow_anonymous = \"never\"\ncredentials_file = \"" +
                             credentials + "\"\n");
    std::string port = "-p " + std::to_string(gateway.mqtt_port());

    CHECK(publish(port + " -u sensor-7 -P first-secret", "city/putuo/air/s7", reading(1)) == 0);
    CHECK(publish(port + " -u sensor-7 -P wrong", "city/putuo/air/s7", reading(2)) != 0);
    CHECK(publish(port + " -V mqttv5 -u sensor-7 -P wrong", "city/putuo/air/s7", reading(3)) != 0);
    CHECK(publish(port, "city/putuo/air/s7", reading(4)) != 0);  // anonymous
    CHECK(stored(gateway, "s7") == 1);
    CHECK(gateway.metric(R"(citygate_errors_total{kind="auth_failed"})") == 3);

    add_user("sensor-7", "second-secret");
    REQUIRE(gateway.process().signal(SIGHUP));
    REQUIRE(gateway.process().wait_for_log("reloaded credentials", 10s));
    CHECK(publish(port + " -u sensor-7 -P first-secret", "city/putuo/air/s7", reading(5)) != 0);
    CHECK(publish(port + " -u sensor-7 -P second-secret", "city/putuo/air/s7", reading(6)) == 0);
    CHECK(stored(gateway, "s7") == 2);
}

TEST_CASE("by default anonymous clients are accepted on loopback only") {
    // The fixture's gateway runs on the embedded default: the loopback publisher is let in.
    GatewayUnderTest gateway;
    CHECK(publish("-p " + std::to_string(gateway.mqtt_port()), "city/qingpu/air/q1", reading(1)) ==
          0);
    CHECK(stored(gateway, "q1") == 1);
}
