// The remote-write sender thread: cursor, batches, retries, metrics.
#include "export/remote_write_sender.hpp"

#include <algorithm>
#include <limits>
#include <map>
#include <stdexcept>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "export/batch_cut.hpp"
#include "export/export_cursor.hpp"
#include "export/http_post.hpp"
#include "export/remote_write_encoding.hpp"
#include "export/retry_policy.hpp"

namespace citygate::exports {
namespace {

constexpr std::int64_t kMinute = 60'000;

std::string base64(std::string_view in) {
    static constexpr char digits[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    std::size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        auto n = (static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) << 16) |
                 (static_cast<std::uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8) |
                 static_cast<unsigned char>(in[i + 2]);
        out += digits[(n >> 18) & 63];
        out += digits[(n >> 12) & 63];
        out += digits[(n >> 6) & 63];
        out += digits[n & 63];
    }
    if (i < in.size()) {
        std::uint32_t n = static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) << 16;
        if (i + 1 < in.size())
            n |= static_cast<std::uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8;
        out += digits[(n >> 18) & 63];
        out += digits[(n >> 12) & 63];
        out += i + 1 < in.size() ? digits[(n >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

std::int64_t floor_to(std::int64_t t, std::int64_t unit) {
    return t >= 0 ? t / unit * unit : -((-t + unit - 1) / unit) * unit;
}

std::int64_t system_now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// The four rollup series a 1-minute bucket becomes.
struct RollupFunction {
    storage::Aggregation function;
    const char* suffix;
};
constexpr RollupFunction kRollups[] = {{storage::Aggregation::avg, ":avg_1m"},
                                       {storage::Aggregation::min, ":min_1m"},
                                       {storage::Aggregation::max, ":max_1m"},
                                       {storage::Aggregation::count, ":count_1m"}};

}  // namespace

struct RemoteWriteSender::Impl {
    RemoteWriteOptions options;
    const storage::Engine& engine;
    std::vector<storage::Selector> selectors;
    HttpPost poster;
    Backoff backoff;
    std::vector<std::pair<std::string, std::string>> headers;
    std::shared_ptr<prometheus::Registry> own_registry;  // when none was given

    prometheus::Counter* samples_sent;  // source="raw"
    prometheus::Counter* rollups_sent;  // source="rollup_1m"
    prometheus::Counter* batches_sent;
    prometheus::Counter* batches_failed;
    prometheus::Counter* retries;
    prometheus::Counter* bytes_sent;
    prometheus::Counter* samples_rejected;
    prometheus::Counter* samples_skipped;
    prometheus::Counter* samples_late;
    prometheus::Gauge* lag_seconds;
    prometheus::Gauge* rollup_lag_seconds;
    prometheus::Counter* read_errors;
    prometheus::Counter* cursor_errors;

    std::atomic<std::uint64_t> n_samples{0}, n_batches{0}, n_failed{0}, n_retries{0}, n_bytes{0},
        n_skipped{0}, n_late{0};
    std::atomic<std::int64_t> raw_cursor_view{0};

    // The sender thread's own state.
    ExportCursor cursor;
    struct Stream {
        const char* name;
        bool rollup;
        std::int64_t slice_ms;
        std::chrono::steady_clock::time_point last_send;
        std::chrono::steady_clock::time_point last_save;
        std::uint64_t written_at_send = 0;  // EngineStats::points_written at the last send
    };
    std::vector<Stream> streams;
    std::chrono::steady_clock::time_point last_failure_log{};
    std::chrono::steady_clock::time_point last_late_log{};
    std::chrono::steady_clock::time_point last_read_error_log{};
    std::chrono::steady_clock::time_point last_save_error_log{};
    // Late-sample accounting of the raw stream: samples sent (or refused by the receiver) per
    // minute, from the first whole minute after the start; minutes before `judged_until` are
    // judged. Bounded: minutes are judged out_of_order_window after they end.
    std::map<std::int64_t, std::uint64_t> accounted;
    std::optional<std::int64_t> judged_until;
    bool failing = false;

    std::thread thread;
    std::mutex mutex;
    std::condition_variable wake;
    bool stopping = false;

    Impl(RemoteWriteOptions o, const storage::Engine& e, HttpUrl url)
        : options(std::move(o)),
          engine(e),
          poster(std::move(url), options.timeout, options.tls_ca_file),
          backoff(options.min_backoff, options.max_backoff,
                  static_cast<std::uint64_t>(
                      std::chrono::steady_clock::now().time_since_epoch().count())) {}

    std::int64_t now_ms() const { return options.clock ? options.clock() : system_now_ms(); }
    void log(int level, const std::string& message) const {
        if (options.log) options.log(level, message);
    }
    bool stop_requested() {
        std::lock_guard lock(mutex);
        return stopping;
    }
    // Sleeps up to `delay`; false when stop() came first.
    bool sleep(std::chrono::milliseconds delay) {
        std::unique_lock lock(mutex);
        return !wake.wait_for(lock, delay, [this] { return stopping; });
    }

    std::optional<std::int64_t>& cursor_of(const Stream& s) {
        return s.rollup ? cursor.rollup_1m_ms : cursor.raw_ms;
    }

    void save() {
        std::string error;
        if (!save_cursor(options.cursor_file, cursor, error)) {
            // The batch was acknowledged: going on is right, a restart resends from the older
            // cursor (duplicates, no loss).
            cursor_errors->Increment();
            auto steady = std::chrono::steady_clock::now();
            if (steady - last_save_error_log > std::chrono::seconds(30)) {
                last_save_error_log = steady;
                log(2,
                    "remote write: cannot save the cursor (a restart now resends from the last "
                    "saved one): " +
                        error);
            }
        }
    }

    storage::QueryLimits limits(bool unbounded) const {
        storage::QueryLimits l;
        l.max_series = std::numeric_limits<std::size_t>::max();
        l.max_points = unbounded ? std::numeric_limits<std::size_t>::max()
                                 : 8 * options.batch_samples + 100'000;
        l.max_bytes = std::size_t{1} << 30;
        return l;
    }

    // Selected samples of [start, end), one entry per series (selectors that overlap do not
    // send a series twice).
    storage::Status read(const Stream& s, std::int64_t start, std::int64_t end,
                         std::vector<ExportSeries>& out) {
        std::map<std::string, ExportSeries> merged;
        bool unbounded = end - start <= (s.rollup ? kMinute : 1);
        for (const storage::Selector& selector : selectors) {
            if (!s.rollup) {
                auto result = engine.query_raw(selector, start, end, limits(unbounded));
                if (!result.is_ok()) return result.status();
                for (storage::RawSeries& raw : result.value()) {
                    if (raw.timestamps_ms.empty() || merged.count(raw.series)) continue;
                    ExportSeries one{raw.series, "", std::move(raw.timestamps_ms),
                                     std::move(raw.values)};
                    merged.emplace(one.key, std::move(one));
                }
                continue;
            }
            for (const RollupFunction& f : kRollups) {
                storage::AggregateQuery query;
                query.selector = selector;
                query.start_ms = start;
                query.end_ms = end;
                query.step_ms = kMinute;
                query.function = f.function;
                auto result = engine.query_aggregate(query, limits(unbounded));
                if (!result.is_ok()) return result.status();
                for (storage::AggregatedSeries& agg : result.value()) {
                    if (agg.timestamps_ms.empty()) continue;
                    std::string id = agg.key + f.suffix;
                    if (merged.count(id)) continue;
                    merged.emplace(id, ExportSeries{agg.key, f.suffix, std::move(agg.timestamps_ms),
                                                    std::move(agg.values)});
                }
            }
        }
        out.clear();
        for (auto& [id, one] : merged)
            out.push_back(std::move(one));
        return storage::Status::ok();
    }

    // Samples never sent that max_backlog gives up: counted (best effort, it is a query).
    // Selected samples stamped in [from, to), all series of a selector together: raw points
    // for the partial minutes at either end, 1-minute rollups for the whole minutes between.
    std::optional<std::uint64_t> count_stored(std::int64_t from, std::int64_t to) {
        std::int64_t first_minute = std::min(to, floor_to(from + kMinute - 1, kMinute));
        std::int64_t last_minute = std::max(first_minute, floor_to(to, kMinute));
        std::pair<std::int64_t, std::int64_t> parts[] = {
            {from, first_minute}, {first_minute, last_minute}, {last_minute, to}};
        std::uint64_t total = 0;
        for (const storage::Selector& selector : selectors) {
            for (const auto& [start, end] : parts) {
                if (end <= start) continue;
                storage::AggregateQuery query;
                query.selector = selector;
                query.start_ms = start;
                query.end_ms = end;
                query.step_ms = end - start;  // whole minutes in the middle: rollups are read
                query.function = storage::Aggregation::count;
                query.group_by = std::vector<std::string>{};
                storage::QueryLimits l = limits(false);
                l.max_points = 100'000'000;
                auto result = engine.query_aggregate(query, l);
                if (!result.is_ok()) return std::nullopt;
                for (const auto& group : result.value()) {
                    for (double v : group.values)
                        total += static_cast<std::uint64_t>(v);
                }
            }
        }
        return total;
    }

    // Samples never sent that max_backlog gives up: counted (best effort, it is a query).
    void skip_backlog(const Stream& s, std::int64_t from, std::int64_t to) {
        auto skipped = count_stored(from, to);
        if (!s.rollup && skipped) {
            samples_skipped->Increment(static_cast<double>(*skipped));
            n_skipped += *skipped;
        }
        log(1, std::string("remote write: ") + s.name + " data older than max_backlog (" +
                   std::to_string(options.max_backlog.count() / 1000) +
                   " s) was never sent and is skipped: " +
                   (skipped ? std::to_string(*skipped) + " raw samples"
                            : "an unknown number of samples (too many to count)") +
                   (selectors.size() > 1 ? " (each selector counted on its own)" : ""));
    }

    void account(const std::vector<ExportSeries>& batch) {
        for (const ExportSeries& one : batch) {
            for (std::int64_t ts : one.timestamps_ms) {
                std::int64_t minute = floor_to(ts, kMinute);
                if (judged_until && minute >= *judged_until) ++accounted[minute];
            }
        }
    }

    // Minutes wholly behind the cursor and older than out_of_order_window: what storage holds
    // for them beyond what was sent arrived too late to be sent.
    void judge_late(std::int64_t cursor_ms, std::int64_t now) {
        std::int64_t final_before = std::min(
            cursor_ms, now - options.out_of_order_window.count() - options.settle_delay.count());
        final_before = floor_to(final_before, kMinute);
        if (final_before <= *judged_until) return;
        std::int64_t from = *judged_until;
        final_before = std::min(final_before, from + 60 * kMinute);  // an hour a step at most
        // Per-minute counts from the 1-minute rollups (start and step on whole minutes).
        std::map<std::string, bool> seen;
        std::map<std::int64_t, std::uint64_t> stored;
        for (const storage::Selector& selector : selectors) {
            storage::AggregateQuery query;
            query.selector = selector;
            query.start_ms = from;
            query.end_ms = final_before;
            query.step_ms = kMinute;
            query.function = storage::Aggregation::count;
            auto result = engine.query_aggregate(query, limits(true));
            if (!result.is_ok()) {
                read_errors->Increment();
                log(2, "remote write: counting late samples failed: " + result.status().message());
                return;  // tried again next step
            }
            for (const storage::AggregatedSeries& series : result.value()) {
                if (!seen.emplace(series.key, true).second) continue;  // matched twice
                for (std::size_t i = 0; i < series.timestamps_ms.size(); ++i)
                    stored[series.timestamps_ms[i]] += static_cast<std::uint64_t>(series.values[i]);
            }
        }
        std::uint64_t late = 0;
        for (const auto& [minute, count] : stored) {
            auto sent = accounted.find(minute);
            std::uint64_t was = sent == accounted.end() ? 0 : sent->second;
            if (count > was) late += count - was;
        }
        accounted.erase(accounted.begin(), accounted.lower_bound(final_before));
        judged_until = final_before;
        if (late == 0) return;
        samples_late->Increment(static_cast<double>(late));
        n_late += late;
        auto steady = std::chrono::steady_clock::now();
        if (steady - last_late_log > std::chrono::minutes(1)) {
            last_late_log = steady;
            log(1, "remote write: " + std::to_string(late) +
                       " samples were stored after the cursor had passed their timestamp (more "
                       "than settle_delay late) and were not sent; a longer settle_delay sends "
                       "them, at that much lag");
        }
    }

    enum class Sent { acknowledged, dropped, expired, stopped };

    Sent send(const Stream& s, std::int64_t batch_start, const std::vector<ExportSeries>& batch) {
        std::string body = encode_remote_write_body(batch);
        std::size_t samples = sample_count(batch);
        backoff.reset();
        for (;;) {
            if (stop_requested()) return Sent::stopped;
            HttpReply reply = poster.post(body, headers);
            bytes_sent->Increment(static_cast<double>(body.size()));
            n_bytes += body.size();
            switch (classify_status(reply.status)) {
                case Outcome::acknowledged:
                    if (failing) {
                        log(0, "remote write: the receiver takes batches again");
                        failing = false;
                    }
                    (s.rollup ? rollups_sent : samples_sent)
                        ->Increment(static_cast<double>(samples));
                    batches_sent->Increment();
                    n_samples += samples;
                    n_batches += 1;
                    return Sent::acknowledged;
                case Outcome::drop:
                    batches_failed->Increment();
                    samples_rejected->Increment(static_cast<double>(samples));
                    n_failed += 1;
                    log(2, "remote write: the receiver refused a batch of " +
                               std::to_string(samples) + " samples with HTTP " +
                               std::to_string(reply.status) + " (" + reply.body +
                               "); dropped, not retried");
                    return Sent::dropped;
                case Outcome::retry:
                    break;
            }
            retries->Increment();
            n_retries += 1;
            std::optional<std::chrono::milliseconds> retry_after;
            if (!reply.retry_after.empty() && (reply.status == 429 || reply.status == 503)) {
                retry_after = parse_retry_after(reply.retry_after, now_ms());
            }
            auto delay = retry_delay(backoff.next(), retry_after);
            auto steady = std::chrono::steady_clock::now();
            if (!failing || steady - last_failure_log > std::chrono::seconds(30)) {
                log(1, "remote write: " +
                           (reply.status ? "HTTP " + std::to_string(reply.status)
                                         : "no answer (" + reply.error + ")") +
                           "; retrying in " + std::to_string(delay.count()) + " ms");
                last_failure_log = steady;
            }
            failing = true;
            if (!sleep(delay)) return Sent::stopped;
            std::int64_t now = now_ms();
            update_lag(s, batch_start, now);
            // The other stream waits behind this one, so its lag grows too: an outage that
            // began while a minute's rollup batch was going out left the raw lag where it was.
            for (const Stream& other : streams) {
                if (&other == &s) continue;
                if (const auto& at = cursor_of(other)) update_lag(other, *at, now);
            }
            if (batch_start < now - options.max_backlog.count()) return Sent::expired;
        }
    }

    void update_lag(const Stream& s, std::int64_t at, std::int64_t now) {
        (s.rollup ? rollup_lag_seconds : lag_seconds)->Set(static_cast<double>(now - at) / 1000);
    }

    // One batch (or a wait decision) of one stream. True when more is ready at once.
    bool step(Stream& s) {
        std::int64_t now = now_ms();
        std::int64_t granularity = s.rollup ? kMinute : 1;
        std::int64_t horizon = floor_to(now - options.settle_delay.count(), granularity);
        std::int64_t oldest = floor_to(now - options.max_backlog.count(), granularity);
        std::optional<std::int64_t>& at = cursor_of(s);
        if (!at) {
            // First start: what storage holds within max_backlog is sent.
            at = oldest;
            save();
        } else if (*at < oldest) {
            skip_backlog(s, *at, oldest);
            at = oldest;
            save();
        }
        if (!s.rollup) {
            // Minutes from the first whole one after the start are judged for late samples.
            if (!judged_until) judged_until = floor_to(*at + kMinute - 1, kMinute);
            judged_until = std::max(*judged_until, floor_to(oldest + kMinute - 1, kMinute));
            judge_late(*at, now);
        }
        if (!s.rollup) raw_cursor_view = *at;
        update_lag(s, *at, now);
        if (*at >= horizon) return false;

        std::int64_t start = *at;
        std::int64_t end = std::min(horizon, start + s.slice_ms);
        bool caught_up = end == horizon;
        auto steady = std::chrono::steady_clock::now();
        // Caught up and young: no read until batch_age, unless storage took enough points since
        // the last send to fill a batch (all series count, so this never reads later).
        std::uint64_t written = engine.stats().points_written;
        if (caught_up && steady - s.last_send < options.batch_age &&
            written - s.written_at_send < options.batch_samples) {
            return false;
        }
        std::vector<ExportSeries> batch;
        if (auto status = read(s, start, end, batch); !status.is_ok()) {
            if (status.code() == storage::Status::Code::limit_exceeded &&
                s.slice_ms > granularity) {
                s.slice_ms = std::max(granularity, s.slice_ms / 2);
                return true;
            }
            read_errors->Increment();
            auto steady = std::chrono::steady_clock::now();
            if (steady - last_read_error_log > std::chrono::seconds(30)) {
                last_read_error_log = steady;
                log(2, std::string("remote write: reading ") + s.name +
                           " samples failed (tried again): " + status.message());
            }
            return false;
        }
        std::size_t samples = sample_count(batch);
        if (caught_up && samples < options.batch_samples &&
            steady - s.last_send < options.batch_age) {
            return false;  // wait for a full batch or its age
        }
        if (samples > options.batch_samples) {
            std::vector<std::int64_t> stamps;
            stamps.reserve(samples);
            for (const ExportSeries& one : batch)
                stamps.insert(stamps.end(), one.timestamps_ms.begin(), one.timestamps_ms.end());
            end = batch_cut(stamps, options.batch_samples, start, end, granularity);
            for (ExportSeries& one : batch) {
                auto keep = static_cast<std::size_t>(
                    std::lower_bound(one.timestamps_ms.begin(), one.timestamps_ms.end(), end) -
                    one.timestamps_ms.begin());
                one.timestamps_ms.resize(keep);
                one.values.resize(keep);
            }
            std::erase_if(batch, [](const ExportSeries& one) { return one.timestamps_ms.empty(); });
            s.slice_ms = std::max(granularity, end - start);
            caught_up = false;
        } else if (!caught_up && samples < options.batch_samples / 2) {
            s.slice_ms = std::min<std::int64_t>(s.slice_ms * 2, 3'600'000);
        }
        if (!batch.empty()) {
            switch (send(s, start, batch)) {
                case Sent::stopped:
                    return false;
                case Sent::expired:
                    return true;  // the next step skips what max_backlog gave up
                case Sent::acknowledged:
                case Sent::dropped:
                    break;
            }
            if (!s.rollup) account(batch);
        }
        s.last_send = steady;
        s.written_at_send = written;
        at = end;
        if (!s.rollup) raw_cursor_view = end;
        // Empty stretches move the cursor too, saved now and then: a restart rereads them.
        if (!batch.empty() || steady - s.last_save > std::chrono::seconds(10)) {
            save();
            s.last_save = steady;
        }
        update_lag(s, end, now_ms());
        return !caught_up;
    }

    void run() {
        auto poll = std::clamp<std::chrono::milliseconds>(
            options.batch_age / 4, std::chrono::milliseconds(50), std::chrono::seconds(1));
        while (!stop_requested()) {
            bool more = false;
            for (Stream& s : streams) {
                if (stop_requested()) return;
                more |= step(s);
            }
            if (!more && !sleep(poll)) return;
        }
    }
};

RemoteWriteSender::RemoteWriteSender(RemoteWriteOptions options, const storage::Engine& engine,
                                     prometheus::Registry* registry) {
    std::string error;
    auto url = HttpUrl::parse(options.url, error);
    if (!url) throw std::invalid_argument("url: " + error);
    if (!options.raw && !options.rollup_1m) {
        throw std::invalid_argument("source: nothing to send");
    }
    if (options.batch_samples == 0) throw std::invalid_argument("batch_samples: must be positive");
    if (options.cursor_file.empty()) throw std::invalid_argument("cursor file: not set");
    std::vector<storage::Selector> selectors;
    for (const std::string& text : options.select) {
        auto parsed = storage::Selector::parse(text);
        if (!parsed.is_ok()) {
            throw std::invalid_argument("select: \"" + text + "\": " + parsed.status().message());
        }
        selectors.push_back(std::move(parsed.value()));
    }
    if (selectors.empty()) throw std::invalid_argument("select: needs at least one selector");

    impl_ = std::make_unique<Impl>(std::move(options), engine, std::move(*url));
    Impl& s = *impl_;
    s.selectors = std::move(selectors);
    s.headers = {{"Content-Encoding", "snappy"},
                 {"Content-Type", "application/x-protobuf"},
                 {"X-Prometheus-Remote-Write-Version", "0.1.0"}};
    if (!s.options.bearer_token.empty()) {
        s.headers.emplace_back("Authorization", "Bearer " + s.options.bearer_token);
    } else if (!s.options.username.empty()) {
        s.headers.emplace_back("Authorization",
                               "Basic " + base64(s.options.username + ":" + s.options.password));
    }
    if (!registry) {
        s.own_registry = std::make_shared<prometheus::Registry>();
        registry = s.own_registry.get();
    }
    auto counter = [&](const char* name, const char* help,
                       std::map<std::string, std::string> labels = {}) {
        return &prometheus::BuildCounter().Name(name).Help(help).Register(*registry).Add(labels);
    };
    auto& sent = prometheus::BuildCounter()
                     .Name("citygate_remote_write_samples_sent_total")
                     .Help(
                         "Samples the remote-write receiver acknowledged (2xx), by source: raw, "
                         "rollup_1m (each bucket is four samples: avg, min, max, count)")
                     .Register(*registry);
    s.samples_sent = &sent.Add({{"source", "raw"}});
    s.rollups_sent = &sent.Add({{"source", "rollup_1m"}});
    s.batches_sent = counter("citygate_remote_write_batches_sent_total",
                             "Remote-write requests the receiver acknowledged (2xx)");
    s.batches_failed = counter("citygate_remote_write_batches_failed_total",
                               "Remote-write batches the receiver refused for good (4xx other than "
                               "429): dropped, not retried");
    s.retries = counter("citygate_remote_write_retries_total",
                        "Remote-write requests tried again (no answer, 429 or 5xx)");
    s.bytes_sent = counter("citygate_remote_write_bytes_sent_total",
                           "Bytes of remote-write request bodies sent (snappy), retries included");
    auto& dropped = prometheus::BuildCounter()
                        .Name("citygate_remote_write_samples_dropped_total")
                        .Help(
                            "Samples never acknowledged by the remote-write receiver, by "
                            "reason: rejected (4xx), backlog (older than max_backlog)")
                        .Register(*registry);
    s.samples_rejected = &dropped.Add({{"reason", "rejected"}});
    s.samples_skipped = &dropped.Add({{"reason", "backlog"}});
    s.samples_late = &dropped.Add({{"reason", "late"}});
    s.read_errors = counter("citygate_remote_write_read_errors_total",
                            "Storage reads of the remote-write sender that failed");
    s.cursor_errors = counter("citygate_remote_write_cursor_save_errors_total",
                              "Times the remote-write cursor file could not be saved");
    auto& lag = prometheus::BuildGauge()
                    .Name("citygate_remote_write_lag_seconds")
                    .Help(
                        "Now minus the remote-write cursor: age of the oldest sample not yet "
                        "acknowledged by the receiver (settle_delay when caught up)")
                    .Register(*registry);
    s.lag_seconds = &lag.Add({{"source", "raw"}});
    s.rollup_lag_seconds = &lag.Add({{"source", "rollup_1m"}});

    auto loaded = load_cursor(s.options.cursor_file, error);
    if (!loaded) throw std::runtime_error("remote write cursor: " + error);
    s.cursor = *loaded;
    if (s.cursor.raw_ms) s.raw_cursor_view = *s.cursor.raw_ms;

    auto slice = std::max<std::int64_t>(1000, s.options.batch_age.count());
    auto steady = std::chrono::steady_clock::now();
    if (s.options.raw) s.streams.push_back({"raw", false, slice, steady, steady});
    if (s.options.rollup_1m) {
        s.streams.push_back(
            {"rollup_1m", true, std::max<std::int64_t>(kMinute, slice), steady, steady});
    }
}

RemoteWriteSender::~RemoteWriteSender() {
    stop();
}

void RemoteWriteSender::start() {
    Impl& s = *impl_;
    s.thread = std::thread([&s] { s.run(); });
}

void RemoteWriteSender::stop() {
    if (!impl_) return;
    {
        std::lock_guard lock(impl_->mutex);
        impl_->stopping = true;
    }
    impl_->wake.notify_all();
    impl_->poster.cancel();
    if (impl_->thread.joinable()) impl_->thread.join();
}

RemoteWriteSender::Figures RemoteWriteSender::figures() const {
    const Impl& s = *impl_;
    Figures f;
    f.samples_sent = s.n_samples.load();
    f.batches_sent = s.n_batches.load();
    f.batches_failed = s.n_failed.load();
    f.retries = s.n_retries.load();
    f.bytes_sent = s.n_bytes.load();
    f.samples_skipped_backlog = s.n_skipped.load();
    f.samples_late = s.n_late.load();
    f.raw_cursor_ms = s.raw_cursor_view.load();
    return f;
}

}  // namespace citygate::exports
