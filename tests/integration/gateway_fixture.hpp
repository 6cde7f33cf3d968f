// Starts the real citygate binary on free loopback ports with a temporary data directory, and
// talks HTTP to it with curl.
#pragma once

#include <chrono>
#include <cstdint>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <signal.h>

#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

namespace citygate::test {

struct HttpReply {
    int status = 0;
    std::string body;
};

class GatewayUnderTest {
  public:
    // `toml` (optional) is written to a config file passed with --config.
    explicit GatewayUnderTest(std::string toml = {}, std::vector<std::string> extra_args = {})
        : dir_("citygate-it"), toml_(std::move(toml)), extra_args_(std::move(extra_args)) {
        start();
    }
    // Not started: the test prepares data_dir() (e.g. mounts a volume there), then start()s.
    struct Deferred {};
    GatewayUnderTest(Deferred, std::string toml = {}, std::vector<std::string> extra_args = {})
        : dir_("citygate-it"), toml_(std::move(toml)), extra_args_(std::move(extra_args)) {}

    // Starts the binary (again) on the same data directory.
    void start() {
        std::vector<std::string> argv = {CITYGATE_BINARY,
                                         "--mqtt-listen",
                                         "127.0.0.1",
                                         "--http-listen",
                                         "127.0.0.1",
                                         "--mqtt-port",
                                         "0",
                                         "--http-port",
                                         "0",
                                         "--data-dir",
                                         data_dir(),
                                         "--io-threads",
                                         "2",
                                         "--shards",
                                         "2"};
        if (!toml_.empty()) {
            std::ofstream(dir_.path() / "citygate.toml") << toml_;
            argv.push_back("--config");
            argv.push_back((dir_.path() / "citygate.toml").string());
        }
        argv.insert(argv.end(), extra_args_.begin(), extra_args_.end());
        process_ = std::make_unique<Process>(
            argv, dir_.path() / ("citygate-" + std::to_string(++starts_) + ".log"));
        mqtt_port_ = port_from_log("mqtt listening on ");
        http_port_ = port_from_log("http listening on ");
    }

    std::string data_dir() const { return (dir_.path() / "var").string(); }
    std::uint16_t mqtt_port() const { return mqtt_port_; }
    std::uint16_t http_port() const { return http_port_; }
    Process& process() { return *process_; }
    // Stops the running binary (SIGTERM) and waits for it; its exit status.
    std::optional<int> stop(std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
        if (!process_) return std::nullopt;
        process_->signal(SIGTERM);
        auto status = process_->wait_for(timeout);
        process_.reset();
        return status;
    }
    const std::filesystem::path& dir() const { return dir_.path(); }

    // GET path with the query parameters URL-encoded by curl.
    HttpReply get(const std::string& path,
                  const std::vector<std::pair<std::string, std::string>>& params = {}) const {
        std::string command = "curl -sS -G --max-time 10 -o " + body_file() +
                              " -w '%{http_code}' 'http://127.0.0.1:" + std::to_string(http_port_) +
                              path + "'";
        for (const auto& [name, value] : params) {
            command += " --data-urlencode " + shell_quote(name + "=" + value);
        }
        std::string output;
        HttpReply reply;
        if (run_command(command, &output) != 0) return reply;
        reply.status = std::stoi(output);
        std::ifstream in(body_file());
        reply.body.assign(std::istreambuf_iterator<char>(in), {});
        return reply;
    }

    // Value of one sample line in /metrics (`name{labels}`), or nothing when absent.
    std::optional<double> metric(const std::string& series) const {
        return metric_in(get("/metrics").body, series);
    }

    // The same in one scrape's text: figures that must agree with each other come from one.
    static std::optional<double> metric_in(const std::string& text, const std::string& series) {
        std::size_t at = 0;
        while ((at = text.find(series + " ", at)) != std::string::npos) {
            if (at == 0 || text[at - 1] == '\n')
                return std::stod(text.substr(at + series.size() + 1));
            at += series.size();
        }
        return std::nullopt;
    }

    static std::string shell_quote(const std::string& text) {
        std::string quoted = "'";
        for (char c : text)
            quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
        return quoted + "'";
    }

  private:
    std::string body_file() const { return (dir_.path() / "http-body").string(); }

    std::uint16_t port_from_log(const std::string& needle) {
        auto line = process_->wait_for_log(needle, std::chrono::seconds(30));
        INFO("citygate log:\n" << process_->log());
        REQUIRE(line);
        std::size_t at = line->find(needle) + needle.size();
        std::size_t colon = line->find(':', at);
        return static_cast<std::uint16_t>(std::stoi(line->substr(colon + 1)));
    }

    TempDir dir_;
    std::string toml_;
    std::vector<std::string> extra_args_;
    std::unique_ptr<Process> process_;
    int starts_ = 0;
    std::uint16_t mqtt_port_ = 0;
    std::uint16_t http_port_ = 0;
};

// Publishes one message with mosquitto_pub (client id it-pub); its exit status.
inline int mosquitto_pub(const GatewayUnderTest& gateway, const std::string& version, int qos,
                         const std::string& topic, const std::string& message) {
    std::string output;
    int status = run_command(
        "mosquitto_pub -h 127.0.0.1 -p " + std::to_string(gateway.mqtt_port()) + " -V " + version +
            " -q " + std::to_string(qos) + " -i it-pub -t " + GatewayUnderTest::shell_quote(topic) +
            " -m " + GatewayUnderTest::shell_quote(message),
        &output);
    INFO("mosquitto_pub: " << output);
    return status;
}

}  // namespace citygate::test
