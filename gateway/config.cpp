// TOML configuration with strict keys, typed values and clear messages.
#include "gateway/config.hpp"

#include <charconv>
#include <cmath>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include <toml++/toml.h>
#include <boost/asio/ip/address.hpp>

#include "export/http_post.hpp"
#include "gateway/http/http_auth.hpp"
#include "protocols/payload/topic_template.hpp"
#include "storage/cpu_limit.hpp"

namespace citygate::gateway {
namespace {

[[noreturn]] void fail(std::string_view option, std::string_view problem) {
    throw ConfigError(std::string(option) + ": " + std::string(problem));
}

template <typename Int>
Int integer(const toml::node& node, std::string_view option, std::int64_t min, std::int64_t max) {
    auto value = node.value<std::int64_t>();
    if (!node.is_integer() || !value) fail(option, "expected an integer");
    if (*value < min || *value > max) {
        fail(option, "must be between " + std::to_string(min) + " and " + std::to_string(max) +
                         ", got " + std::to_string(*value));
    }
    return static_cast<Int>(*value);
}

std::string string(const toml::node& node, std::string_view option) {
    if (!node.is_string()) fail(option, "expected a string");
    return *node.value<std::string>();
}

payload::Format format(const toml::node& node, std::string_view option) {
    std::string text = string(node, option);
    auto parsed = payload::parse_format(text);
    if (!parsed) fail(option, "must be json, senml, line, number or detect, got \"" + text + "\"");
    return *parsed;
}

double number(const toml::node& node, std::string_view option) {
    auto value = node.value<double>();  // integers convert too
    if (!value || *value < 0 || !std::isfinite(*value)) {
        fail(option, "expected a non-negative number");
    }
    return *value;
}

bool boolean(const toml::node& node, std::string_view option) {
    if (!node.is_boolean()) fail(option, "expected true or false");
    return *node.value<bool>();
}

std::chrono::milliseconds duration(const toml::node& node, std::string_view option) {
    return parse_duration(string(node, option), option);
}

// A period that "0s" turns off; otherwise at least a second, so a timer cannot spin.
std::chrono::milliseconds period_or_off(const toml::node& node, std::string_view option) {
    auto period = duration(node, option);
    if (period.count() != 0 && period < std::chrono::seconds(1))
        fail(option, "must be 0s (off) or at least 1s");
    return period;
}

using Setter = std::function<void(const toml::node&, Config&, std::string_view option)>;

// Every option the file may set, by its dotted name.
const std::map<std::string, Setter, std::less<>>& setters() {
    static const std::map<std::string, Setter, std::less<>> table = {
        {"mqtt.listen", [](auto& n, Config& c, auto o) { c.mqtt.listen = string(n, o); }},
        {"mqtt.port",
         [](auto& n, Config& c, auto o) { c.mqtt.port = integer<std::uint16_t>(n, o, 0, 65535); }},
        {"mqtt.max_packet_size",
         [](auto& n, Config& c, auto o) {
             c.mqtt.max_packet_size = integer<std::uint32_t>(n, o, 64, 268'435'455);
         }},
        {"mqtt.max_topic_length",
         [](auto& n, Config& c, auto o) {
             c.mqtt.max_topic_length = integer<std::uint16_t>(n, o, 8, 65535);
         }},
        {"mqtt.receive_maximum",
         [](auto& n, Config& c, auto o) {
             c.mqtt.receive_maximum = integer<std::uint16_t>(n, o, 1, 65535);
         }},
        {"mqtt.connect_timeout",
         [](auto& n, Config& c, auto o) { c.mqtt.connect_timeout = duration(n, o); }},
        {"mqtt.max_connections",
         [](auto& n, Config& c, auto o) {
             c.mqtt.max_connections = integer<std::size_t>(n, o, 1, 100'000'000);
         }},
        {"tls.enabled", [](auto& n, Config& c, auto o) { c.tls.enabled = boolean(n, o); }},
        {"tls.listen", [](auto& n, Config& c, auto o) { c.tls.listen = string(n, o); }},
        {"tls.port",
         [](auto& n, Config& c, auto o) { c.tls.port = integer<std::uint16_t>(n, o, 0, 65535); }},
        {"tls.cert_file", [](auto& n, Config& c, auto o) { c.tls.cert_file = string(n, o); }},
        {"tls.key_file", [](auto& n, Config& c, auto o) { c.tls.key_file = string(n, o); }},
        {"tls.ca_file", [](auto& n, Config& c, auto o) { c.tls.ca_file = string(n, o); }},
        {"tls.require_client_cert",
         [](auto& n, Config& c, auto o) { c.tls.require_client_cert = boolean(n, o); }},
        {"auth.allow_anonymous",
         [](auto& n, Config& c, auto o) {
             std::string policy = string(n, o);
             if (policy == "never") {
                 c.auth.anonymous = ingest::AnonymousPolicy::never;
             } else if (policy == "loopback") {
                 c.auth.anonymous = ingest::AnonymousPolicy::loopback;
             } else if (policy == "always") {
                 c.auth.anonymous = ingest::AnonymousPolicy::always;
             } else {
                 fail(o, "must be \"never\", \"loopback\" or \"always\", got \"" + policy + "\"");
             }
         }},
        {"auth.credentials_file",
         [](auto& n, Config& c, auto o) { c.auth.credentials_file = string(n, o); }},
        {"auth.acl_file", [](auto& n, Config& c, auto o) { c.auth.acl_file = string(n, o); }},
        {"auth.threads",
         [](auto& n, Config& c, auto o) { c.auth.threads = integer<unsigned>(n, o, 1, 64); }},
        {"auth.max_pending",
         [](auto& n, Config& c, auto o) {
             c.auth.max_pending = integer<std::size_t>(n, o, 1, 10'000'000);
         }},
        {"auth.max_failures",
         [](auto& n, Config& c, auto o) {
             c.auth.max_failures = integer<std::size_t>(n, o, 0, 1'000'000);
         }},
        {"auth.failure_window",
         [](auto& n, Config& c, auto o) { c.auth.failure_window = duration(n, o); }},
        {"auth.throttle_entries",
         [](auto& n, Config& c, auto o) {
             c.auth.throttle_entries = integer<std::size_t>(n, o, 1, 100'000'000);
         }},
        {"mqtt.max_publish_rate",
         [](auto& n, Config& c, auto o) { c.mqtt.max_publish_rate = number(n, o); }},
        {"mqtt.publish_burst",
         [](auto& n, Config& c, auto o) { c.mqtt.publish_burst = number(n, o); }},
        {"mqtt.max_send_queue",
         [](auto& n, Config& c, auto o) {
             c.mqtt.max_send_queue = integer<std::size_t>(n, o, 64, std::int64_t{1} << 30);
         }},
        {"mqtt.write_timeout",
         [](auto& n, Config& c, auto o) { c.mqtt.write_timeout = duration(n, o); }},
        {"mqtt.partial_packet_timeout",
         [](auto& n, Config& c, auto o) { c.mqtt.partial_packet_timeout = duration(n, o); }},
        {"mqtt.max_partial_bytes_total",
         [](auto& n, Config& c, auto o) {
             c.mqtt.max_partial_bytes_total =
                 integer<std::size_t>(n, o, 1024, std::int64_t{1} << 40);
         }},
        {"http.listen", [](auto& n, Config& c, auto o) { c.http.listen = string(n, o); }},
        {"http.port",
         [](auto& n, Config& c, auto o) { c.http.port = integer<std::uint16_t>(n, o, 0, 65535); }},
        {"http.threads",
         [](auto& n, Config& c, auto o) { c.http.threads = integer<unsigned>(n, o, 1, 64); }},
        {"http.max_query_series",
         [](auto& n, Config& c, auto o) {
             c.http.max_query_series = integer<std::size_t>(n, o, 1, 100'000'000);
         }},
        {"http.max_query_points",
         [](auto& n, Config& c, auto o) {
             c.http.max_query_points = integer<std::size_t>(n, o, 1, 1'000'000'000);
         }},
        {"http.max_query_bytes",
         [](auto& n, Config& c, auto o) {
             c.http.max_query_bytes = integer<std::size_t>(n, o, 4096, std::int64_t{1} << 40);
         }},
        {"http.query_memory_budget",
         [](auto& n, Config& c, auto o) {
             c.http.query_memory_budget = integer<std::size_t>(n, o, 4096, std::int64_t{1} << 40);
         }},
        {"http.query_timeout",
         [](auto& n, Config& c, auto o) { c.http.query_timeout = duration(n, o); }},
        {"http.lookback_delta",
         [](auto& n, Config& c, auto o) { c.http.lookback_delta = duration(n, o); }},
        {"http.promql_rollup_min_buckets",
         [](auto& n, Config& c, auto o) {
             c.http.promql_rollup_min_buckets = integer<unsigned>(n, o, 0, 1'000'000);
         }},
        {"http.query_threads",
         [](auto& n, Config& c, auto o) { c.http.query_threads = integer<unsigned>(n, o, 1, 64); }},
        {"http.query_queue",
         [](auto& n, Config& c, auto o) {
             c.http.query_queue = integer<std::size_t>(n, o, 0, 10'000);
         }},
        {"http.header_timeout",
         [](auto& n, Config& c, auto o) { c.http.header_timeout = duration(n, o); }},
        {"http.idle_timeout",
         [](auto& n, Config& c, auto o) { c.http.idle_timeout = duration(n, o); }},
        {"http.max_connections",
         [](auto& n, Config& c, auto o) {
             c.http.max_connections = integer<std::size_t>(n, o, 1, 1'000'000);
         }},
        {"http.max_connections_per_source",
         [](auto& n, Config& c, auto o) {
             c.http.max_connections_per_source = integer<std::size_t>(n, o, 1, 1'000'000);
         }},
        {"http.max_write_body",
         [](auto& n, Config& c, auto o) {
             c.http.max_write_body = integer<std::size_t>(n, o, 1024, std::int64_t{1} << 32);
         }},
        {"http.max_write_decoded_body",
         [](auto& n, Config& c, auto o) {
             c.http.max_write_decoded_body =
                 integer<std::size_t>(n, o, 1024, std::int64_t{1} << 34);
         }},
        {"http.max_write_samples",
         [](auto& n, Config& c, auto o) {
             c.http.max_write_samples = integer<std::size_t>(n, o, 1, 100'000'000);
         }},
        {"http.tokens_file", [](auto& n, Config& c, auto o) { c.http.tokens_file = string(n, o); }},
        {"http.admin_from",
         [](auto& n, Config& c, auto o) {
             const toml::array* array = n.as_array();
             if (!array) fail(o, "expected an array of addresses or CIDR blocks");
             c.http.admin_from.clear();
             for (const toml::node& item : *array)
                 c.http.admin_from.push_back(string(item, o));
         }},
        {"http.checkpoint_interval",
         [](auto& n, Config& c, auto o) { c.http.checkpoint_interval = duration(n, o); }},
        {"http.tls_cert_file",
         [](auto& n, Config& c, auto o) { c.http.tls_cert_file = string(n, o); }},
        {"http.tls_key_file",
         [](auto& n, Config& c, auto o) { c.http.tls_key_file = string(n, o); }},
        {"storage.data_dir", [](auto& n, Config& c, auto o) { c.storage.data_dir = string(n, o); }},
        {"storage.shards",
         [](auto& n, Config& c, auto o) { c.storage.shards = integer<unsigned>(n, o, 0, 256); }},
        {"storage.queue_capacity",
         [](auto& n, Config& c, auto o) {
             c.storage.queue_capacity = integer<std::size_t>(n, o, 16, 100'000'000);
         }},
        {"storage.fsync",
         [](auto& n, Config& c, auto o) {
             std::string policy = string(n, o);
             if (policy == "none") {
                 c.storage.fsync = storage::FsyncPolicy::none;
             } else if (policy == "batch") {
                 c.storage.fsync = storage::FsyncPolicy::batch;
             } else {
                 fail(o, "must be \"none\" or \"batch\", got \"" + policy + "\"");
             }
         }},
        {"storage.partition_window",
         [](auto& n, Config& c, auto o) { c.storage.partition_window = duration(n, o); }},
        {"storage.out_of_order_window",
         [](auto& n, Config& c, auto o) { c.storage.out_of_order_window = duration(n, o); }},
        {"storage.retention",
         [](auto& n, Config& c, auto o) { c.storage.retention = duration(n, o); }},
        {"storage.memory_budget",
         [](auto& n, Config& c, auto o) {
             if (n.is_integer()) {
                 c.storage.memory_budget = integer<std::uint64_t>(n, o, 0, std::int64_t{1} << 50);
             } else if (std::string text = string(n, o); text == "auto") {
                 c.storage.memory_budget.reset();
             } else if (text == "off") {
                 c.storage.memory_budget = 0;
             } else {
                 c.storage.memory_budget = parse_size(text, o);
             }
             const std::uint64_t budget = c.storage.memory_budget.value_or(0);
             if (budget != 0 && budget < (std::uint64_t{64} << 20))
                 fail(o, "must be at least 64 MiB (or \"off\", or \"auto\")");
             if (budget > (std::uint64_t{1} << 50)) fail(o, "must be at most 1 PiB");
         }},
        {"storage.commit_delay",
         [](auto& n, Config& c, auto o) {
             c.storage.commit_delay = duration(n, o);
             if (c.storage.commit_delay > std::chrono::milliseconds(100))
                 fail(o, "must be at most 100ms: it adds to every acknowledgement's latency");
         }},
        {"storage.head_flush_interval",
         [](auto& n, Config& c, auto o) {
             c.storage.head_flush_interval = duration(n, o);
             if (c.storage.head_flush_interval < std::chrono::seconds(1))
                 fail(o, "must be at least 1s");
         }},
        {"storage.minute_block_min_points",
         [](auto& n, Config& c, auto o) {
             c.storage.minute_block_min_points = integer<std::size_t>(n, o, 1, 1 << 20);
         }},
        {"storage.memtable_idle_flush",
         [](auto& n, Config& c, auto o) { c.storage.memtable_idle_flush = period_or_off(n, o); }},
        {"storage.memory_trim_interval",
         [](auto& n, Config& c, auto o) { c.storage.memory_trim_interval = period_or_off(n, o); }},
        {"storage.memtable_budget",
         [](auto& n, Config& c, auto o) {
             c.storage.memtable_budget = integer<std::size_t>(n, o, 0, std::int64_t{1} << 40);
         }},
        {"storage.max_series",
         [](auto& n, Config& c, auto o) {
             c.storage.max_series = integer<std::size_t>(n, o, 0, std::int64_t{1} << 40);
         }},
        {"storage.max_series_per_shard",
         [](auto& n, Config& c, auto o) {
             c.storage.max_series_per_shard = integer<std::size_t>(n, o, 1, std::int64_t{1} << 40);
         }},
        {"ingest.max_series_per_identity",
         [](auto& n, Config& c, auto o) {
             c.ingest.max_series_per_identity = integer<std::size_t>(n, o, 0, std::int64_t{1} << 40);
         }},
        {"ingest.max_new_series_per_minute",
         [](auto& n, Config& c, auto o) {
             c.ingest.max_new_series_per_minute =
                 integer<std::size_t>(n, o, 0, std::int64_t{1} << 40);
         }},
        {"ingest.series_cache_slots",
         [](auto& n, Config& c, auto o) {
             c.ingest.series_cache_slots = integer<std::size_t>(n, o, 0, std::int64_t{1} << 24);
         }},
        {"ingest.topic_templates",
         [](auto& n, Config& c, auto o) {
             const toml::array* array = n.as_array();
             if (!array) fail(o, "expected an array of strings");
             c.ingest.topic_templates.clear();
             for (const toml::node& item : *array)
                 c.ingest.topic_templates.push_back(string(item, o));
         }},
        {"storage.min_free_space",
         [](auto& n, Config& c, auto o) {
             if (n.is_integer()) {
                 c.storage.min_free_space =
                     integer<std::uint64_t>(n, o, 0, std::int64_t{1} << 50);
                 return;
             }
             std::string text = string(n, o);
             if (text == "auto") {
                 c.storage.min_free_space.reset();
                 return;
             }
             std::uint64_t bytes = parse_size(text, o);
             if (bytes > (std::uint64_t{1} << 50)) fail(o, "must be at most 1 PiB");
             c.storage.min_free_space = bytes;
         }},
        {"storage.backup_dir",
         [](auto& n, Config& c, auto o) { c.storage.backup_dir = string(n, o); }},
        {"storage.backup_keep",
         [](auto& n, Config& c, auto o) {
             c.storage.backup_keep = integer<std::size_t>(n, o, 0, 1'000'000);
         }},
        {"storage.test_write_delay",
         [](auto& n, Config& c, auto o) { c.storage.test_write_delay = duration(n, o); }},
        {"storage.test_read_delay",
         [](auto& n, Config& c, auto o) { c.storage.test_read_delay = duration(n, o); }},
        {"ingest.default_format",
         [](auto& n, Config& c, auto o) { c.ingest.default_format = format(n, o); }},
        {"ingest.line_precision",
         [](auto& n, Config& c, auto o) {
             std::string text = string(n, o);
             auto precision = payload::parse_precision(text);
             if (!precision) fail(o, "must be ns, us, ms or s, got \"" + text + "\"");
             c.ingest.line_precision = *precision;
         }},
        {"ingest.max_future",
         [](auto& n, Config& c, auto o) { c.ingest.max_future = duration(n, o); }},
        {"ingest.min_timestamp_ms",
         [](auto& n, Config& c, auto o) {
             c.ingest.min_timestamp_ms = integer<std::int64_t>(n, o, 0, 4'102'444'800'000);
         }},
        {"ingest.seconds_by_magnitude",
         [](auto& n, Config& c, auto o) { c.ingest.seconds_by_magnitude = boolean(n, o); }},
        {"ingest.close_on_bad_payload",
         [](auto& n, Config& c, auto o) { c.ingest.close_on_bad_payload = boolean(n, o); }},
        {"ingest.format",
         [](auto& n, Config& c, auto o) {
             const toml::array* rules = n.as_array();
             if (!rules) fail(o, "expected [[ingest.format]] tables");
             c.ingest.formats.clear();
             for (const toml::node& item : *rules) {
                 const toml::table* rule = item.as_table();
                 if (!rule || !(*rule)["topic"] || !(*rule)["format"] || rule->size() != 2) {
                     fail(o, "each [[ingest.format]] has exactly topic = \"filter\" and format");
                 }
                 std::string filter = string(*(*rule)["topic"].node(), std::string(o) + ".topic");
                 if (filter.empty()) fail(std::string(o) + ".topic", "must not be empty");
                 c.ingest.formats.push_back(
                     {filter, format(*(*rule)["format"].node(), std::string(o) + ".format")});
             }
         }},
        {"server.io_threads",
         [](auto& n, Config& c, auto o) {
             c.server.io_threads = integer<unsigned>(n, o, 0, 1024);
         }},
        {"server.log_level",
         [](auto& n, Config& c, auto o) {
             std::string level = string(n, o);
             if (!log::parse_level(level, c.server.log_level)) {
                 fail(o, "must be debug, info, warn or error, got \"" + level + "\"");
             }
         }},
        {"server.log_format",
         [](auto& n, Config& c, auto o) {
             std::string text = string(n, o);
             if (!log::parse_format(text, c.server.log_format)) {
                 fail(o, "must be \"text\" or \"json\", got \"" + text + "\"");
             }
         }},
        {"city.max_pairs",
         [](auto& n, Config& c, auto o) {
             c.city.max_pairs = integer<std::size_t>(n, o, 0, 1'000'000);
         }},
        {"city.district_tag",
         [](auto& n, Config& c, auto o) {
             c.city.district_tag = string(n, o);
             if (c.city.district_tag.empty()) fail(o, "must not be empty");
         }},
        {"server.shutdown_timeout",
         [](auto& n, Config& c, auto o) { c.server.shutdown_timeout = duration(n, o); }},
    };
    return table;
}

// One [[upstream]] section, `option` naming it ("upstream[0]") in errors.
Config::Upstream parse_upstream(const toml::table& table, const std::string& option) {
    using U = Config::Upstream;
    using UpstreamSetter = std::function<void(const toml::node&, U&, std::string_view)>;
    static const std::map<std::string, UpstreamSetter, std::less<>> keys = {
        {"name", [](auto& n, U& u, auto o) { u.name = string(n, o); }},
        {"url", [](auto& n, U& u, auto o) { u.url = string(n, o); }},
        {"topics",
         [](auto& n, U& u, auto o) {
             const toml::array* list = n.as_array();
             if (!list) fail(o, "expected a list of topic filters");
             u.topics.clear();
             for (const auto& item : *list)
                 u.topics.push_back(string(item, o));
         }},
        {"share_group", [](auto& n, U& u, auto o) { u.share_group = string(n, o); }},
        {"client_id", [](auto& n, U& u, auto o) { u.client_id = string(n, o); }},
        {"connections",
         [](auto& n, U& u, auto o) { u.connections = integer<unsigned>(n, o, 1, 64); }},
        {"session_expiry", [](auto& n, U& u, auto o) { u.session_expiry = duration(n, o); }},
        {"receive_maximum",
         [](auto& n, U& u, auto o) { u.receive_maximum = integer<std::uint16_t>(n, o, 1, 65535); }},
        {"keep_alive", [](auto& n, U& u, auto o) { u.keep_alive = duration(n, o); }},
        {"connect_timeout", [](auto& n, U& u, auto o) { u.connect_timeout = duration(n, o); }},
        {"reconnect_min", [](auto& n, U& u, auto o) { u.reconnect_min = duration(n, o); }},
        {"reconnect_max", [](auto& n, U& u, auto o) { u.reconnect_max = duration(n, o); }},
        {"username", [](auto& n, U& u, auto o) { u.username = string(n, o); }},
        {"password", [](auto& n, U& u, auto o) { u.password = string(n, o); }},
        {"password_file", [](auto& n, U& u, auto o) { u.password_file = string(n, o); }},
        {"tls_ca_file", [](auto& n, U& u, auto o) { u.tls_ca_file = string(n, o); }},
        {"tls_cert_file", [](auto& n, U& u, auto o) { u.tls_cert_file = string(n, o); }},
        {"tls_key_file", [](auto& n, U& u, auto o) { u.tls_key_file = string(n, o); }},
        {"tls_insecure", [](auto& n, U& u, auto o) { u.tls_insecure = boolean(n, o); }},
    };
    U upstream;
    for (const auto& [key, node] : table) {
        std::string name = option + "." + std::string(key.str());
        auto setter = keys.find(key.str());
        if (setter == keys.end()) fail(name, "unknown option");
        setter->second(node, upstream, name);
    }
    return upstream;
}
// [export.mqtt], a table two levels down, with its own options.
void apply_export_mqtt(const toml::table& table, Config& config) {
    using Option = std::function<void(const toml::node&, Config::ExportMqtt&, std::string_view)>;
    static const std::map<std::string, Option, std::less<>> options = {
        {"url", [](auto& n, auto& e, auto o) { e.url = string(n, o); }},
        {"topic_prefix", [](auto& n, auto& e, auto o) { e.topic_prefix = string(n, o); }},
        {"client_id", [](auto& n, auto& e, auto o) { e.client_id = string(n, o); }},
        {"qos", [](auto& n, auto& e, auto o) { e.qos = integer<int>(n, o, 0, 2); }},
        {"retain", [](auto& n, auto& e, auto o) { e.retain = boolean(n, o); }},
        {"interval", [](auto& n, auto& e, auto o) { e.interval = duration(n, o); }},
        {"max_buffered",
         [](auto& n, auto& e, auto o) {
             e.max_buffered = integer<std::size_t>(n, o, 1, 10'000'000);
         }},
        {"username", [](auto& n, auto& e, auto o) { e.username = string(n, o); }},
        {"password", [](auto& n, auto& e, auto o) { e.password = string(n, o); }},
        {"tls_ca_file", [](auto& n, auto& e, auto o) { e.tls_ca_file = string(n, o); }},
    };
    for (const auto& [key, node] : table) {
        std::string name = "export.mqtt." + std::string(key.str());
        auto option = options.find(key.str());
        if (option == options.end()) fail(name, "unknown option");
        option->second(node, config.export_mqtt, name);
    }
}

// export.mqtt's cross-field rules.
void validate_export_mqtt(const Config& config) {
    const Config::ExportMqtt& e = config.export_mqtt;
    if (!e.enabled()) return;
    std::string_view url = e.url;
    bool tls = url.starts_with("mqtts://");
    if (!tls && !url.starts_with("mqtt://")) {
        fail("export.mqtt.url", "must start with mqtt:// or mqtts://, got \"" + e.url + "\"");
    }
    std::string_view host = url.substr(url.find("://") + 3);
    if (host.empty() || host.front() == ':' || host.find('/') != std::string_view::npos) {
        fail("export.mqtt.url", "expected mqtt://host[:port], got \"" + e.url + "\"");
    }
    if (!e.tls_ca_file.empty() && !tls) fail("export.mqtt.tls_ca_file", "needs an mqtts:// url");
    if (e.topic_prefix.find_first_of("+#") != std::string::npos) {
        fail("export.mqtt.topic_prefix", "must not hold the wildcards + or #");
    }
    if (e.client_id.empty()) fail("export.mqtt.client_id", "must not be empty");
    if (e.interval < std::chrono::seconds(1) || e.interval > std::chrono::hours(1) ||
        e.interval % std::chrono::seconds(1) != std::chrono::milliseconds(0)) {
        fail("export.mqtt.interval", "must be whole seconds, from \"1s\" to \"1h\"");
    }
    if (config.city.max_pairs == 0) {
        fail("export.mqtt.url", "publishes the city aggregates: needs city.max_pairs above 0");
    }
    // Paho bounds its queue whether connected or not, and a window's messages enter it at once.
    if (e.max_buffered < config.city.max_pairs) {
        fail("export.mqtt.max_buffered",
             "must be at least city.max_pairs (" + std::to_string(config.city.max_pairs) +
                 "): a window publishes up to that many messages at once through Paho's buffer");
    }
}
// [export.remote_write]: a section two levels deep, with its own table.
const std::map<std::string, Setter, std::less<>>& remote_write_setters() {
    using RW = Config::ExportRemoteWrite;
    auto rw = [](Config& c) -> RW& { return c.export_remote_write; };
    static const std::map<std::string, Setter, std::less<>> table = {
        {"url", [rw](auto& n, Config& c, auto o) { rw(c).url = string(n, o); }},
        {"tls_ca_file", [rw](auto& n, Config& c, auto o) { rw(c).tls_ca_file = string(n, o); }},
        {"select",
         [rw](auto& n, Config& c, auto o) {
             const toml::array* array = n.as_array();
             if (!array) fail(o, "expected an array of series selectors");
             rw(c).select.clear();
             for (const toml::node& item : *array)
                 rw(c).select.push_back(string(item, o));
         }},
        {"source",
         [rw](auto& n, Config& c, auto o) {
             std::string text = string(n, o);
             if (text != "raw" && text != "rollup_1m" && text != "both") {
                 fail(o, "must be \"raw\", \"rollup_1m\" or \"both\", got \"" + text + "\"");
             }
             rw(c).source = text;
         }},
        {"batch_samples",
         [rw](auto& n, Config& c, auto o) {
             rw(c).batch_samples = integer<std::size_t>(n, o, 1, 10'000'000);
         }},
        {"batch_age", [rw](auto& n, Config& c, auto o) { rw(c).batch_age = duration(n, o); }},
        {"min_backoff", [rw](auto& n, Config& c, auto o) { rw(c).min_backoff = duration(n, o); }},
        {"max_backoff", [rw](auto& n, Config& c, auto o) { rw(c).max_backoff = duration(n, o); }},
        {"timeout", [rw](auto& n, Config& c, auto o) { rw(c).timeout = duration(n, o); }},
        {"max_backlog", [rw](auto& n, Config& c, auto o) { rw(c).max_backlog = duration(n, o); }},
        {"settle_delay", [rw](auto& n, Config& c, auto o) { rw(c).settle_delay = duration(n, o); }},
        {"bearer_token", [rw](auto& n, Config& c, auto o) { rw(c).bearer_token = string(n, o); }},
        {"username", [rw](auto& n, Config& c, auto o) { rw(c).username = string(n, o); }},
        {"password", [rw](auto& n, Config& c, auto o) { rw(c).password = string(n, o); }},
    };
    return table;
}

void apply_export_remote_write(const toml::table& table, Config& config) {
    for (const auto& [key, node] : table) {
        std::string name = "export.remote_write." + std::string(key.str());
        auto setter = remote_write_setters().find(key.str());
        if (setter == remote_write_setters().end()) fail(name, "unknown option");
        setter->second(node, config, name);
    }
}

void apply(const toml::table& table, const std::string& prefix, Config& config) {
    for (const auto& [key, node] : table) {
        std::string name =
            prefix.empty() ? std::string(key.str()) : prefix + "." + std::string(key.str());
        if (name == "upstream") {
            const toml::array* sections = node.as_array();
            if (!sections) fail(name, "expected [[upstream]] sections");
            for (const auto& section : *sections) {
                std::string option = "upstream[" + std::to_string(config.upstreams.size()) + "]";
                const toml::table* fields = section.as_table();
                if (!fields) fail(option, "expected a table");
                config.upstreams.push_back(parse_upstream(*fields, option));
            }
            continue;
        }
        if (const toml::table* section = node.as_table();
            section && name == "export.remote_write") {
            apply_export_remote_write(*section, config);
            continue;
        }
        if (const toml::table* section = node.as_table(); section && prefix.empty()) {
            apply(*section, name, config);
            continue;
        }
        if (name == "export.mqtt") {
            if (!node.as_table()) fail(name, "expected a table [export.mqtt]");
            apply_export_mqtt(*node.as_table(), config);
            continue;
        }
        auto setter = setters().find(name);
        if (setter == setters().end()) fail(name, "unknown option");
        setter->second(node, config, name);
    }
}

}  // namespace

std::chrono::milliseconds parse_duration(std::string_view text, std::string_view option) {
    std::int64_t amount = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), amount);
    std::string_view unit(end, text.data() + text.size() - end);
    if (error != std::errc() || end == text.data() || amount < 0) {
        fail(option, "expected a duration like \"10s\", got \"" + std::string(text) + "\"");
    }
    static const std::map<std::string_view, std::int64_t> units = {
        {"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}, {"d", 86'400'000}};
    auto found = units.find(unit);
    if (found == units.end()) {
        fail(option, "unknown unit in \"" + std::string(text) + "\" (use ms, s, m, h or d)");
    }
    if (amount > INT64_MAX / found->second) {
        fail(option, "duration too long: \"" + std::string(text) + "\"");
    }
    return std::chrono::milliseconds(amount * found->second);
}

Config parse_config(std::string_view toml_text, std::string_view origin, Config base) {
    toml::table table;
    try {
        table = toml::parse(toml_text, origin);
    } catch (const toml::parse_error& error) {
        std::ostringstream message;
        message << error.description() << " (" << error.source() << ")";
        throw ConfigError(std::string(origin) + ": " + message.str());
    }
    apply(table, "", base);
    return base;
}

Config load_config_file(const std::filesystem::path& file, Config base) {
    toml::table table;
    try {
        table = toml::parse_file(file.string());
    } catch (const toml::parse_error& error) {
        std::ostringstream message;
        message << error.description() << " (" << error.source() << ")";
        throw ConfigError(file.string() + ": " + message.str());
    }
    apply(table, "", base);
    return base;
}

std::uint64_t effective_memory_budget(const Config::Storage& storage) {
    if (storage.memory_budget) return *storage.memory_budget;
    const std::uint64_t limit = memory_limit_bytes();
    if (limit == 0) return 0;
    return std::max<std::uint64_t>(limit / 2, std::uint64_t{256} << 20);
}

std::uint64_t parse_size(std::string_view text, std::string_view option) {
    auto bad = [&] {
        fail(option,
             "expected \"auto\" or a size like \"64MiB\", \"4GiB\" or a number of "
             "bytes, got \"" +
                 std::string(text) + "\"");
    };
    std::uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end == text.data()) bad();
    std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
    while (!unit.empty() && unit.front() == ' ')
        unit.remove_prefix(1);
    static const std::pair<std::string_view, std::uint64_t> units[] = {
        {"", 1},
        {"B", 1},
        {"KB", 1000},
        {"MB", 1000 * 1000},
        {"GB", 1000 * 1000 * 1000},
        {"TB", std::uint64_t{1000} * 1000 * 1000 * 1000},
        {"KiB", 1 << 10},
        {"MiB", 1 << 20},
        {"GiB", 1 << 30},
        {"TiB", std::uint64_t{1} << 40}};
    for (const auto& [name, scale] : units) {
        if (unit != name) continue;
        if (value > UINT64_MAX / scale) bad();
        return value * scale;
    }
    bad();
    return 0;
}

std::optional<BrokerAddress> parse_broker_url(std::string_view url, std::string* error) {
    auto bad = [&](std::string why) -> std::optional<BrokerAddress> {
        if (error) *error = std::move(why);
        return std::nullopt;
    };
    BrokerAddress address;
    if (url.starts_with("mqtt://")) {
        url.remove_prefix(7);
    } else if (url.starts_with("mqtts://")) {
        url.remove_prefix(8);
        address.tls = true;
        address.port = 8883;
    } else {
        return bad("expected mqtt://host[:port] or mqtts://host[:port], got \"" + std::string(url) +
                   "\"");
    }
    if (!url.empty() && url.back() == '/') url.remove_suffix(1);
    std::string_view port;
    if (url.starts_with('[')) {
        auto close = url.find(']');
        if (close == std::string_view::npos) return bad("unclosed [ in the host");
        address.host = std::string(url.substr(1, close - 1));
        url.remove_prefix(close + 1);
        if (url.starts_with(':'))
            port = url.substr(1);
        else if (!url.empty())
            return bad("unexpected text after the host");
    } else {
        auto colon = url.find(':');
        address.host = std::string(url.substr(0, colon));
        if (colon != std::string_view::npos) port = url.substr(colon + 1);
    }
    if (address.host.empty() || address.host.find_first_of("/?#@ ") != std::string::npos) {
        return bad("expected a host name or address");
    }
    if (!port.empty()) {
        unsigned value = 0;
        auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
        if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535) {
            return bad("bad port \"" + std::string(port) + "\"");
        }
        address.port = static_cast<std::uint16_t>(value);
    }
    return address;
}

namespace {

void validate_export_remote_write(const Config& config) {
    const Config::ExportRemoteWrite& rw = config.export_remote_write;
    if (rw.url.empty()) return;  // off
    std::string error;
    auto url = exports::HttpUrl::parse(rw.url, error);
    if (!url) fail("export.remote_write.url", error);
    if (!rw.tls_ca_file.empty() && !url->tls) {
        fail("export.remote_write.tls_ca_file", "needs an https:// url");
    }
    if (rw.select.empty()) fail("export.remote_write.select", "needs at least one selector");
    for (const std::string& text : rw.select) {
        auto parsed = storage::Selector::parse(text);
        if (!parsed.is_ok()) {
            fail("export.remote_write.select", "\"" + text + "\": " + parsed.status().message());
        }
    }
    if (rw.batch_age.count() == 0) fail("export.remote_write.batch_age", "must be positive");
    if (rw.timeout.count() == 0) fail("export.remote_write.timeout", "must be positive");
    if (rw.min_backoff.count() == 0) fail("export.remote_write.min_backoff", "must be positive");
    if (rw.max_backoff < rw.min_backoff) {
        fail("export.remote_write.max_backoff", "must be at least min_backoff");
    }
    if (rw.max_backlog < std::chrono::minutes(1)) {
        fail("export.remote_write.max_backlog", "must be at least 1m");
    }
    if (rw.settle_delay >= rw.max_backlog) {
        fail("export.remote_write.settle_delay", "must be shorter than max_backlog");
    }
    if (!rw.bearer_token.empty() && !rw.username.empty()) {
        fail("export.remote_write.bearer_token", "set bearer_token or username/password, not both");
    }
    if (rw.username.empty() && !rw.password.empty()) {
        fail("export.remote_write.password", "needs username");
    }
}

}  // namespace

void validate(const Config& config) {
    auto address = [](const std::string& text, const char* option) {
        if (text.empty()) fail(option, "must not be empty");
        boost::system::error_code ec;
        boost::asio::ip::make_address(text, ec);
        if (ec) fail(option, "not an IP address: \"" + text + "\"");
    };
    address(config.mqtt.listen, "mqtt.listen");
    address(config.http.listen, "http.listen");
    if (config.tls.enabled) address(config.tls.listen, "tls.listen");
    if (config.storage.data_dir.empty()) fail("storage.data_dir", "must not be empty");
    if (config.mqtt.port != 0 && config.mqtt.port == config.http.port &&
        config.mqtt.listen == config.http.listen) {
        fail("http.port", "must differ from mqtt.port");
    }
    if (config.mqtt.connect_timeout.count() == 0) fail("mqtt.connect_timeout", "must be positive");
    if (config.auth.max_failures > 0 && config.auth.failure_window.count() == 0) {
        fail("auth.failure_window", "must be positive while auth.max_failures is set");
    }
    if (config.mqtt.write_timeout.count() == 0) fail("mqtt.write_timeout", "must be positive");
    if (config.mqtt.partial_packet_timeout.count() == 0) {
        fail("mqtt.partial_packet_timeout", "must be positive");
    }
    if (config.mqtt.max_partial_bytes_total < config.mqtt.max_packet_size) {
        fail("mqtt.max_partial_bytes_total", "must be at least mqtt.max_packet_size");
    }
    if (config.http.query_timeout.count() == 0) fail("http.query_timeout", "must be positive");
    if (config.http.lookback_delta.count() <= 0) fail("http.lookback_delta", "must be positive");
    if (config.http.query_memory_budget < config.http.max_query_bytes) {
        fail("http.query_memory_budget", "must be at least http.max_query_bytes");
    }
    if (config.http.header_timeout.count() == 0) fail("http.header_timeout", "must be positive");
    if (config.http.idle_timeout.count() == 0) fail("http.idle_timeout", "must be positive");
    for (const std::string& network : config.http.admin_from) {
        if (!Network::parse(network)) {
            fail("http.admin_from", "not an address or CIDR block: \"" + network + "\"");
        }
    }
    if (config.http.tls_cert_file.empty() != config.http.tls_key_file.empty()) {
        fail("http.tls_cert_file", "HTTPS needs both http.tls_cert_file and http.tls_key_file");
    }
    // Partitions are named by their start and aligned to whole hours.
    if (config.storage.partition_window < std::chrono::hours(1) ||
        config.storage.partition_window % std::chrono::hours(1) != std::chrono::milliseconds(0)) {
        fail("storage.partition_window", "must be a whole number of hours, like \"24h\"");
    }
    if (config.tls.enabled && (config.tls.cert_file.empty() || config.tls.key_file.empty())) {
        fail("tls.cert_file", "tls.enabled needs tls.cert_file and tls.key_file");
    }
    if (config.tls.require_client_cert && config.tls.ca_file.empty()) {
        fail("tls.require_client_cert", "needs tls.ca_file");
    }
    if (config.storage.max_series > 0 &&
        config.storage.max_series < config.ingest.max_series_per_identity) {
        fail("ingest.max_series_per_identity",
             "must not exceed storage.max_series (" + std::to_string(config.storage.max_series) +
                 "): one identity could fill the whole gateway before its own limit");
    }
    if (config.ingest.topic_templates.empty()) {
        fail("ingest.topic_templates", "needs at least one template");
    }
    for (const auto& pattern : config.ingest.topic_templates) {
        std::string error;
        if (!payload::TopicTemplate::parse(pattern, &error)) fail("ingest.topic_templates", error);
    }
    std::set<std::string, std::less<>> upstream_names;
    for (std::size_t i = 0; i < config.upstreams.size(); ++i) {
        const auto& u = config.upstreams[i];
        const std::string option = "upstream[" + std::to_string(i) + "]";
        if (u.name.empty()) fail(option + ".name", "required");
        if (!upstream_names.insert(u.name).second) {
            fail(option + ".name", "\"" + u.name + "\" names two upstreams");
        }
        std::string error;
        if (!parse_broker_url(u.url, &error)) fail(option + ".url", error);
        if (u.topics.empty()) fail(option + ".topics", "needs at least one topic filter");
        for (const auto& filter : u.topics) {
            bool valid = !filter.empty() && filter.size() <= config.mqtt.max_topic_length &&
                         !filter.starts_with("$share/");
            for (std::size_t at = 0; valid && at < filter.size(); ++at) {
                const char c = filter[at];
                const bool starts = at == 0 || filter[at - 1] == '/';
                const bool ends = at + 1 == filter.size() || filter[at + 1] == '/';
                if (c == '#') valid = starts && at + 1 == filter.size();
                if (c == '+') valid = starts && ends;
                if (c == '\0') valid = false;
            }
            if (!valid) {
                fail(option + ".topics",
                     "\"" + filter +
                         "\" is no topic filter (write it without $share/, see share_group)");
            }
        }
        if (u.share_group.find_first_of("/+#") != std::string::npos) {
            fail(option + ".share_group", "must not contain /, + or #");
        }
        if (u.client_id.empty()) fail(option + ".client_id", "must not be empty");
        if (u.connections > 1 && u.client_id.find("{n}") == std::string::npos) {
            fail(option + ".client_id", "needs {n} with several connections (ids must differ)");
        }
        if (u.session_expiry > std::chrono::seconds(0xFFFFFFFE)) {
            fail(option + ".session_expiry", "at most 136 years");
        }
        if (u.keep_alive > std::chrono::seconds(65535)) {
            fail(option + ".keep_alive", "at most 65535 s");
        }
        if (u.reconnect_min.count() <= 0 || u.reconnect_max < u.reconnect_min) {
            fail(option + ".reconnect_max", "must be positive and at least reconnect_min");
        }
        if (u.connect_timeout.count() <= 0) fail(option + ".connect_timeout", "must be positive");
        if (u.tls_cert_file.empty() != u.tls_key_file.empty()) {
            fail(option + ".tls_cert_file", "tls_cert_file and tls_key_file go together");
        }
    }
    validate_export_mqtt(config);
    validate_export_remote_write(config);
}

}  // namespace citygate::gateway
