// The status JSON and the sampler behind its ingest-rate history.
#include "gateway/ops/status_page.hpp"

#include <cstdio>

#include "gateway/http/http_api.hpp"

namespace citygate::gateway {
namespace {

constexpr std::size_t history_length = 120;

void append_number(std::string& out, double value) {
    char buffer[32];
    int n = std::snprintf(buffer, sizeof buffer, "%.15g", value);
    out.append(buffer, static_cast<std::size_t>(n));
}

double rate(double samples, double earlier, std::int64_t ms) {
    return ms > 0 ? (samples - earlier) * 1000.0 / static_cast<double>(ms) : 0;
}

}  // namespace

StatusPage::StatusPage(const storage::Engine& engine, const Metrics& metrics,
                       const ingest::CityAggregates* city, std::size_t queue_capacity)
    : engine_(engine), metrics_(metrics), city_(city), queue_capacity_(queue_capacity) {}

void StatusPage::start(boost::asio::io_context& io) {
    timer_ = std::make_unique<boost::asio::steady_timer>(io);
    // The first observation is the baseline: a burst in the first second shows as a rate.
    sample(std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
               .count());
    arm();
}

void StatusPage::arm() {
    timer_->expires_after(std::chrono::seconds(1));
    timer_->async_wait([this](const boost::system::error_code& ec) {
        if (ec) return;
        sample(std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count());
        arm();
    });
}

void StatusPage::sample(std::int64_t now_ms) {
    Observation observation{now_ms, metrics_.samples_written.Value(),
                            metrics_.connections.Value() + metrics_.connections_tls.Value()};
    std::lock_guard lock(mutex_);
    history_.push_back(observation);
    if (history_.size() > history_length + 1) history_.pop_front();
}

std::vector<std::string> storage_problems(const storage::Engine& engine) {
    std::vector<std::string> problems;
    for (const storage::WalRecovery& r : engine.wal_recovery()) {
        if (!r.damaged()) continue;
        problems.push_back("shard " + std::to_string(r.shard) +
                           ": started on a damaged write-ahead log (" + r.problem +
                           ") with --recover=point-in-time; " + std::to_string(r.dropped_bytes) +
                           " bytes in " + std::to_string(r.dropped_records) + " records dropped" +
                           (r.acknowledged_lost ? ", acknowledged writes among them" : ""));
    }
    return problems;
}

std::string StatusPage::json(std::int64_t now_ms) const {
    double samples_written = metrics_.samples_written.Value();
    double connections = metrics_.connections.Value() + metrics_.connections_tls.Value();
    storage::EngineStats stats = engine_.stats();

    std::string out = "{\"version\":";
    append_json_string(out, CITYGATE_VERSION);
    out += ",\"uptime_seconds\":";
    append_number(
        out, std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count());
    out += ",\"time_ms\":" + std::to_string(now_ms);
    out += ",\"connections\":";
    append_number(out, connections);
    out += ",\"samples_written\":";
    append_number(out, samples_written);
    out += ",\"series\":" + std::to_string(stats.series);

    // The rate over the last five observations (or fewer, just after start).
    {
        std::lock_guard lock(mutex_);
        double ingest_rate = 0;
        if (history_.size() >= 2) {
            const Observation& last = history_.back();
            const Observation& first =
                history_[history_.size() - std::min<std::size_t>(history_.size(), 6)];
            ingest_rate =
                rate(last.samples_written, first.samples_written, last.time_ms - first.time_ms);
        }
        out += ",\"ingest_rate\":";
        append_number(out, ingest_rate);
        // [time_ms, samples/s over the second before, connections]
        out += ",\"history\":[";
        for (std::size_t i = 1; i < history_.size(); ++i) {
            if (i > 1) out += ',';
            out += '[' + std::to_string(history_[i].time_ms) + ',';
            append_number(out, rate(history_[i].samples_written, history_[i - 1].samples_written,
                                    history_[i].time_ms - history_[i - 1].time_ms));
            out += ',';
            append_number(out, history_[i].connections);
            out += ']';
        }
        out += ']';
    }

    // Whether storage takes writes: a full data volume, a read-only start, failed shards.
    storage::StorageHealth health = engine_.health();
    out += ",\"storage\":{\"writable\":";
    out += health.writable() ? "true" : "false";
    out += ",\"disk_free_bytes\":" + std::to_string(health.disk.free_bytes) +
           ",\"disk_reserve_bytes\":" + std::to_string(health.disk.reserve_bytes) +
           ",\"problems\":[";
    {
        std::vector<std::string> problems = engine_.problems();
        for (std::size_t i = 0; i < problems.size(); ++i) {
            if (i) out += ',';
            append_json_string(out, problems[i]);
        }
    }
    out += "]}";
    // What an operator must know although storage works (a start on a damaged WAL).
    out += ",\"problems\":[";
    {
        auto problems = storage_problems(engine_);
        for (std::size_t i = 0; i < problems.size(); ++i) {
            if (i) out += ',';
            append_json_string(out, problems[i]);
        }
    }
    out += ']';
    auto recovery = engine_.wal_recovery();
    std::vector<bool> failed(stats.queue_depth.size(), false);
    for (const auto& f : health.failed_shards) {
        if (f.shard < failed.size()) failed[f.shard] = true;
    }
    const bool held = health.disk.full || health.read_only;

    out += ",\"shards\":[";
    for (std::size_t shard = 0; shard < stats.queue_depth.size(); ++shard) {
        if (shard) out += ',';
        std::size_t depth = stats.queue_depth[shard];
        // A queue nine tenths full is about to push back on the clients feeding it.
        const char* state = failed[shard]                       ? "unwritable"
                            : held                              ? "held"
                            : depth * 10 >= queue_capacity_ * 9 ? "backpressure"
                            : depth * 2 >= queue_capacity_      ? "busy"
                                                                : "ok";
        out += "{\"shard\":" + std::to_string(shard) + ",\"queue_depth\":" + std::to_string(depth) +
               ",\"queue_capacity\":" + std::to_string(queue_capacity_) + ",\"points_written\":" +
               std::to_string(shard < stats.points_written_per_shard.size()
                                  ? stats.points_written_per_shard[shard]
                                  : 0) +
               ",\"state\":\"" + state + "\"";
        if (shard < recovery.size()) {
            const storage::WalRecovery& r = recovery[shard];
            out += ",\"wal_dropped_bytes\":" + std::to_string(r.dropped_bytes) +
                   ",\"wal_dropped_records\":" + std::to_string(r.dropped_records) +
                   ",\"wal_damaged\":" + (r.damaged() ? "true" : "false");
        }
        out += '}';
    }
    out += ']';

    out += ",\"city\":";
    if (!city_) {
        out += "null}";
        return out;
    }
    ingest::CitySnapshot city = city_->snapshot(now_ms);
    out += "{\"minute_start_ms\":" + std::to_string(city.minute_start_ms) +
           ",\"pairs_tracked\":" + std::to_string(city.pairs_tracked) +
           ",\"max_pairs\":" + std::to_string(city_->max_pairs()) +
           ",\"readings_dropped\":" + std::to_string(city.readings_dropped) + ",\"pairs\":[";
    bool first = true;
    for (const ingest::CityAverage& pair : city.pairs) {
        if (!first) out += ',';
        first = false;
        out += "{\"district\":";
        append_json_string(out, pair.district);
        out += ",\"measurement\":";
        append_json_string(out, pair.measurement);
        out += ",\"avg_1m\":";
        if (pair.samples) {
            append_number(out, pair.average);
        } else {
            out += "null";
        }
        for (auto [name, value] :
             {std::pair{",\"min_1m\":", pair.minimum}, std::pair{",\"max_1m\":", pair.maximum}}) {
            out += name;
            if (pair.samples) {
                append_number(out, value);
            } else {
                out += "null";
            }
        }
        out += ",\"samples_1m\":" + std::to_string(pair.samples) + ",\"current_avg\":";
        if (pair.current_samples) {
            append_number(out, pair.current_average);
        } else {
            out += "null";
        }
        out += ",\"current_samples\":" + std::to_string(pair.current_samples) + '}';
    }
    out += "]}}";
    return out;
}

}  // namespace citygate::gateway
