// citygate: the MQTT ingestion gateway. Embedded defaults, then --config FILE, then flags.
#include <malloc.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>

#include <boost/program_options.hpp>

#include "export/http_post.hpp"
#include "gateway/config.hpp"
#include "gateway/gateway.hpp"
#include "gateway/http/tokens.hpp"
#include "gateway/mqtt/tls.hpp"
#include "gateway/ops/log.hpp"
#include "ingest/access_control.hpp"
#include "storage/engine.hpp"

namespace po = boost::program_options;
using citygate::gateway::Config;
using citygate::gateway::ConfigError;

namespace {

// What a start would refuse beyond the configuration's own checks: credential, ACL and
// certificate files that cannot be read or used, a data directory that cannot be made or
// written. Throws ConfigError saying which.
void check_startup(const Config& config) {
    try {
        citygate::ingest::AccessControl access(
            {config.auth.anonymous, config.auth.credentials_file, config.auth.acl_file});
    } catch (const std::runtime_error& e) {
        throw ConfigError(std::string("auth: ") + e.what());
    }
    if (config.tls.enabled) {
        citygate::gateway::make_server_context({config.tls.cert_file, config.tls.key_file,
                                                config.tls.ca_file,
                                                config.tls.require_client_cert});
    }
    if (!config.http.tokens_file.empty()) {
        try {
            citygate::gateway::TokenStore tokens(config.http.tokens_file);
        } catch (const std::runtime_error& e) {
            throw ConfigError(std::string("http.tokens_file: ") + e.what());
        }
    }
    if (!config.http.tls_cert_file.empty()) {
        try {
            citygate::gateway::make_server_context(
                {config.http.tls_cert_file, config.http.tls_key_file, {}, false});
        } catch (const ConfigError& e) {
            throw ConfigError(std::string("http.tls_cert_file/tls_key_file (") + e.what() + ")");
        }
    }
    // The remote-write receiver's CAs must load (the sender's client does this at start).
    if (const auto& rw = config.export_remote_write; !rw.url.empty()) {
        std::string error;
        auto url = citygate::exports::HttpUrl::parse(rw.url, error);
        try {
            if (url) citygate::exports::HttpPost check(*url, rw.timeout, rw.tls_ca_file);
        } catch (const std::invalid_argument& e) {
            throw ConfigError(std::string("export.remote_write.") + e.what());
        }
    }
    citygate::gateway::check_upstream_files(config.upstreams);
    // The nearest directory that exists must let us create (or write) the data directory.
    std::error_code ec;
    auto dir = std::filesystem::absolute(config.storage.data_dir, ec);
    while (!dir.empty() && !std::filesystem::exists(dir, ec) && dir != dir.parent_path())
        dir = dir.parent_path();
    if (!std::filesystem::is_directory(dir, ec) || ::access(dir.c_str(), W_OK | X_OK) != 0) {
        throw ConfigError("storage.data_dir: cannot create or write " +
                          config.storage.data_dir.string() + " (" + dir.string() +
                          " is not a writable directory)");
    }
}

}  // namespace

int main(int argc, char** argv) {
#ifdef __GLIBC__
    // Allocations of 1 MiB and more (RocksDB's memtable arena blocks, big head vectors and
    // batches) are mapped on their own and unmapped when freed. glibc's default threshold rises
    // to the largest mapped block freed (up to 32 MiB), so after the first memtable flush the
    // next memtables came from the heap, and their memory, freed between live blocks, stayed
    // resident: in a 20k msg/s soak the allocator held 318 MiB free of 414 MiB RSS.
    ::mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
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
        ("scheme", po::value<std::string>()->default_value("password"), "with --hash-password: password (PBKDF2, for people) or device (salted HMAC, for machine-generated secrets of 16+ characters)")
        ("hash-token", "read an HTTP API token from stdin, print its hash for http.tokens_file and exit")
        ("mqtt-port", po::value<unsigned>(), "MQTT port (0 picks a free one; default 1883)")
        ("mqtt-listen", po::value<std::string>(), "MQTT listen address (default 0.0.0.0)")
        ("http-port", po::value<unsigned>(), "HTTP API and /metrics port (0 picks a free one; default 8080)")
        ("http-listen", po::value<std::string>(), "HTTP listen address (default 0.0.0.0)")
        ("data-dir", po::value<std::string>(), "data directory (default ./var)")
        ("io-threads", po::value<unsigned>(), "MQTT I/O threads (0: one per core)")
        ("shards", po::value<unsigned>(), "storage shards (0: one per core)")
        ("fsync", po::value<std::string>(), "WAL fsync policy: none or batch")
        ("min-free-space", po::value<std::string>(), "free space the data volume keeps, writes held under it: auto (default) or a size like 64MiB")
        ("recover", po::value<std::string>(), "point-in-time: start even though a shard's write-ahead log is damaged, dropping what follows the damage (reported in /metrics, /readyz and the status page); refuse (default): exit naming the shard")
        ("log-level", po::value<std::string>(), "debug, info, warn or error")
        ("log-format", po::value<std::string>(), "text or json (one JSON object a line)");
    // clang-format on

    po::variables_map args;
    try {
        // No positional arguments: a config path without --config must not be ignored silently.
        po::store(po::command_line_parser(argc, argv)
                      .options(options)
                      .positional(po::positional_options_description{})
                      .run(),
                  args);
        po::notify(args);
    } catch (const po::too_many_positional_options_error&) {
        std::cerr << "citygate: unexpected argument (a configuration file needs --config FILE)\n";
        return 2;
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
        const std::string scheme = args["scheme"].as<std::string>();
        if (scheme == "device") {
            try {
                std::cout << citygate::ingest::hash_device_secret(password) << "\n";
            } catch (const std::invalid_argument& e) {
                std::cerr << "citygate: " << e.what() << "\n";
                return 2;
            }
        } else if (scheme == "password") {
            std::cout << citygate::ingest::hash_password(password) << "\n";
        } else {
            std::cerr << "citygate: --scheme must be password or device, got " << scheme << "\n";
            return 2;
        }
        return 0;
    }

    if (args.count("hash-token")) {
        std::string token;
        std::getline(std::cin, token);
        if (token.size() < citygate::gateway::min_token_length) {
            std::cerr << "citygate: --hash-token needs a token of at least "
                      << citygate::gateway::min_token_length
                      << " characters on stdin (e.g. openssl rand -hex 32)\n";
            return 2;
        }
        std::cout << citygate::gateway::hash_token(token) << "\n";
        return 0;
    }

    try {
        Config config;
        if (args.count("config")) {
            config = citygate::gateway::load_config_file(args["config"].as<std::string>());
        }
        // Flags go through the configuration parser, so they get the file's checks and ranges.
        auto set = [&](const char* flag, const char* key) {
            if (!args.count(flag)) return;
            std::string value;
            if (args[flag].value().type() == typeid(unsigned)) {
                value = std::to_string(args[flag].as<unsigned>());
            } else {
                value = "\"";
                for (char c : args[flag].as<std::string>()) {
                    if (c == '"' || c == '\\') value += '\\';
                    value += c;
                }
                value += '"';
            }
            try {
                config = citygate::gateway::parse_config(std::string(key) + " = " + value,
                                                         std::string("--") + flag, config);
            } catch (const ConfigError& e) {
                throw ConfigError(std::string("--") + flag + " (" + e.what() + ")");
            }
        };
        set("mqtt-port", "mqtt.port");
        set("http-port", "http.port");
        set("mqtt-listen", "mqtt.listen");
        set("http-listen", "http.listen");
        set("data-dir", "storage.data_dir");
        set("io-threads", "server.io_threads");
        set("shards", "storage.shards");
        set("fsync", "storage.fsync");
        set("min-free-space", "storage.min_free_space");
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
        if (args.count("recover")) {
            auto recover = args["recover"].as<std::string>();
            if (recover == "point-in-time") {
                config.storage.wal_recovery = citygate::storage::WalRecoveryPolicy::point_in_time;
            } else if (recover == "refuse") {
                config.storage.wal_recovery = citygate::storage::WalRecoveryPolicy::refuse;
            } else {
                throw ConfigError("--recover: must be point-in-time or refuse");
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
            check_startup(config);
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
