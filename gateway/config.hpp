// Gateway configuration: embedded defaults, then a TOML file, then command-line overrides.
// Every option is documented in deploy/citygate.example.toml.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "gateway/ops/log.hpp"
#include "ingest/access_control.hpp"
#include "protocols/payload/format.hpp"
#include "storage/engine.hpp"

namespace citygate::gateway {

struct Config {
    struct Mqtt {
        std::string listen = "0.0.0.0";
        std::uint16_t port = 1883;
        std::uint32_t max_packet_size = 256 * 1024;
        std::uint16_t max_topic_length = 1024;
        std::uint16_t receive_maximum = 256;
        std::chrono::milliseconds connect_timeout = std::chrono::seconds(10);
        std::size_t max_connections = 1'000'000;
        // PUBLISHes per second one connection may send; beyond it the gateway stops reading
        // that socket until the rate allows more (TCP pushes back on the client). 0: no limit.
        double max_publish_rate = 0;
        double publish_burst = 0;  // messages allowed at once; 0: one second's worth
        // Bytes queued for one connection (acks, PINGRESPs) beyond which the gateway stops
        // reading it until the client reads: TCP pushes back on a client that does not read.
        std::size_t max_send_queue = 64 * 1024;
        // A connection whose queue stays over max_send_queue (or whose last write does not
        // finish) this long is closed as a slow consumer; its keep-alive closes it sooner.
        std::chrono::milliseconds write_timeout = std::chrono::seconds(30);
        // An incomplete packet must be complete this long after its first byte.
        std::chrono::milliseconds partial_packet_timeout = std::chrono::seconds(10);
        // Bytes held in incomplete packets across all connections; a connection whose packet
        // would go beyond it is closed (v5: DISCONNECT 0x97).
        std::size_t max_partial_bytes_total = 256 * 1024 * 1024;
    } mqtt;

    struct Tls {
        bool enabled = false;
        std::string listen = "0.0.0.0";
        std::uint16_t port = 8883;
        std::filesystem::path cert_file;
        std::filesystem::path key_file;
        std::filesystem::path ca_file;  // client certificates are requested when set
        bool require_client_cert = false;
    } tls;

    struct Auth {
        ingest::AnonymousPolicy anonymous = ingest::AnonymousPolicy::loopback;
        std::filesystem::path credentials_file;
        std::filesystem::path acl_file;
        unsigned threads = 1;              // password verification pool (PBKDF2 off I/O)
        std::size_t max_pending = 10'000;  // CONNECTs queued for it; beyond: server busy
        std::size_t max_failures = 10;     // per source address and per user; 0: off
        std::chrono::milliseconds failure_window = std::chrono::seconds(60);
        std::size_t throttle_entries = 65'536;  // addresses / users tracked, each
    } auth;

    struct Http {
        std::string listen = "0.0.0.0";
        std::uint16_t port = 8080;
        unsigned threads = 1;
        std::size_t max_query_series = 10'000;     // a query matching more series fails (422)
        std::size_t max_query_points = 5'000'000;  // a query reading more points fails (422)
        // Memory one query may hold (422 beyond it): see storage::QueryLimits::max_bytes.
        std::size_t max_query_bytes = storage::QueryLimits{}.max_bytes;
        // Memory all running queries hold together; a query that finds no room waits up to a
        // second, then gets 503. Twice max_query_bytes: both query threads can run a query
        // at its limit, and a node's memory has room for it beside memtables and caches.
        std::size_t query_memory_budget = 2 * storage::QueryLimits{}.max_bytes;
        // A query running longer, its wait for a query thread included, is stopped (503). 30 s
        // is what Grafana waits for a data source by default: an answer later is thrown away.
        std::chrono::milliseconds query_timeout = std::chrono::seconds(30);
        // How far back a PromQL instant selector looks for a sample (Prometheus'
        // --query.lookback-delta).
        std::chrono::milliseconds lookback_delta = std::chrono::minutes(5);
        // PromQL's sum/count/avg/min/max/last/present_over_time read the 1-minute or 1-hour
        // rollups (raw points only at window edges) when a window spans at least this many
        // buckets and steps are a bucket or more apart. 0: always raw points.
        unsigned promql_rollup_min_buckets = 30;
        // Threads running queries off the HTTP threads. Each query already reads its shards in
        // parallel, one thread per shard, so two keep cores for ingest.
        unsigned query_threads = 2;
        // Queries waiting for a query thread; beyond it a query is answered 503 at once.
        std::size_t query_queue = 16;
        // A request's whole header must arrive this long after accept (or, on a keep-alive
        // connection, after its first byte), however slowly it dribbles in: slowloris.
        std::chrono::milliseconds header_timeout = std::chrono::seconds(5);
        // A keep-alive connection waiting longer than this for its next request is closed.
        std::chrono::milliseconds idle_timeout = std::chrono::seconds(60);
        std::size_t max_connections = 256;            // open at once; beyond it closed at accept
        std::size_t max_connections_per_source = 32;  // open at once from one IP address
        // Bearer tokens with scopes (gateway/http/tokens.hpp); empty: reads are open and admin
        // endpoints answer only to peers in admin_from.
        std::filesystem::path tokens_file;
        std::vector<std::string> admin_from{"127.0.0.0/8", "::1/128"};
        // POST /api/v1/admin/checkpoint: one at a time (409), at most one start per interval
        // (429).
        std::chrono::milliseconds checkpoint_interval = std::chrono::seconds(10);
        // Write paths (remote write, line protocol): a body as sent, the same decompressed, and
        // samples (lines) in one request; 413 beyond each.
        std::size_t max_write_body = 16 << 20;
        std::size_t max_write_decoded_body = 64 << 20;
        std::size_t max_write_samples = 1'000'000;
        std::filesystem::path tls_cert_file;  // both set: the HTTP listener speaks HTTPS only
        std::filesystem::path tls_key_file;
    } http;

    struct Storage {
        std::filesystem::path data_dir = "./var";
        unsigned shards = 0;  // 0: one per usable CPU (storage/cpu_limit.hpp: cgroup limit)
        std::size_t queue_capacity = 65536;
        storage::FsyncPolicy fsync = storage::FsyncPolicy::none;
        // --recover: what a damaged write-ahead log does at start (a flag, not a file option:
        // accepting a loss is a decision for one start, not a standing setting).
        storage::WalRecoveryPolicy wal_recovery = storage::WalRecoveryPolicy::refuse;
        std::chrono::milliseconds partition_window = std::chrono::hours(24);
        std::chrono::milliseconds out_of_order_window = std::chrono::hours(1);
        std::chrono::milliseconds retention = std::chrono::hours(24 * 30);
        // One budget for the process's memory (storage::EngineOptions::memory_budget_bytes):
        // memtables, block cache, head and series index take their shares of it, queries
        // theirs (http.query_memory_budget and http.max_query_bytes are capped by it), the last
        // tenth is left for connections and buffers. Unset ("auto"): half the memory the
        // machine or the cgroup allows (effective_memory_budget()). 0 ("off"): each part by its
        // own option alone.
        std::optional<std::uint64_t> memory_budget;
        // RocksDB memtables of all shards together, bytes; 0: unbounded.
        std::size_t memtable_budget = storage::EngineOptions{}.memtable_budget_bytes;
        // The head is turned into chunks at least this often, and a shard that took no write
        // this long flushes its memtables (0: never by age), so a quiet gateway gives its
        // memory back and its write-ahead log shrinks.
        std::chrono::milliseconds head_flush_interval =
            storage::EngineOptions{}.head_flush_interval;
        std::chrono::milliseconds memtable_idle_flush =
            storage::EngineOptions{}.memtable_idle_flush;
        // fsync batch: how long a shard writer with a small queue waits for more before it
        // fsyncs (storage::EngineOptions::commit_delay); 0: never.
        std::chrono::milliseconds commit_delay = std::chrono::milliseconds(1);
        // An hour keeps a stored 1-minute rollup block when its series averages at least this
        // many points a minute (storage::EngineOptions::minute_block_min_points); sparser
        // series' minutes are computed from their chunks when read. 1: always a block.
        std::size_t minute_block_min_points = storage::EngineOptions{}.minute_block_min_points;
        // How often the allocator is asked to return free memory to the system (malloc_trim),
        // when it holds more than 32 MiB free; 0: never.
        std::chrono::milliseconds memory_trim_interval = std::chrono::seconds(30);
        // Series limits storage enforces: all shards together (0: only the per-shard one) and
        // per shard. A reading that would create a series beyond one is refused.
        std::size_t max_series = 0;
        std::size_t max_series_per_shard = storage::EngineOptions{}.max_series_per_shard;
        // Free space the data volume keeps (storage::EngineOptions::min_free_bytes): under it
        // writes are held, not acknowledged, and /readyz answers 503 until space returns.
        // Unset ("auto"): 2% of the volume, 64 MiB..4 GiB, at most a quarter of the volume.
        std::optional<std::uint64_t> min_free_space;
        // POST /api/v1/admin/checkpoint writes checkpoints here; empty: <data_dir>/backups, on
        // the data volume, which every shipped deployment makes writable (and where the
        // checkpoint's hard links work).
        std::filesystem::path backup_dir;
        // After a successful checkpoint, the oldest beyond this many are removed; 0: none.
        std::size_t backup_keep = 3;
        // Testing only: writer threads sleep this long per batch, to exercise backpressure.
        std::chrono::milliseconds test_write_delay{0};
        // Testing only: reads sleep this long before each series, to exercise query deadlines.
        std::chrono::milliseconds test_read_delay{0};
    } storage;

    struct Ingest {
        std::vector<std::string> topic_templates{"city/{district}/{type}/{device}"};
        // Payload format by MQTT topic filter, first match wins; else default_format.
        struct FormatRule {
            std::string topic_filter;
            payload::Format format = payload::Format::detect;
        };
        std::vector<FormatRule> formats;
        payload::Format default_format = payload::Format::detect;
        payload::TimePrecision line_precision = payload::TimePrecision::ns;
        bool close_on_bad_payload = false;  // else bad payloads are counted and acknowledged
        // Bad device clocks (ingest::IngestOptions): readings stamped further ahead than this
        // or before min_timestamp_ms are refused; 0 turns either check off.
        std::chrono::milliseconds max_future = std::chrono::minutes(5);
        std::int64_t min_timestamp_ms = 946'684'800'000;  // 2000-01-01T00:00:00Z
        bool seconds_by_magnitude = false;                // timestamps below 10^11 are seconds
        // Series limits per client (ingest::SeriesQuota): series one identity (user, or client
        // id when anonymous) may create, new series one connection may create a minute; 0: off.
        std::size_t max_series_per_identity = 100'000;
        std::size_t max_new_series_per_minute = 10'000;
        // Slots of each I/O thread's series reference cache (ingest::SeriesCache), rounded up to
        // a power of two; 0: off.
        std::size_t series_cache_slots = 65536;
    } ingest;

    // City aggregates for dashboards (/metrics/city, the status page): 1-minute averages per
    // district and measurement.
    struct City {
        std::size_t max_pairs = 4096;           // distinct (district, measurement) pairs; 0: off
        std::string district_tag = "district";  // the tag that names a reading's district
    } city;

    // Consumer mode: an upstream broker citygate subscribes to as an MQTT 5 client, one
    // [[upstream]] section each (see gateway/upstream/upstream_consumer.hpp).
    struct Upstream {
        std::string name;                      // required, unique; the `upstream` metric label
        std::string url;                       // mqtt://host[:1883] or mqtts://host[:8883]
        std::vector<std::string> topics;       // each subscribed as $share/<share_group>/<filter>
        std::string share_group = "citygate";  // empty: plain subscriptions (every copy)
        // {host}: this machine's host name, {name}: the upstream's, {n}: the connection index.
        // Stable across restarts, so the broker keeps each connection's session.
        std::string client_id = "citygate-{host}-{name}-{n}";
        unsigned connections = 1;  // parallel connections, each its own persistent session
        std::chrono::milliseconds session_expiry = std::chrono::hours(1);
        std::uint16_t receive_maximum = 256;  // unacknowledged messages per connection
        std::chrono::milliseconds keep_alive = std::chrono::seconds(30);
        std::chrono::milliseconds connect_timeout = std::chrono::seconds(10);
        std::chrono::milliseconds reconnect_min = std::chrono::milliseconds(500);
        std::chrono::milliseconds reconnect_max = std::chrono::seconds(30);
        std::string username;  // also the identity the ACL sees ("upstream:<name>" when empty)
        std::string password;
        std::filesystem::path password_file;  // read at start; wins over password
        std::filesystem::path tls_ca_file;    // mqtts: CAs to verify the broker (else system's)
        std::filesystem::path tls_cert_file;  // client certificate, with tls_key_file
        std::filesystem::path tls_key_file;
        bool tls_insecure = false;  // do not verify the broker (tests only)
    };
    std::vector<Upstream> upstreams;
    // [export.mqtt]: the city aggregates of each closed window published upstream over MQTT
    // (gateway/export/aggregate_exporter.hpp). Off while url is empty.
    struct ExportMqtt {
        std::string url;                                // mqtt://host[:port] or mqtts://host[:port]
        std::string topic_prefix = "citygate/agg";      // <prefix>/<district>/<measurement>
        std::string client_id = "citygate-agg-{host}";  // {host}: the host name
        int qos = 1;
        bool retain = true;
        // Window length and publishing period; windows are aligned to multiples of it since the
        // epoch. Whole seconds; the city aggregates (/metrics/city) then use it too.
        std::chrono::milliseconds interval = std::chrono::minutes(1);
        std::size_t max_buffered = 10'000;  // Paho's offline buffer; beyond: dropped, counted
        std::string username;
        std::string password;
        std::filesystem::path tls_ca_file;  // mqtts: the CA bundle; empty: the system's
        bool enabled() const { return !url.empty(); }
    } export_mqtt;
    // [export.remote_write]: stored samples to a Prometheus remote-write receiver, from a durable
    // cursor (export/remote_write_sender.hpp says what is sent when).
    struct ExportRemoteWrite {
        std::string url;                    // http://host:port/path or https://...; empty: off
        std::filesystem::path tls_ca_file;  // https: CAs (PEM) for the receiver; empty: system's
        std::vector<std::string> select{"{__name__=~\".+\"}"};
        std::string source = "raw";  // raw, rollup_1m or both
        std::size_t batch_samples = 10'000;
        std::chrono::milliseconds batch_age = std::chrono::seconds(5);
        std::chrono::milliseconds min_backoff = std::chrono::milliseconds(500);
        std::chrono::milliseconds max_backoff = std::chrono::minutes(1);
        std::chrono::milliseconds timeout = std::chrono::seconds(30);
        std::chrono::milliseconds max_backlog = std::chrono::hours(24);
        // Samples younger than this are not sent yet: how late a sample may arrive and still be
        // sent (up to storage.out_of_order_window; more delay, more lag).
        std::chrono::milliseconds settle_delay = std::chrono::minutes(1);
        std::string bearer_token;
        std::string username;  // basic auth
        std::string password;
    } export_remote_write;

    struct Server {
        unsigned io_threads = 0;  // 0: one per usable CPU (cgroup limit included)
        log::Level log_level = log::Level::info;
        log::Format log_format = log::Format::text;
        std::chrono::milliseconds shutdown_timeout = std::chrono::seconds(10);
    } server;
};

// Where an [[upstream]] url points: mqtt://host[:port] (1883) or mqtts://host[:port] (8883);
// an IPv6 host in brackets. Nothing, with `error` set, for anything else.
struct BrokerAddress {
    bool tls = false;
    std::string host;
    std::uint16_t port = 1883;
};
std::optional<BrokerAddress> parse_broker_url(std::string_view url, std::string* error = nullptr);

// A configuration that cannot be used; the message names the option and the problem.
class ConfigError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// Reads a TOML file over the defaults. Unknown keys are errors (a typo must not pass silently).
// Throws ConfigError.
Config load_config_file(const std::filesystem::path& file, Config base = {});

// Parses TOML text over the defaults; `origin` names it in error messages. Throws ConfigError.
Config parse_config(std::string_view toml_text, std::string_view origin, Config base = {});

// Checks cross-field rules and ranges. Throws ConfigError.
void validate(const Config& config);

// The memory budget in force: storage.memory_budget, or ("auto") half of what the machine or its
// cgroup allows, at least 256 MiB; 0: none (configured "off", or the machine's memory unknown).
std::uint64_t effective_memory_budget(const Config::Storage& storage);

// Parses a byte size like "64MiB", "4GiB", "500MB", "1048576" (B, KB, MB, GB, TB are powers of
// 1000, KiB, MiB, GiB, TiB of 1024). Throws ConfigError naming `option`.
std::uint64_t parse_size(std::string_view text, std::string_view option);

// Parses a duration like "250ms", "10s", "5m", "24h", "30d". Throws ConfigError naming `option`.
std::chrono::milliseconds parse_duration(std::string_view text, std::string_view option);

}  // namespace citygate::gateway
