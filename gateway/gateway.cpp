// Start-up, serving threads and graceful drain of the gateway.
#include "gateway/gateway.hpp"

#include <sys/resource.h>
#include <algorithm>

#include <future>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>

#include "gateway/mqtt/mqtt_connection.hpp"
#include "gateway/ops/log.hpp"
#include "gateway/ops/process_metrics.hpp"
#include "storage/cpu_limit.hpp"

namespace citygate::gateway {
namespace {

// Free allocator memory beyond which the periodic trim gives it back
// (storage.memory_trim_interval).
constexpr std::size_t kTrimThreshold = std::size_t{32} << 20;

using tcp = boost::asio::ip::tcp;

tcp::endpoint endpoint_of(const std::string& address, std::uint16_t port, const char* option) {
    boost::system::error_code ec;
    auto ip = boost::asio::ip::make_address(address, ec);
    if (ec) throw ConfigError(std::string(option) + ": not an IP address: \"" + address + "\"");
    return {ip, port};
}

prometheus::MetricFamily family(const char* name, const char* help, prometheus::MetricType type) {
    return {name, help, type, {}};
}

void add_sample(prometheus::MetricFamily& family, double value,
                std::vector<prometheus::ClientMetric::Label> labels = {}) {
    prometheus::ClientMetric metric;
    metric.label = std::move(labels);
    if (family.type == prometheus::MetricType::Counter) {
        metric.counter.value = value;
    } else {
        metric.gauge.value = value;
    }
    family.metric.push_back(std::move(metric));
}

// Storage figures read at scrape time; label values are bounded (shards, three reasons).
void collect_storage_metrics(const storage::Engine& engine,
                             std::vector<prometheus::MetricFamily>& families) {
    using prometheus::MetricType;
    storage::EngineStats stats = engine.stats();
    auto series = family("citygate_series", "Series in the index", MetricType::Gauge);
    add_sample(series, static_cast<double>(stats.series));
    auto series_limit =
        family("citygate_series_limit",
               "Most series the shards may hold together (storage.max_series or per shard)",
               MetricType::Gauge);
    add_sample(series_limit, static_cast<double>(stats.max_series));
    auto rejected = family("citygate_storage_points_rejected_total",
                           "Points storage refused, by reason", MetricType::Counter);
    add_sample(rejected, static_cast<double>(stats.points_rejected_late), {{"reason", "late"}});
    add_sample(rejected, static_cast<double>(stats.points_rejected_series_limit),
               {{"reason", "series_limit"}});
    add_sample(rejected, static_cast<double>(stats.points_rejected_invalid),
               {{"reason", "invalid"}});
    auto depth = family("citygate_storage_queue_depth", "Points waiting in a shard's queue",
                        MetricType::Gauge);
    auto written = family("citygate_storage_points_written_total", "Points written by a shard",
                          MetricType::Counter);
    for (std::size_t shard = 0; shard < stats.queue_depth.size(); ++shard) {
        std::vector<prometheus::ClientMetric::Label> label = {{"shard", std::to_string(shard)}};
        add_sample(depth, static_cast<double>(stats.queue_depth[shard]), label);
        if (shard < stats.points_written_per_shard.size()) {
            add_sample(written, static_cast<double>(stats.points_written_per_shard[shard]), label);
        }
    }
    auto head = family("citygate_storage_head_points",
                       "Accepted points not yet compressed into chunks", MetricType::Gauge);
    add_sample(head, static_cast<double>(stats.head_points));
    auto batches = family("citygate_storage_batches_total", "Group commits", MetricType::Counter);
    add_sample(batches, static_cast<double>(stats.batches));
    auto disk =
        family("citygate_storage_disk_bytes", "Bytes of SST files on disk", MetricType::Gauge);
    add_sample(disk, static_cast<double>(engine.disk_bytes()));
    auto memtable = family("citygate_rocksdb_memtable_bytes", "RocksDB memtable bytes of a shard",
                           MetricType::Gauge);
    auto pending =
        family("citygate_rocksdb_pending_compaction_bytes",
               "RocksDB estimate of bytes compaction still has to rewrite", MetricType::Gauge);
    auto delayed = family("citygate_rocksdb_delayed_write_rate_bytes",
                          "RocksDB write rate limit while writes are slowed (0: not slowed)",
                          MetricType::Gauge);
    auto stopped =
        family("citygate_rocksdb_write_stopped",
               "1 while RocksDB stops writes of a shard (a write stall)", MetricType::Gauge);
    auto wal = family("citygate_rocksdb_wal_bytes", "Bytes of live write-ahead log files",
                      MetricType::Gauge);
    auto compactions =
        family("citygate_rocksdb_running_compactions", "Compactions running", MetricType::Gauge);
    // What recovery dropped from each shard's WAL at this start (fixed until the next).
    auto wal_bytes = family("citygate_storage_wal_dropped_bytes",
                            "Bytes of a shard's write-ahead log recovery dropped at start: a torn "
                            "last record, or damage accepted with --recover=point-in-time",
                            MetricType::Gauge);
    auto wal_records = family("citygate_storage_wal_dropped_records",
                              "Write-ahead log records (group commits) recovery dropped at start",
                              MetricType::Gauge);
    auto wal_damaged = family("citygate_storage_wal_damaged",
                              "1 when a shard started on a damaged write-ahead log "
                              "(--recover=point-in-time): data was lost",
                              MetricType::Gauge);
    for (const storage::WalRecovery& r : engine.wal_recovery()) {
        std::vector<prometheus::ClientMetric::Label> label = {{"shard", std::to_string(r.shard)}};
        add_sample(wal_bytes, static_cast<double>(r.dropped_bytes), label);
        add_sample(wal_records, static_cast<double>(r.dropped_records), label);
        add_sample(wal_damaged, r.damaged() ? 1 : 0, label);
    }
    families.push_back(std::move(wal_bytes));
    families.push_back(std::move(wal_records));
    families.push_back(std::move(wal_damaged));
    auto figures = engine.rocksdb_figures();
    for (std::size_t shard = 0; shard < figures.size(); ++shard) {
        std::vector<prometheus::ClientMetric::Label> label = {{"shard", std::to_string(shard)}};
        const auto& f = figures[shard];
        add_sample(memtable, static_cast<double>(f.memtable_bytes), label);
        add_sample(pending, static_cast<double>(f.pending_compaction_bytes), label);
        add_sample(delayed, static_cast<double>(f.delayed_write_rate), label);
        add_sample(stopped, f.writes_stopped ? 1 : 0, label);
        add_sample(wal, static_cast<double>(f.wal_bytes), label);
        add_sample(compactions, static_cast<double>(f.running_compactions), label);
    }
    storage::StorageHealth health = engine.health();
    auto disk_full = family("citygate_storage_disk_full",
                            "1 while the data volume is under its free-space reserve (writes held) "
                            "or storage is read-only",
                            MetricType::Gauge);
    add_sample(disk_full, health.disk.full || health.read_only ? 1 : 0);
    auto free_bytes = family("citygate_storage_free_bytes",
                             "Free bytes of the data volume at the last probe", MetricType::Gauge);
    add_sample(free_bytes, static_cast<double>(health.disk.free_bytes));
    auto reserve =
        family("citygate_storage_free_space_reserve_bytes",
               "Free space the data volume keeps (storage.min_free_space)", MetricType::Gauge);
    add_sample(reserve, static_cast<double>(health.disk.reserve_bytes));
    auto volume =
        family("citygate_storage_volume_bytes", "Size of the data volume", MetricType::Gauge);
    add_sample(volume, static_cast<double>(health.disk.volume_bytes));
    auto unwritable = family("citygate_storage_shard_unwritable",
                             "1 while a shard is in its error state after a failed RocksDB "
                             "write, flush or sync (restart required)",
                             MetricType::Gauge);
    {
        std::vector<bool> failed(engine.shard_count(), false);
        for (const auto& f : health.failed_shards) {
            if (f.shard < failed.size()) failed[f.shard] = true;
        }
        for (std::size_t shard = 0; shard < failed.size(); ++shard) {
            add_sample(unwritable, failed[shard] ? 1 : 0, {{"shard", std::to_string(shard)}});
        }
    }
    for (auto* f : {&series, &series_limit, &rejected, &depth, &written, &head, &batches, &disk,
                    &memtable, &pending, &delayed, &stopped, &wal, &compactions, &disk_full,
                    &free_bytes, &reserve, &volume, &unwritable}) {
        families.push_back(std::move(*f));
    }
}

// The memory budget and its parts, read at scrape time: what each part may take and holds now.
// "other" is the rest of the resident memory: connections, buffers, code.
void collect_memory_metrics(const storage::Engine& engine, const storage::QueryMemory* queries,
                            std::vector<prometheus::MetricFamily>& families) {
    using prometheus::MetricType;
    storage::StorageMemory memory = engine.memory();
    auto budget = family("citygate_memory_budget_bytes",
                         "The memory budget its parts share (storage.memory_budget; 0: none)",
                         MetricType::Gauge);
    add_sample(budget, static_cast<double>(memory.budget));
    auto limit =
        family("citygate_memory_limit_bytes",
               "What a part of the memory budget may hold (0: unbounded)", MetricType::Gauge);
    auto used = family("citygate_memory_used_bytes", "What a part of the memory budget holds now",
                       MetricType::Gauge);
    std::pair<const char*, storage::MemoryPart> parts[] = {
        {"memtables", memory.memtables},
        {"block_cache", memory.block_cache},
        {"head", memory.head},
        {"series_index", memory.series_index},
        {"queries", queries ? storage::MemoryPart{queries->capacity(), queries->in_use()}
                            : storage::MemoryPart{}},
    };
    std::uint64_t counted = 0;
    for (const auto& [name, part] : parts) {
        add_sample(limit, static_cast<double>(part.limit), {{"part", name}});
        add_sample(used, static_cast<double>(part.used), {{"part", name}});
        counted += part.used;
    }
    const std::uint64_t resident = resident_bytes();
    add_sample(used, static_cast<double>(resident > counted ? resident - counted : 0),
               {{"part", "other"}});
    families.push_back(std::move(budget));
    families.push_back(std::move(limit));
    families.push_back(std::move(used));
}

// Checkpoints go inside the data directory by default: it is the one place every deployment
// lets the gateway write (systemd's StateDirectory under ProtectSystem=strict, the container's
// volume, the StatefulSet's persistent volume beside a read-only root), and on the same file
// system RocksDB hard-links SST files instead of copying them. The engine only opens its own
// shard-N directories, so a backups/ beside them is left alone.
std::filesystem::path backup_directory(const Config::Storage& storage) {
    if (!storage.backup_dir.empty()) return storage.backup_dir;
    return std::filesystem::absolute(storage.data_dir).lexically_normal() / "backups";
}

// A socket past the descriptor limit cannot be accepted, so a connection limit above it is not a
// limit. Raises the soft limit to the hard one, then keeps max_connections below it with room
// for storage files, HTTP connections and listeners.
void fit_descriptor_limit(Config::Mqtt& mqtt) {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
    if (limit.rlim_cur < limit.rlim_max) {
        rlimit raised = limit;
        raised.rlim_cur = limit.rlim_max;
        if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
    }
    if (limit.rlim_cur == RLIM_INFINITY) return;
    constexpr rlim_t reserve = 512;
    rlim_t usable = limit.rlim_cur > 2 * reserve ? limit.rlim_cur - reserve : limit.rlim_cur / 2;
    if (mqtt.max_connections <= usable) return;
    CG_LOG(warn) << "mqtt.max_connections " << mqtt.max_connections
                 << " is beyond what the open-file limit allows (" << limit.rlim_cur
                 << " descriptors); using " << usable;
    mqtt.max_connections = usable;
}

// [export.remote_write] as the sender's options; its cursor lives beside the shards.
exports::RemoteWriteOptions remote_write_options(const Config& config) {
    const Config::ExportRemoteWrite& rw = config.export_remote_write;
    exports::RemoteWriteOptions options;
    options.url = rw.url;
    options.tls_ca_file = rw.tls_ca_file;
    options.select = rw.select;
    options.raw = rw.source == "raw" || rw.source == "both";
    options.rollup_1m = rw.source == "rollup_1m" || rw.source == "both";
    options.batch_samples = rw.batch_samples;
    options.batch_age = rw.batch_age;
    options.min_backoff = rw.min_backoff;
    options.max_backoff = rw.max_backoff;
    options.timeout = rw.timeout;
    options.max_backlog = rw.max_backlog;
    options.settle_delay = rw.settle_delay;
    options.out_of_order_window = config.storage.out_of_order_window;
    options.bearer_token = rw.bearer_token;
    options.username = rw.username;
    options.password = rw.password;
    options.cursor_file = config.storage.data_dir / "export" / "remote_write.cursor";
    options.log = [](int level, const std::string& message) {
        if (level >= 2) {
            CG_LOG(error).with("export", "remote_write") << message;
        } else if (level == 1) {
            CG_LOG(warn).with("export", "remote_write") << message;
        } else {
            CG_LOG(info).with("export", "remote_write") << message;
        }
    };
    return options;
}

unsigned or_cores(unsigned configured) {
    return configured ? configured : usable_cpus();  // a container's CPU limit included
}

}  // namespace

Gateway::Gateway(Config config) : config_(std::move(config)) {
    validate(config_);
    log::set_level(config_.server.log_level);
    log::set_format(config_.server.log_format);
    fit_descriptor_limit(config_.mqtt);

    std::error_code dir_error;
    std::filesystem::create_directories(config_.storage.data_dir, dir_error);
    if (dir_error) {
        throw std::runtime_error("cannot create data directory " +
                                 config_.storage.data_dir.string() + ": " + dir_error.message());
    }

    storage::EngineOptions options;
    options.directory = config_.storage.data_dir;
    options.shards = config_.storage.shards;
    options.queue_capacity = config_.storage.queue_capacity;
    options.fsync = config_.storage.fsync;
    options.partition_window = config_.storage.partition_window;
    options.out_of_order_window = config_.storage.out_of_order_window;
    options.retention = config_.storage.retention;
    options.memtable_budget_bytes = config_.storage.memtable_budget;
    memory_budget_ = effective_memory_budget(config_.storage);
    options.memory_budget_bytes = memory_budget_;
    options.head_flush_interval = config_.storage.head_flush_interval;
    options.commit_delay = config_.storage.commit_delay;
    options.minute_block_min_points = config_.storage.minute_block_min_points;
    options.memtable_idle_flush = config_.storage.memtable_idle_flush;
    options.max_series = config_.storage.max_series;
    options.max_series_per_shard = config_.storage.max_series_per_shard;
    options.test_read_delay = config_.storage.test_read_delay;
    options.wal_recovery = config_.storage.wal_recovery;
    options.on_batch = [this, delay = config_.storage.test_write_delay](
                           const storage::BatchReport& report) {
        // Runs on the writer thread before the batch's callbacks: a delay here slows storage.
        if (delay.count() > 0) std::this_thread::sleep_for(delay);
        metrics_.samples_written.Increment(static_cast<double>(report.points));
        metrics_.batch_points.Observe(static_cast<double>(report.points));
        metrics_.write_latency.Observe(std::chrono::duration<double>(report.write_latency).count());
    };
    // A read-only start may reopen writable before the ingest unit exists.
    options.on_space_available = [this] {
        if (auto* unit = room_target_.load(std::memory_order_acquire)) unit->notify_room();
    };
    options.min_free_bytes = config_.storage.min_free_space;
    // Once per transition: the guard and the shards report changes, not states.
    options.on_health_event = [](const storage::HealthEvent& event) {
        using Kind = storage::HealthEvent::Kind;
        switch (event.kind) {
            case Kind::disk_full:
            case Kind::shard_failed:
                CG_LOG(error).with("event",
                                   event.kind == Kind::disk_full ? "disk_full" : "shard_failed")
                    << event.message;
                break;
            case Kind::disk_space_returned:
            case Kind::reopened_writable:
                CG_LOG(warn).with("event", event.kind == Kind::disk_space_returned
                                               ? "disk_space_returned"
                                               : "reopened_writable")
                    << event.message;
                break;
        }
    };
    auto opened = storage::Engine::open(std::move(options));
    if (!opened.is_ok()) {
        throw std::runtime_error("cannot open storage in " + config_.storage.data_dir.string() +
                                 ": " + opened.status().message());
    }
    engine_ = std::move(opened.value());
    for (const storage::WalRecovery& r : engine_->wal_recovery()) {
        if (r.accepted) {
            CG_LOG(error)
                    .with("shard", r.shard)
                    .with("dropped_bytes", r.dropped_bytes)
                    .with("dropped_records", r.dropped_records)
                    .with("problem", r.problem)
                << "shard " << r.shard << ": write-ahead log damaged (" << r.problem
                << "); started with --recover=point-in-time, dropping " << r.dropped_bytes
                << " bytes in " << r.dropped_records << " records"
                << (r.acknowledged_lost ? ", acknowledged writes among them" : "");
        } else if (r.torn_tail) {
            CG_LOG(warn)
                    .with("shard", r.shard)
                    .with("dropped_bytes", r.dropped_bytes)
                    .with("problem", r.problem)
                << "shard " << r.shard << ": dropped the write-ahead log's " << r.problem << " ("
                << r.dropped_bytes
                << " bytes): a write in flight when the process died, never acknowledged";
        }
    }
    if (!config_.export_remote_write.url.empty()) {
        try {
            remote_write_ = std::make_unique<exports::RemoteWriteSender>(
                remote_write_options(config_), *engine_, metrics_.registry().get());
        } catch (const std::invalid_argument& e) {
            throw ConfigError(std::string("export.remote_write.") + e.what());
        }
    }
    metrics_.set_collector([this](auto& families) {
        collect_storage_metrics(*engine_, families);
        collect_memory_metrics(*engine_, api_ ? api_->query_memory() : nullptr, families);
        collect_process_metrics(families);
    });

    mqtt::server_limits limits;
    limits.maximum_packet_size = config_.mqtt.max_packet_size;
    limits.maximum_topic_length = config_.mqtt.max_topic_length;
    limits.receive_maximum = config_.mqtt.receive_maximum;
    limits.connect_timeout = config_.mqtt.connect_timeout;
    ingest::AccessOptions access_options{config_.auth.anonymous, config_.auth.credentials_file,
                                         config_.auth.acl_file};
    access_options.verify_threads = config_.auth.threads;
    access_options.verify_queue = config_.auth.max_pending;
    access_options.max_failures = config_.auth.max_failures;
    access_options.failure_window = config_.auth.failure_window;
    access_options.throttle_entries = config_.auth.throttle_entries;
    access_options.registry = metrics_.registry().get();
    access_ = std::make_unique<ingest::AccessControl>(std::move(access_options));
    if (config_.tls.enabled) {
        tls_context_ = std::make_unique<boost::asio::ssl::context>(
            make_server_context({config_.tls.cert_file, config_.tls.key_file, config_.tls.ca_file,
                                 config_.tls.require_client_cert}));
    }
    ingest::IngestOptions ingest_options;
    for (const auto& pattern : config_.ingest.topic_templates) {
        ingest_options.templates.push_back(*payload::TopicTemplate::parse(pattern));
    }
    for (const auto& rule : config_.ingest.formats) {
        ingest_options.formats.push_back({rule.topic_filter, rule.format});
    }
    ingest_options.default_format = config_.ingest.default_format;
    ingest_options.line_precision = config_.ingest.line_precision;
    ingest_options.payload_limits.max_payload = config_.mqtt.max_packet_size;
    ingest_options.city_district_tag = config_.city.district_tag;
    ingest_options.max_future = config_.ingest.max_future;
    ingest_options.min_timestamp_ms = config_.ingest.min_timestamp_ms;
    ingest_options.seconds_by_magnitude = config_.ingest.seconds_by_magnitude;
    ingest_options.max_series_per_identity = config_.ingest.max_series_per_identity;
    ingest_options.max_new_series_per_minute = config_.ingest.max_new_series_per_minute;
    ingest_options.series_cache_slots = config_.ingest.series_cache_slots;
    if (config_.city.max_pairs > 0) {
        // The MQTT export publishes the city aggregates' windows, so they take its length.
        std::int64_t window_ms =
            config_.export_mqtt.enabled() ? config_.export_mqtt.interval.count() : 60'000;
        city_ = std::make_unique<ingest::CityAggregates>(config_.city.max_pairs, window_ms);
    }
    if (config_.export_mqtt.enabled()) {  // validate() made sure city_ is there
        export_mqtt_ =
            std::make_unique<AggregateExporter>(config_.export_mqtt, *city_, *metrics_.registry());
    }
    ingest_metrics_ = std::make_unique<ingest::IngestMetrics>(*metrics_.registry());
    ingest_ = std::make_unique<ingest::IngestUnit>(std::move(ingest_options), *engine_, *access_,
                                                   city_.get(), *ingest_metrics_);
    room_target_.store(ingest_.get(), std::memory_order_release);
    if (!config_.upstreams.empty()) {
        consumers_ = std::make_unique<UpstreamConsumers>(
            config_.upstreams, config_.mqtt.max_packet_size, *ingest_, *metrics_.registry());
    }

    // Designated: clang before 16 has no parenthesized aggregate initialization (the fuzz
    // build), and GCC wants every member without a default named.
    context_.reset(new GatewayContext{
        .ingest = *ingest_, .metrics = metrics_, .access = *access_, .limits = limits});
    context_->max_connections = config_.mqtt.max_connections;
    context_->max_publish_rate = config_.mqtt.max_publish_rate;
    context_->publish_burst = config_.mqtt.publish_burst;
    context_->max_send_queue = config_.mqtt.max_send_queue;
    context_->write_timeout = config_.mqtt.write_timeout;
    context_->partial_packet_timeout = config_.mqtt.partial_packet_timeout;
    context_->max_partial_bytes_total = config_.mqtt.max_partial_bytes_total;
    context_->close_on_bad_payload = config_.ingest.close_on_bad_payload;
    metrics_.connections_limit.Set(static_cast<double>(config_.mqtt.max_connections));

    unsigned io_threads = or_cores(config_.server.io_threads);
    // Room for the largest packet the engine accepts plus a read's worth of what follows it.
    std::size_t read_buffer = config_.mqtt.max_packet_size + 64 * 1024;
    for (unsigned i = 0; i < io_threads; ++i) {
        workers_.push_back(std::make_unique<IoWorker>(*context_, read_buffer));
        ingest_->add_room_listener(
            [worker = workers_.back().get()] { worker->post_space_available(); });
    }

    mqtt_port_ =
        listen(endpoint_of(config_.mqtt.listen, config_.mqtt.port, "mqtt.listen"), nullptr, "MQTT");
    if (tls_context_) {
        tls_port_ = listen(endpoint_of(config_.tls.listen, config_.tls.port, "tls.listen"),
                           tls_context_.get(), "MQTT over TLS");
    }

    storage::QueryLimits query_limits;
    query_limits.max_series = config_.http.max_query_series;
    query_limits.max_points = config_.http.max_query_points;
    // Queries take their share of the memory budget: all of them together, and one at most.
    std::size_t query_memory = config_.http.query_memory_budget;
    if (memory_budget_ > 0) {
        query_memory = static_cast<std::size_t>(std::min<std::uint64_t>(
            query_memory, memory_budget_ / 100 * storage::MemoryShares::queries));
    }
    query_limits.max_bytes = std::min(config_.http.max_query_bytes, query_memory);
    query_limits.timeout = config_.http.query_timeout;
    api_ = std::make_unique<HttpApi>(*engine_, metrics_, ready_, query_limits);
    query_pool_ = std::make_unique<QueryPool>(config_.http.query_threads, config_.http.query_queue);
    api_->set_query_pool(query_pool_.get(), query_memory);
    promql::EngineOptions promql_options;
    promql_options.lookback_delta_ms = config_.http.lookback_delta.count();
    promql_options.rollup_min_buckets = config_.http.promql_rollup_min_buckets;
    api_->set_promql_options(promql_options);
    status_ = std::make_unique<StatusPage>(*engine_, metrics_, city_.get(),
                                           config_.storage.queue_capacity);
    api_->set_status(status_.get(), city_.get());
    backups_ = std::make_unique<Backups>(*engine_, backup_directory(config_.storage),
                                         config_.storage.backup_keep, *metrics_.registry());
    api_->set_backups(backups_.get());
    HttpAuthOptions auth_options;
    auth_options.tokens_file = config_.http.tokens_file;
    auth_options.admin_from.clear();
    for (const std::string& network : config_.http.admin_from)
        auth_options.admin_from.push_back(*Network::parse(network));  // validate() checked them
    try {
        http_auth_ = std::make_unique<HttpAuth>(std::move(auth_options), metrics_.registry().get());
    } catch (const std::runtime_error& e) {
        throw ConfigError(std::string("http.tokens_file: ") + e.what());
    }
    api_->set_auth(http_auth_.get(), config_.http.checkpoint_interval);
    RemoteApiOptions remote_options;
    remote_options.max_write_body = config_.http.max_write_body;
    remote_options.max_decoded_body = config_.http.max_write_decoded_body;
    remote_options.max_write_samples = config_.http.max_write_samples;
    remote_api_ = std::make_unique<RemoteApi>(*ingest_, *engine_, metrics_, remote_options);
    remote_api_->add_routes(*api_);
    HttpServerOptions http_options;
    http_options.body_limit = [remote = remote_api_.get()](std::string_view target) {
        std::size_t limit = remote->body_limit(target);
        return limit ? limit : std::size_t{64 * 1024};
    };
    http_options.header_timeout = config_.http.header_timeout;
    http_options.idle_timeout = config_.http.idle_timeout;
    http_options.max_connections = config_.http.max_connections;
    http_options.max_connections_per_source = config_.http.max_connections_per_source;
    http_options.registry = metrics_.registry().get();
    if (!config_.http.tls_cert_file.empty()) {
        try {
            http_tls_ = std::make_unique<boost::asio::ssl::context>(make_server_context(
                {config_.http.tls_cert_file, config_.http.tls_key_file, {}, false}));
        } catch (const ConfigError& e) {
            // The message names tls.*; say which listener it was for.
            throw ConfigError(std::string("http.tls_cert_file/tls_key_file (") + e.what() + ")");
        }
        http_options.tls = http_tls_.get();
    }
    try {
        http_ = std::make_unique<HttpServer>(
            http_io_, endpoint_of(config_.http.listen, config_.http.port, "http.listen"),
            // Asynchronous: queries answer from the query pool, off the HTTP threads.
            [api = api_.get()](HttpRequest request, const boost::asio::ip::address& peer,
                               HttpRespond respond) {
                api->handle(std::move(request), peer, std::move(respond));
            },
            http_options);
    } catch (const boost::system::system_error& e) {
        throw std::runtime_error("cannot listen for HTTP on " + config_.http.listen + ":" +
                                 std::to_string(config_.http.port) + ": " + e.code().message());
    }
    http_port_ = http_->local_endpoint().port();
}

std::uint16_t Gateway::listen(tcp::endpoint endpoint, boost::asio::ssl::context* tls,
                              const char* what) {
    // The first listener picks the port (when 0); the others join it through SO_REUSEPORT.
    // SO_REUSEPORT would also let a second process join a fixed port and take half its
    // connections, so first bind without it: that fails while anyone listens there.
    std::uint16_t requested = endpoint.port();
    if (requested != 0) {
        tcp::acceptor probe(workers_.front()->io());
        boost::system::error_code ec;
        probe.open(endpoint.protocol(), ec);
        if (!ec) probe.set_option(tcp::acceptor::reuse_address(true), ec);  // TIME_WAIT is fine
        if (!ec) probe.bind(endpoint, ec);
        if (ec) {
            throw std::runtime_error(
                std::string("cannot listen for ") + what + " on " + endpoint.address().to_string() +
                ":" + std::to_string(requested) + ": " + ec.message() +
                (ec == boost::asio::error::address_in_use ? " (is another citygate running?)"
                                                          : ""));
        }
    }
    try {
        for (auto& worker : workers_) {
            auto listener = std::make_shared<MqttListener>(*worker, endpoint, tls);
            endpoint = listener->local_endpoint();
            listeners_.push_back(std::move(listener));
        }
    } catch (const boost::system::system_error& e) {
        throw std::runtime_error(std::string("cannot listen for ") + what + " on " +
                                 endpoint.address().to_string() + ":" + std::to_string(requested) +
                                 ": " + e.code().message());
    }
    return endpoint.port();
}

Gateway::~Gateway() {
    stop();
    signal_io_.stop();
    if (signal_thread_.joinable()) signal_thread_.join();
    if (query_pool_) query_pool_->stop();
    if (export_mqtt_) export_mqtt_->stop();
    for (auto& worker : workers_)
        worker->io().stop();
    http_io_.stop();
    for (auto& thread : threads_) {
        if (thread.joinable()) thread.join();
    }
    // Verifications still queued hold connections and would post to the workers' io_contexts:
    // stop them before the workers go.
    if (access_) access_->stop_verification();
}

void Gateway::run() {
    std::vector<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guards;
    for (auto& worker : workers_)
        guards.push_back(boost::asio::make_work_guard(worker->io()));
    guards.push_back(boost::asio::make_work_guard(http_io_));

    // Signals have a thread of their own: a drain or a reload must not wait for anything an
    // HTTP or I/O thread is doing.
    boost::asio::signal_set signals(signal_io_, SIGINT, SIGTERM, SIGHUP);
    std::function<void()> wait_for_signal = [&] {
        signals.async_wait([&, this](const boost::system::error_code& ec, int signo) {
            if (ec) return;
            if (signo == SIGHUP) {
                // Credentials and ACL are re-read; a bad file keeps the previous ones.
                if (auto error = access_->reload()) {
                    CG_LOG(error) << "reload failed, keeping the previous credentials and ACL: "
                                  << *error;
                } else {
                    CG_LOG(info) << "reloaded credentials and ACL";
                }
                if (auto error = http_auth_->reload()) {
                    CG_LOG(error) << "reload failed, keeping the previous HTTP tokens: " << *error;
                } else if (http_auth_->has_tokens()) {
                    CG_LOG(info) << "reloaded HTTP tokens (" << http_auth_->token_count() << ")";
                }
                return wait_for_signal();
            }
            CG_LOG(info) << "received signal " << signo << ", draining";
            stop();
        });
    };
    wait_for_signal();
    if (config_.storage.memory_trim_interval.count() > 0) {
        trim_timer_ = std::make_unique<boost::asio::steady_timer>(signal_io_);
        trim_later();
    }
    signal_thread_ = std::thread([this] { signal_io_.run(); });

    for (auto& listener : listeners_)
        listener->start();
    if (consumers_) {
        consumers_->start();
        for (const auto& u : config_.upstreams) {
            CG_LOG(info) << "consuming from upstream " << u.name << " at " << u.url << " ("
                         << u.connections << " connection" << (u.connections == 1 ? "" : "s")
                         << (u.share_group.empty() ? "" : ", share group " + u.share_group) << ")";
        }
    }
    http_->start();
    status_->start(http_io_);
    for (auto& worker : workers_) {
        threads_.emplace_back([io = &worker->io()] { io->run(); });
    }
    for (unsigned i = 0; i < config_.http.threads; ++i) {
        threads_.emplace_back([this] { http_io_.run(); });
    }
    CG_LOG(info).with("port", mqtt_port_)
        << "mqtt listening on " << config_.mqtt.listen << ":" << mqtt_port_ << " ("
        << workers_.size() << " I/O threads, " << engine_->shard_count() << " storage shards)";
    if (tls_port_) {
        CG_LOG(info) << "mqtts listening on " << config_.tls.listen << ":" << tls_port_
                     << (config_.tls.ca_file.empty() ? "" : " (client certificates verified)");
    }
    CG_LOG(info).with("port", http_port_)
        << "http listening on " << config_.http.listen << ":" << http_port_
        << (http_tls_ ? " (https)" : "")
        << (http_auth_->has_tokens() ? " (bearer tokens)" : " (admin from http.admin_from)");
    CG_LOG(info) << "data directory " << config_.storage.data_dir.string();
    if (export_mqtt_) export_mqtt_->start();
    if (remote_write_) {
        remote_write_->start();
        CG_LOG(info) << "remote write to " << config_.export_remote_write.url << " ("
                     << config_.export_remote_write.source << ")";
    }
    ready_ = true;

    {
        std::unique_lock lock(stop_mutex_);
        stop_requested_.wait(lock, [this] { return stopping_; });
    }
    signals.cancel();
    signal_io_.stop();
    signal_thread_.join();
    drain();
    guards.clear();
}

void Gateway::stop() {
    std::lock_guard lock(stop_mutex_);
    stopping_ = true;
    stop_requested_.notify_all();
}

void Gateway::trim_later() {
    trim_timer_->expires_after(config_.storage.memory_trim_interval);
    trim_timer_->async_wait([this](const boost::system::error_code& ec) {
        if (ec) return;
        trim_allocator(kTrimThreshold);
        trim_later();
    });
}

template <typename Work>
void Gateway::on_every_worker(Work work) {
    std::vector<std::future<void>> done;
    for (std::size_t i = 0; i < workers_.size(); ++i) {
        auto task = std::make_shared<std::packaged_task<void()>>([&, i] { work(i); });
        done.push_back(task->get_future());
        boost::asio::post(workers_[i]->io(), [task] { (*task)(); });
    }
    for (auto& future : done)
        future.get();
}

void Gateway::drain() {
    ready_ = false;
    auto deadline = std::chrono::steady_clock::now() + config_.server.shutdown_timeout;

    // 0. Upstream consumers: take no more messages, acknowledge what reached the WAL, and
    // disconnect (the brokers keep the sessions and send the rest again later).
    if (consumers_) consumers_->stop(deadline);

    // 1. No new connections, no new packets.
    on_every_worker([this](std::size_t i) {
        for (std::size_t l = i; l < listeners_.size(); l += workers_.size())
            listeners_[l]->stop();
        for (MqttConnection* connection : workers_[i]->live())
            connection->stop_reading();
    });

    // 2. Everything accepted by storage reaches the WAL and is acknowledged.
    // HTTP writes too: their answers are posted to http_io_, which must still be there.
    auto pending = [this] {
        return context_->pending_writes.load() + (remote_api_ ? remote_api_->pending() : 0);
    };
    while (pending() > 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (auto left = pending(); left > 0) {
        CG_LOG(warn) << "shutdown deadline passed with " << left << " writes unacknowledged";
    }

    // 3. Say goodbye: DISCONNECT "server shutting down" (v5) or a close (3.1.1), after the acks.
    on_every_worker([this](std::size_t i) {
        // A copy: a disconnect may remove its connection from the list.
        std::vector<MqttConnection*> connections = workers_[i]->live();
        for (MqttConnection* connection : connections) {
            connection->disconnect(mqtt::reason_code::server_shutting_down);
        }
    });
    while (context_->connections.load() > 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }

    // 4. Stop the threads, then close storage (its destructor drains what is left). Queries
    // still running are cancelled (they answer 503) before the engine goes.
    if (export_mqtt_) export_mqtt_->stop();
    query_pool_->stop();
    http_->stop();
    for (auto& worker : workers_)
        worker->io().stop();
    http_io_.stop();
    for (auto& thread : threads_)
        thread.join();
    threads_.clear();
    if (remote_write_) remote_write_->stop();  // a request in flight is abandoned, sent again later
    remote_write_.reset();
    engine_.reset();
    CG_LOG(info) << "stopped";
}

}  // namespace citygate::gateway
