// The ingest unit: every entry point's one way into storage. An entry point (an MQTT connection,
// later an HTTP receiver or an upstream consumer) hands in who sent what; the unit checks the ACL,
// maps the topic through the templates, picks the payload format, decodes, builds series keys,
// counts the city aggregates and the metrics, and submits to storage with backpressure. The
// completion says what became of it. No sockets, no timers, no threads of its own.
//
// Use, on one thread at a time per Appender:
//
//     ingest::Write write;
//     ingest::Verdict verdict = appender.prepare(message, write);   // decode, no storage yet
//     if (verdict != ingest::Verdict::stored) -> refuse the message with that reason
//     else if (!unit.try_submit(write, done)) -> keep `write`, stop reading, retry try_submit
//                                               when a room listener fires
//
// `done` fires exactly once, once the write is in the WAL or failed: on a storage writer thread,
// or within try_submit on the calling thread (see storage::WriteCallback).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ingest/access_control.hpp"
#include "ingest/city_aggregates.hpp"
#include "ingest/ingest_metrics.hpp"
#include "ingest/series_cache.hpp"
#include "ingest/series_quota.hpp"
#include "protocols/payload/format.hpp"
#include "protocols/payload/payload_decoder.hpp"
#include "protocols/payload/topic_template.hpp"
#include "storage/engine.hpp"

namespace citygate::ingest {

// What became of a message, as far as the sender is told.
enum class Verdict : std::uint8_t {
    stored,             // every reading accepted is durable; storage may still have refused some
                        // (late, over the series limit), which are counted, not retried
    not_authorized,     // the ACL denies the sender this topic
    topic_unmatched,    // no topic template matches
    payload_invalid,    // the payload does not decode in its format
    timestamp_invalid,  // a reading is stamped too far in the future or implausibly early
    // Durable, but readings that would have created series over a series limit were refused
    // (Outcome::series_limit says which); the readings of existing series are stored.
    series_limit,
    storage_failed,  // the WAL write failed: nothing of this message is guaranteed durable
};
const char* verdict_name(Verdict verdict);

// What one submitted write came to; handed to the completion.
struct Outcome {
    Verdict verdict = Verdict::stored;  // stored, series_limit or storage_failed
    std::size_t stored = 0;             // points now durable
    std::size_t rejected = 0;           // points storage refused for what they are
    std::string failure;                // storage_failed: why the WAL write failed
    // series_limit: the limit that refused most of the refused points, and how many it refused
    // (all limits together).
    storage::SeriesLimit series_limit = storage::SeriesLimit::none;
    std::size_t series_refused = 0;
};
// Held inline up to 40 bytes (an MQTT connection's: its worker, itself, the token and the time
// received), and within storage::WriteCallback's room once wrapped.
using Completion = storage::InplaceFunction<void(const Outcome&), 40>;

// A reading as an MQTT-style message: a topic (mapped to tags by the templates) and a payload.
struct Message {
    const Identity& identity;
    std::string_view client_id;  // for %c in ACL patterns
    std::string_view topic;
    std::span<const std::uint8_t> payload;
};

// An explicit series and its samples, for entry points that name series themselves (remote
// write). Tags need not be sorted; the unit builds the canonical key.
struct SeriesSamples {
    std::string_view measurement;
    std::span<const std::pair<std::string_view, std::string_view>> tags;
    struct Sample {
        std::int64_t timestamp_ms = 0;
        double value = 0;
    };
    std::span<const Sample> samples;
    // The arrival clock (ms since the epoch) the timestamps are checked against; 0: the unit's
    // clock, read per call. A receiver preparing many series of one request reads it once.
    std::int64_t now_ms = 0;
};

// Points prepared by an Appender and not yet in storage. Owned by the entry point between
// prepare and a successful try_submit (which empties it); movable, reusable. What it holds is the
// unit's business: today series keys, later references into storage's series table.
class Write {
  public:
    bool empty() const { return points_.empty(); }
    std::size_t points() const { return points_.size(); }
    void clear() { points_.clear(); }
    // Points naming their series by storage reference rather than by key (tests, benches).
    std::size_t by_reference() const {
        return static_cast<std::size_t>(std::count_if(points_.begin(), points_.end(),
                                                      [](const auto& p) { return p.ref.valid(); }));
    }

  private:
    friend class Appender;
    friend class IngestUnit;
    std::vector<storage::Point> points_;
};

struct FormatRule {
    std::string topic_filter;
    payload::Format format;
};

struct IngestOptions {
    std::vector<payload::TopicTemplate> templates;  // first match wins
    std::vector<FormatRule> formats;                // first match wins
    payload::Format default_format = payload::Format::detect;
    payload::TimePrecision line_precision = payload::TimePrecision::ns;
    payload::PayloadLimits payload_limits;
    std::string city_district_tag = "district";
    // Bad device clocks. A reading stamped more than `max_future` ahead of the arrival clock is
    // refused: stored, it would make every later correct reading of its series late. So is one
    // stamped before `min_timestamp_ms` (default 2000-01-01). Either refuses the whole message,
    // as a bad line refuses a whole line protocol payload. 0 turns a check off.
    std::chrono::milliseconds max_future = std::chrono::minutes(5);
    std::int64_t min_timestamp_ms = 946'684'800'000;
    // Timestamps below 10^11 are taken as seconds and scaled to ms: in ms they would be before
    // March 1973, in seconds they reach the year 5138. For fleets that send seconds.
    bool seconds_by_magnitude = false;
    // Series limits per client identity and per connection minute (see SeriesQuota); storage
    // enforces the global and per-shard ones.
    std::size_t max_series_per_identity = 100'000;
    std::size_t max_new_series_per_minute = 10'000;
    // Slots of each Appender's series reference cache (SeriesCache; about 100 bytes each, a
    // power of two); 0 turns it off, and every point then carries its series key.
    std::size_t series_cache_slots = 65536;
    // Wall clock in ms since the epoch: arrival time of readings without their own (tests
    // inject one), and the series quota's minute. Empty: the system clock.
    std::function<std::int64_t()> clock;
};

class Appender;

class IngestUnit {
  public:
    // `access` decides publishing rights; `city` may be null (city aggregates off). All must
    // outlive the unit.
    IngestUnit(IngestOptions options, storage::Engine& engine, const AccessControl& access,
               CityAggregates* city, IngestMetrics& metrics);
    IngestUnit(const IngestUnit&) = delete;
    IngestUnit& operator=(const IngestUnit&) = delete;

    // Hands `write` to storage. True: taken (`write` is left empty) and `done` will fire exactly
    // once (on a writer thread or before this returns). False: storage has no room now; `write` is
    // untouched, `done` is dropped; call again after a room listener fires. An empty write
    // completes at once, on the calling thread. Thread safe. `series` (from series_admission(), may
    // be null) is asked before each series the write would create.
    [[nodiscard]] bool try_submit(Write& write, Completion done,
                                  std::shared_ptr<storage::SeriesAdmission> series = nullptr);

    // Storage's producer-side group commit (storage::Engine::defer_commits) for this thread:
    // try_submit() calls in between queue, commit_deferred() commits them together.
    void defer_commits() { engine_.defer_commits(); }
    void commit_deferred() { engine_.commit_deferred(); }

    // The series admission for one connection of `identity`: its user, or for an anonymous
    // client `client_id`, is the identity its series are counted against. Null when the per-
    // identity and per-connection limits are both off. Thread safe.
    std::shared_ptr<storage::SeriesAdmission> series_admission(const Identity& identity,
                                                               std::string_view client_id) const;
    // The key series_admission() counts an identity's series under: the user name, or
    // "anonymous:" + client id.
    static std::string series_identity(const Identity& identity, std::string_view client_id);
    const SeriesQuota& series_quota() const { return quota_; }

    // Registers `listener`, called on a writer thread whenever storage made room after refusing
    // a submission. It must be cheap and thread safe (post to your own thread). Call before
    // traffic starts; listeners live as long as the unit.
    void add_room_listener(std::function<void()> listener);
    // Storage made room: calls every listener. Wired to EngineOptions::on_space_available.
    void notify_room() const;

    const IngestOptions& options() const { return options_; }
    IngestMetrics& metrics() const { return metrics_; }

  private:
    friend class Appender;
    std::int64_t now_ms() const;

    IngestOptions options_;
    storage::Engine& engine_;
    const AccessControl& access_;
    CityAggregates* city_;
    IngestMetrics& metrics_;
    SeriesQuota quota_;
    std::vector<std::function<void()>> room_listeners_;
};

// One thread's way into the unit: its payload decoder and scratch space, reused across
// messages. Not thread safe: one per I/O thread (or per request thread).
class Appender {
  public:
    explicit Appender(IngestUnit& unit);

    // Checks, maps and decodes `message` and appends its points to `write`. Returns stored when
    // `write` holds the points (possibly none: a payload of only skipped fields), or why not
    // (then `write` is unchanged). Counts refusals and skipped fields in the metrics and adds
    // the readings to the city aggregates (they count what sensors sent, before storage judges
    // it). The message's bytes may be released when this returns.
    Verdict prepare(const Message& message, Write& write);

    // Appends explicit series samples to `write`; refuses (payload_invalid) a measurement or
    // tag that is not a valid name, leaving `write` unchanged.
    Verdict prepare(const SeriesSamples& series, Write& write);

    // Appends one reading a payload decoder made outside MQTT (line protocol over HTTP), arrived
    // at `now`: its time checked as an MQTT reading's, its series resolved through the same
    // cache (so a known series costs no key). `write` is unchanged when it is refused.
    Verdict prepare(payload::Reading& reading, std::int64_t now, Write& write);

    // After prepare refused with payload_invalid or timestamp_invalid: where and why, for a log
    // line.
    std::string_view error_detail() const { return detail_; }

  private:
    // Scales a seconds timestamp (seconds_by_magnitude) and checks it against the clock window;
    // false, with detail_ and the metric, when it is refused.
    bool plausible_time(std::int64_t& timestamp_ms, std::string_view measurement, std::int64_t now);

    // The point of `reading` into `write`: by the series reference the cache or storage knows,
    // else (a series not stored yet) by its key.
    void append_point(std::string_view topic, const payload::Reading& reading, Write& write);
    // The city district of `reading`: its topic tag, else its payload tag.
    std::optional<std::string_view> district(const payload::Reading& reading) const;

    IngestUnit& unit_;
    payload::PayloadDecoder decoder_;
    SeriesCache series_cache_;
    std::vector<std::pair<std::string_view, std::string_view>> topic_tags_;
    payload::Readings readings_;
    std::vector<storage::Tag> series_tags_;
    std::string detail_;  // why the last prepare refused
};

}  // namespace citygate::ingest
