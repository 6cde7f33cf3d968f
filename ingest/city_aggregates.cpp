// Lock-free per-thread minute buckets and their merge at scrape time.
#include "ingest/city_aggregates.hpp"

#include <algorithm>
#include <cstdio>
#include <tuple>

namespace citygate::ingest {
namespace {

std::atomic<std::uint64_t> next_generation{0};

// The window holding `ms`, counted from the epoch (floor division).
std::int64_t window_of(std::int64_t ms, std::int64_t window_ms) {
    return ms >= 0 ? ms / window_ms : (ms - window_ms + 1) / window_ms;
}

// Prometheus label values escape backslash, quote and newline.
void append_label_value(std::string& out, std::string_view text) {
    for (char c : text) {
        if (c == '\\' || c == '"') {
            out += '\\';
            out += c;
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
}

void append_number(std::string& out, double value) {
    char buffer[32];
    int n = std::snprintf(buffer, sizeof buffer, "%.17g", value);
    out.append(buffer, static_cast<std::size_t>(n));
}

}  // namespace

CityAccumulator::CityAccumulator(CityAggregates& owner)
    : owner_(owner),
      chunks_(std::make_unique<std::atomic<Chunk*>[]>((owner.max_pairs() + slots_per_chunk - 1) /
                                                      slots_per_chunk)) {}

CityAccumulator::~CityAccumulator() {
    std::size_t chunks = (owner_.max_pairs() + slots_per_chunk - 1) / slots_per_chunk;
    for (std::size_t i = 0; i < chunks; ++i)
        delete chunks_[i].load(std::memory_order_relaxed);
}

void CityAccumulator::add(std::string_view district, std::string_view measurement,
                          std::int64_t timestamp_ms, double value, std::int64_t now_ms) {
    const std::int64_t window_ms = owner_.window_ms();
    std::int64_t minute = window_of(timestamp_ms, window_ms);
    std::int64_t now_minute = window_of(now_ms, window_ms);
    if (minute < now_minute - 1 || minute > now_minute + 1) return;

    key_.assign(district);
    key_ += '\0';
    key_ += measurement;
    std::uint32_t id = 0;
    if (auto found = ids_.find(key_); found != ids_.end()) {
        id = found->second;
    } else {
        if (!owner_.pair_id(key_, district, measurement, id)) return;
        ids_.emplace(key_, id);
    }

    std::atomic<Chunk*>& chunk_slot = chunks_[id / slots_per_chunk];
    Chunk* chunk = chunk_slot.load(std::memory_order_relaxed);  // only this thread stores it
    if (!chunk) {
        chunk = new Chunk;
        chunk_slot.store(chunk, std::memory_order_release);
    }
    Bucket& bucket = chunk->slots[id % slots_per_chunk].buckets[minute & 1];
    std::int64_t held = bucket.minute.load(std::memory_order_relaxed);
    if (held > minute) return;  // a later minute of the same parity already took the bucket

    // Single writer: a sequence lock, so a reader never mixes a count and a sum of two minutes.
    std::uint32_t sequence = bucket.sequence.load(std::memory_order_relaxed);
    bucket.sequence.store(sequence + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    if (held < minute) {
        bucket.minute.store(minute, std::memory_order_relaxed);
        bucket.count.store(1, std::memory_order_relaxed);
        bucket.sum.store(value, std::memory_order_relaxed);
        bucket.min.store(value, std::memory_order_relaxed);
        bucket.max.store(value, std::memory_order_relaxed);
    } else {
        bucket.count.store(bucket.count.load(std::memory_order_relaxed) + 1,
                           std::memory_order_relaxed);
        bucket.sum.store(bucket.sum.load(std::memory_order_relaxed) + value,
                         std::memory_order_relaxed);
        if (value < bucket.min.load(std::memory_order_relaxed)) {
            bucket.min.store(value, std::memory_order_relaxed);
        }
        if (value > bucket.max.load(std::memory_order_relaxed)) {
            bucket.max.store(value, std::memory_order_relaxed);
        }
    }
    bucket.sequence.store(sequence + 2, std::memory_order_release);
}

CityAccumulator::Reading CityAccumulator::read(std::size_t id, std::int64_t minute) const {
    const Chunk* chunk = chunks_[id / slots_per_chunk].load(std::memory_order_acquire);
    if (!chunk) return {};
    const Bucket& bucket = chunk->slots[id % slots_per_chunk].buckets[minute & 1];
    for (;;) {
        std::uint32_t before = bucket.sequence.load(std::memory_order_acquire);
        if (before & 1) continue;  // the owner is mid-update: a few instructions
        std::int64_t held = bucket.minute.load(std::memory_order_relaxed);
        Reading reading;
        reading.count = bucket.count.load(std::memory_order_relaxed);
        reading.sum = bucket.sum.load(std::memory_order_relaxed);
        reading.min = bucket.min.load(std::memory_order_relaxed);
        reading.max = bucket.max.load(std::memory_order_relaxed);
        std::atomic_thread_fence(std::memory_order_acquire);
        if (bucket.sequence.load(std::memory_order_relaxed) != before) continue;
        return held == minute ? reading : Reading{};
    }
}

CityAggregates::CityAggregates(std::size_t max_pairs, std::int64_t window_ms)
    : max_pairs_(max_pairs),
      window_ms_(window_ms > 0 ? window_ms : 60'000),
      generation_(next_generation.fetch_add(1) + 1) {
    full_ = max_pairs == 0;
}

CityAccumulator& CityAggregates::local() {
    thread_local std::uint64_t generation = 0;
    thread_local CityAccumulator* accumulator = nullptr;
    if (generation != generation_) {
        accumulator = &add_accumulator();
        generation = generation_;
    }
    return *accumulator;
}

CityAccumulator& CityAggregates::add_accumulator() {
    std::lock_guard lock(mutex_);
    accumulators_.push_back(std::unique_ptr<CityAccumulator>(new CityAccumulator(*this)));
    return *accumulators_.back();
}

bool CityAggregates::pair_id(const std::string& key, std::string_view district,
                             std::string_view measurement, std::uint32_t& id) {
    // Once full the pair set never changes again, so it is read without the lock: a flood of new
    // pairs beyond the cap costs a lookup and a count each, never a lock.
    if (full_.load(std::memory_order_acquire)) {
        if (auto found = ids_.find(key); found != ids_.end()) {
            id = found->second;
            return true;
        }
        dropped_.fetch_add(1, std::memory_order_relaxed);
        return false;
    }
    std::lock_guard lock(mutex_);
    if (auto found = ids_.find(key); found != ids_.end()) {
        id = found->second;
        return true;
    }
    if (pairs_.size() < max_pairs_) {
        id = static_cast<std::uint32_t>(pairs_.size());
        pairs_.emplace_back(district, measurement);
        ids_.emplace(key, id);
        return true;
    }
    full_.store(true, std::memory_order_release);  // after the last change to ids_
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return false;
}

CitySnapshot CityAggregates::snapshot(std::int64_t now_ms) const {
    CitySnapshot snapshot;
    std::int64_t current = window_of(now_ms, window_ms_);
    snapshot.minute_start_ms = (current - 1) * window_ms_;
    snapshot.window_ms = window_ms_;
    snapshot.readings_dropped = dropped_.load(std::memory_order_relaxed);

    std::lock_guard lock(mutex_);
    snapshot.pairs_tracked = pairs_.size();
    for (std::size_t id = 0; id < pairs_.size(); ++id) {
        CityAverage average{pairs_[id].first, pairs_[id].second};
        double sum = 0, current_sum = 0;
        for (const auto& accumulator : accumulators_) {
            CityAccumulator::Reading last = accumulator->read(id, current - 1);
            if (last.count) {
                average.minimum = average.samples ? std::min(average.minimum, last.min) : last.min;
                average.maximum = average.samples ? std::max(average.maximum, last.max) : last.max;
            }
            average.samples += last.count;
            sum += last.sum;
            CityAccumulator::Reading now = accumulator->read(id, current);
            average.current_samples += now.count;
            current_sum += now.sum;
        }
        if (average.samples == 0 && average.current_samples == 0) continue;
        if (average.samples) average.average = sum / static_cast<double>(average.samples);
        if (average.current_samples) {
            average.current_average = current_sum / static_cast<double>(average.current_samples);
        }
        snapshot.pairs.push_back(std::move(average));
    }
    std::sort(snapshot.pairs.begin(), snapshot.pairs.end(), [](const auto& a, const auto& b) {
        return std::tie(a.district, a.measurement) < std::tie(b.district, b.measurement);
    });
    return snapshot;
}

std::string CityAggregates::serialize(const CitySnapshot& snapshot) {
    std::string out;
    auto series = [&](const char* name, const CityAverage& pair) {
        out += name;
        out += "{district=\"";
        append_label_value(out, pair.district);
        out += "\",measurement=\"";
        append_label_value(out, pair.measurement);
        out += "\"} ";
    };
    out +=
        "# HELP citygate_city_avg_1m Mean of the readings of the last complete minute, by "
        "district and measurement\n# TYPE citygate_city_avg_1m gauge\n";
    for (const CityAverage& pair : snapshot.pairs) {
        if (!pair.samples) continue;
        series("citygate_city_avg_1m", pair);
        append_number(out, pair.average);
        out += '\n';
    }
    out +=
        "# HELP citygate_city_samples_1m Readings in the last complete minute, by district and "
        "measurement\n# TYPE citygate_city_samples_1m gauge\n";
    for (const CityAverage& pair : snapshot.pairs) {
        if (!pair.samples) continue;
        series("citygate_city_samples_1m", pair);
        out += std::to_string(pair.samples);
        out += '\n';
    }
    auto extreme = [&](const char* name, const char* help, double CityAverage::*field) {
        out += "# HELP ";
        out += name;
        out += help;
        out += "\n# TYPE ";
        out += name;
        out += " gauge\n";
        for (const CityAverage& pair : snapshot.pairs) {
            if (!pair.samples) continue;
            series(name, pair);
            append_number(out, pair.*field);
            out += '\n';
        }
    };
    extreme("citygate_city_min_1m",
            " Smallest reading of the last complete minute, by district and measurement",
            &CityAverage::minimum);
    extreme("citygate_city_max_1m",
            " Largest reading of the last complete minute, by district and measurement",
            &CityAverage::maximum);
    out +=
        "# HELP citygate_city_minute_start_seconds Start of the minute the city averages cover\n"
        "# TYPE citygate_city_minute_start_seconds gauge\ncitygate_city_minute_start_seconds ";
    out += std::to_string(snapshot.minute_start_ms / 1000);
    out +=
        "\n# HELP citygate_city_pairs District and measurement pairs tracked (capped by "
        "city.max_pairs)\n# TYPE citygate_city_pairs gauge\ncitygate_city_pairs ";
    out += std::to_string(snapshot.pairs_tracked);
    out +=
        "\n# HELP citygate_city_dropped_total Readings not aggregated because their pair was "
        "beyond city.max_pairs\n# TYPE citygate_city_dropped_total counter\n"
        "citygate_city_dropped_total ";
    out += std::to_string(snapshot.readings_dropped);
    out += '\n';
    return out;
}

}  // namespace citygate::ingest
