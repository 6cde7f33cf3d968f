// citygate: the MQTT ingestion gateway. Embedded defaults, then --config FILE, then flags.
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>

#include <boost/program_options.hpp>

#include "gateway/config.hpp"
#include "gateway/gateway.hpp"
#include "gateway/ops/log.hpp"
#include "ingest/access_control.hpp"
#include "storage/engine.hpp"

namespace po = boost::program_options;
using citygate::gateway::Config;
using citygate::gateway::ConfigError;

int main(int argc, char** argv) {
    po::options_description options("citygate " CITYGATE_VERSION
                                    " - MQTT ingestion gateway for city sensor telemetry\n\n"
                                    "Options");
    // clang-format off
    options.add_options()
        ("help,h", "show this help and exit")
        ("version", "print the version and exit")
        ("config,c", po::value<std::string>(), "TOML configuration file (see deploy/citygate.example.toml)")
        ("check-config", "validate the configuration and exit")
        ("restore", po::value<std::string>(), "copy a checkpoint directory into the (empty or absent) data directory and exit")
        ("hash-password", "read a password from stdin, print a credentials-file hash of it and exit")
        ("mqtt-port", po::value<unsigned>(), "MQTT port (0 picks a free one; default 1883)")
        ("mqtt-listen", po::value<std::string>(), "MQTT listen address (default 0.0.0.0)")
        ("http-port", po::value<unsigned>(), "HTTP API and /metrics port (0 picks a free one; default 8080)")
        ("http-listen", po::value<std::string>(), "HTTP listen address (default 0.0.0.0)")
        ("data-dir", po::value<std::string>(), "data directory (default ./var)")
        ("io-threads", po::value<unsigned>(), "MQTT I/O threads (0: one per core)")
        ("shards", po::value<unsigned>(), "storage shards (0: one per core)")
        ("fsync", po::value<std::string>(), "WAL fsync policy: none or batch")
        ("log-level", po::value<std::string>(), "debug, info, warn or error")
        ("log-format", po::value<std::string>(), "text or json (one JSON object a line)");
    // clang-format on

    po::variables_map args;
    try {
        po::store(po::parse_command_line(argc, argv, options), args);
        po::notify(args);
    } catch (const po::error& e) {
        std::cerr << "citygate: " << e.what() << "\n\n" << options << "\n";
        return 2;
    }
    if (args.count("help")) {
        std::cout << options << "\n";
        return 0;
    }
    if (args.count("version")) {
        std::cout << "citygate " << CITYGATE_VERSION << "\n";
        return 0;
    }

    if (args.count("hash-password")) {
        std::string password;
        std::getline(std::cin, password);
        if (password.empty()) {
            std::cerr << "citygate: --hash-password needs a password on stdin\n";
            return 2;
        }
        std::cout << citygate::ingest::hash_password(password) << "\n";
        return 0;
    }

    try {
        Config config;
        if (args.count("config")) {
            config = citygate::gateway::load_config_file(args["config"].as<std::string>());
        }
        auto port = [](unsigned value, const char* flag) {
            if (value > 65535) throw ConfigError(std::string(flag) + ": must be at most 65535");
            return static_cast<std::uint16_t>(value);
        };
        if (args.count("mqtt-port"))
            config.mqtt.port = port(args["mqtt-port"].as<unsigned>(), "--mqtt-port");
        if (args.count("http-port"))
            config.http.port = port(args["http-port"].as<unsigned>(), "--http-port");
        if (args.count("mqtt-listen")) config.mqtt.listen = args["mqtt-listen"].as<std::string>();
        if (args.count("http-listen")) config.http.listen = args["http-listen"].as<std::string>();
        if (args.count("data-dir")) config.storage.data_dir = args["data-dir"].as<std::string>();
        if (args.count("io-threads")) config.server.io_threads = args["io-threads"].as<unsigned>();
        if (args.count("shards")) config.storage.shards = args["shards"].as<unsigned>();
        if (args.count("fsync")) {
            auto policy = args["fsync"].as<std::string>();
            config = citygate::gateway::parse_config("storage.fsync = \"" + policy + "\"",
                                                     "--fsync", config);
        }
        if (args.count("log-level")) {
            auto level = args["log-level"].as<std::string>();
            if (!citygate::log::parse_level(level, config.server.log_level)) {
                throw ConfigError("--log-level: must be debug, info, warn or error");
            }
        }
        if (args.count("log-format")) {
            auto format = args["log-format"].as<std::string>();
            if (!citygate::log::parse_format(format, config.server.log_format)) {
                throw ConfigError("--log-format: must be text or json");
            }
        }
        citygate::gateway::validate(config);
        citygate::log::set_format(config.server.log_format);
        if (args.count("restore")) {
            std::filesystem::path from = args["restore"].as<std::string>();
            std::filesystem::path to = config.storage.data_dir;
            auto restored = citygate::storage::restore_checkpoint(from, to);
            if (!restored.is_ok()) {
                std::cerr << "citygate: " << restored.message() << "\n";
                // Not a checkpoint, or a data directory that is not empty: the command was wrong.
                return restored.code() == citygate::storage::Status::Code::invalid_argument ? 2 : 1;
            }
            std::cout << "restored " << from.string() << " into " << to.string() << "\n";
            return 0;
        }
        if (args.count("check-config")) {
            std::cout << "configuration ok\n";
            return 0;
        }

        citygate::gateway::Gateway gateway(std::move(config));
        gateway.run();
        return 0;
    } catch (const ConfigError& e) {
        std::cerr << "citygate: configuration error: " << e.what() << "\n";
        return 2;
    } catch (const std::exception& e) {
        CG_LOG(error) << "citygate: " << e.what();
        return 1;
    }
}
