// The ingest pipeline: ACL, topic template, payload format, decoding, series keys, city
// aggregates, then storage with backpressure.
#include "ingest/ingest_unit.hpp"

#include <algorithm>

#include "protocols/mqtt/topic_filter.hpp"

namespace citygate::ingest {

const char* verdict_name(Verdict verdict) {
    switch (verdict) {
        case Verdict::stored:
            return "stored";
        case Verdict::not_authorized:
            return "not_authorized";
        case Verdict::topic_unmatched:
            return "topic_unmatched";
        case Verdict::payload_invalid:
            return "payload_invalid";
        case Verdict::timestamp_invalid:
            return "timestamp_invalid";
        case Verdict::series_limit:
            return "series_limit";
        case Verdict::storage_failed:
            return "storage_failed";
    }
    return "unknown";
}

IngestUnit::IngestUnit(IngestOptions options, storage::Engine& engine, const AccessControl& access,
                       CityAggregates* city, IngestMetrics& metrics)
    : options_(std::move(options)),
      engine_(engine),
      access_(access),
      city_(city),
      metrics_(metrics),
      quota_(
          {options_.max_series_per_identity, options_.max_new_series_per_minute, options_.clock}) {}

std::int64_t IngestUnit::now_ms() const {
    if (options_.clock) return options_.clock();
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

bool IngestUnit::try_submit(Write& write, Completion done,
                            std::shared_ptr<storage::SeriesAdmission> series) {
    auto stored = [this, done = std::move(done)](const storage::WriteResult& result) {
        if (result.rejected() > 0) metrics_.storage_rejected.Increment();
        if (!result.durable()) metrics_.storage_failed.Increment();
        if (!result.durable()) {
            return done({Verdict::storage_failed, 0, result.rejected(), result.status.message()});
        }
        Outcome outcome{Verdict::stored, result.accepted, result.rejected(), {}};
        if (result.rejected_series_limit > 0) {
            outcome.verdict = Verdict::series_limit;
            outcome.series_refused = result.rejected_series_limit;
            metrics_.series_limit.Increment();
            std::size_t most = 0;
            for (std::size_t i = 1; i < storage::kSeriesLimits; ++i) {
                std::size_t n = result.rejected_by_limit[i];
                if (n == 0) continue;
                metrics_.series_refused[i]->Increment(static_cast<double>(n));
                if (n > most) {
                    most = n;
                    outcome.series_limit = static_cast<storage::SeriesLimit>(i);
                }
            }
        }
        done(outcome);
    };
    static_assert(storage::WriteCallback::stores_inline<decltype(stored)>);
    return engine_.try_write(write.points_, std::move(stored), std::move(series));
}

std::string IngestUnit::series_identity(const Identity& identity, std::string_view client_id) {
    if (!identity.anonymous) return identity.user;
    return "anonymous:" + std::string(client_id);
}

std::shared_ptr<storage::SeriesAdmission> IngestUnit::series_admission(
    const Identity& identity, std::string_view client_id) const {
    return quota_.connection(series_identity(identity, client_id));
}

void IngestUnit::add_room_listener(std::function<void()> listener) {
    room_listeners_.push_back(std::move(listener));
}

void IngestUnit::notify_room() const {
    for (const auto& listener : room_listeners_)
        listener();
}

Appender::Appender(IngestUnit& unit)
    : unit_(unit),
      decoder_(unit.options_.payload_limits),
      series_cache_(unit.options_.series_cache_slots) {}

void Appender::append_point(std::string_view topic, const payload::Reading& reading, Write& write) {
    const SeriesCache::Identity identity{topic, reading.measurement, reading.tags.packed()};
    const std::uint64_t hash = SeriesCache::hash(identity);
    storage::SeriesRef ref = series_cache_.find(hash, identity);
    if (ref.valid()) {
        write.points_.emplace_back(ref, reading.timestamp_ms, reading.value);
        return;
    }
    payload::merge_tags(topic_tags_, reading.tags, series_tags_);
    std::string key = storage::format_series_key(reading.measurement, series_tags_);
    if (series_cache_.slots() > 0) ref = unit_.engine_.find_series(key);
    if (!ref.valid()) {
        // Not stored yet (its first write is in flight, or this is it): by key, until storage
        // has it.
        write.points_.emplace_back(std::move(key), reading.timestamp_ms, reading.value);
        return;
    }
    series_cache_.insert(hash, identity, ref);
    write.points_.emplace_back(ref, reading.timestamp_ms, reading.value);
}

std::optional<std::string_view> Appender::district(const payload::Reading& reading) const {
    const std::string& name = unit_.options_.city_district_tag;
    // Topic tags win over payload tags of the same name, as in the series key (merge_tags).
    for (const auto& [tag, value] : topic_tags_) {
        if (tag == name) return value;
    }
    return reading.tags.find(name);
}

bool Appender::plausible_time(std::int64_t& timestamp_ms, std::string_view measurement,
                              std::int64_t now) {
    const IngestOptions& options = unit_.options_;
    if (options.seconds_by_magnitude && timestamp_ms > -100'000'000'000 &&
        timestamp_ms < 100'000'000'000) {
        timestamp_ms *= 1000;
    }
    if (options.max_future.count() > 0 && timestamp_ms > now + options.max_future.count()) {
        unit_.metrics_.timestamp_future.Increment();
        detail_ = std::string(measurement) + " stamped " + std::to_string(timestamp_ms - now) +
                  " ms in the future";
        return false;
    }
    if (options.min_timestamp_ms != 0 && timestamp_ms < options.min_timestamp_ms) {
        unit_.metrics_.timestamp_too_old.Increment();
        detail_ = std::string(measurement) + " stamped " + std::to_string(timestamp_ms) +
                  " ms since the epoch, before the floor " +
                  std::to_string(options.min_timestamp_ms);
        return false;
    }
    return true;
}

Verdict Appender::prepare(const Message& message, Write& write) {
    const IngestOptions& options = unit_.options_;
    IngestMetrics& metrics = unit_.metrics_;
    if (!unit_.access_.may_publish(message.identity, message.client_id, message.topic)) {
        metrics.acl_denied.Increment();
        return Verdict::not_authorized;
    }

    topic_tags_.clear();
    const payload::TopicTemplate* matched = nullptr;
    for (const auto& candidate : options.templates) {
        if (candidate.match(message.topic, topic_tags_)) {
            matched = &candidate;
            break;
        }
    }
    if (!matched) {
        metrics.topic_unmatched.Increment();
        return Verdict::topic_unmatched;
    }

    // A template level named `measurement` names the readings instead of tagging them (plain
    // numbers, nameless SenML records); without one, the topic's last level does.
    std::string_view measurement = message.topic.substr(message.topic.rfind('/') + 1);
    for (auto tag = topic_tags_.begin(); tag != topic_tags_.end(); ++tag) {
        if (tag->first == "measurement") {
            measurement = tag->second;
            topic_tags_.erase(tag);
            break;
        }
    }
    payload::Format format = options.default_format;
    for (const auto& rule : options.formats) {
        if (mqtt::topic_matches(rule.topic_filter, message.topic)) {
            format = rule.format;
            break;
        }
    }

    readings_.clear();
    payload::SkippedFields skipped;
    std::int64_t now = unit_.now_ms();
    auto ec = decoder_.decode(format, message.payload, measurement, now, readings_, skipped,
                              options.line_precision);
    if (skipped.total()) metrics.field_skipped.Increment(static_cast<double>(skipped.total()));
    if (ec) {
        metrics.payload_invalid.Increment();
        detail_ = decoder_.error_detail();
        return Verdict::payload_invalid;
    }
    for (auto& reading : readings_) {
        if (!plausible_time(reading.timestamp_ms, reading.measurement, now)) {
            return Verdict::timestamp_invalid;
        }
    }

    series_cache_.expire(unit_.engine_.series_epoch());
    write.points_.reserve(write.points_.size() + readings_.size());
    for (auto& reading : readings_) {
        append_point(message.topic, reading, write);
        if (!unit_.city_) continue;
        if (auto where = district(reading)) {
            unit_.city_->local().add(*where, reading.measurement, reading.timestamp_ms,
                                     reading.value, now);
        }
    }
    return Verdict::stored;
}

Verdict Appender::prepare(payload::Reading& reading, std::int64_t now, Write& write) {
    if (!plausible_time(reading.timestamp_ms, reading.measurement, now)) {
        return Verdict::timestamp_invalid;
    }
    topic_tags_.clear();  // no topic: the reading's own tags make its series
    series_cache_.expire(unit_.engine_.series_epoch());
    append_point({}, reading, write);
    return Verdict::stored;
}

Verdict Appender::prepare(const SeriesSamples& series, Write& write) {
    if (!storage::is_valid_name(series.measurement)) {
        unit_.metrics_.payload_invalid.Increment();
        detail_ = "bad measurement name";
        return Verdict::payload_invalid;
    }
    series_tags_.clear();
    for (const auto& [name, value] : series.tags) {
        if (!storage::is_valid_name(name)) {
            unit_.metrics_.payload_invalid.Increment();
            detail_ = "bad tag name";
            return Verdict::payload_invalid;
        }
        series_tags_.emplace_back(name, value);
    }
    if (series.samples.empty()) return Verdict::stored;
    std::int64_t now = series.now_ms != 0 ? series.now_ms : unit_.now_ms();
    std::string key = storage::format_series_key(series.measurement, series_tags_);
    std::size_t before = write.points_.size();
    // Geometric growth: a write built from many small series (remote write, line protocol)
    // would otherwise reallocate on every call.
    if (write.points_.capacity() < before + series.samples.size()) {
        write.points_.reserve(std::max(before + series.samples.size(), 2 * before));
    }
    for (const auto& sample : series.samples) {
        std::int64_t timestamp_ms = sample.timestamp_ms;
        if (!plausible_time(timestamp_ms, series.measurement, now)) {
            write.points_.resize(before);  // the write is left as it was
            return Verdict::timestamp_invalid;
        }
        write.points_.emplace_back(key, timestamp_ms, sample.value);
    }
    return Verdict::stored;
}

}  // namespace citygate::ingest
