// City aggregates for dashboards and the MQTT export: per (district, measurement) the count,
// mean, minimum and maximum of the readings of one window (a minute unless the export asks for
// another length), kept on ingest and read at scrape or export time.
//
// "Latest 1-minute average" means the readings whose own timestamp falls in the last complete
// wall-clock minute [M, M + 60 s), M = floor(now / 60 s) * 60 s - 60 s, as received by the gateway
// (before storage checks them); readings that arrive after a scrape still count towards their
// minute while it is one of the two kept. The current, partial minute is available beside it.
// Readings more than a minute behind or ahead of the current minute are not aggregated. With
// another window length (export.mqtt.interval) read "window" for "minute": windows are aligned to
// multiples of their length since the epoch.
//
// Threads: every I/O thread owns one CityAccumulator and writes it without locks (a sequence
// counter per bucket lets readers see consistent counts and sums); a scrape merges them all. The
// set of (district, measurement) pairs is shared and capped: a pair first seen beyond the cap is
// dropped and counted, so the label set stays bounded whatever sensors publish.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace citygate::ingest {

class CityAggregates;

// One I/O thread's share. add() is for the owning thread only; CityAggregates reads it.
class CityAccumulator {
  public:
    ~CityAccumulator();
    CityAccumulator(const CityAccumulator&) = delete;
    CityAccumulator& operator=(const CityAccumulator&) = delete;

    // Counts one reading; `now_ms` is the wall clock (ms since epoch).
    void add(std::string_view district, std::string_view measurement, std::int64_t timestamp_ms,
             double value, std::int64_t now_ms);

  private:
    friend class CityAggregates;
    struct Bucket {
        std::atomic<std::uint32_t> sequence{0};  // odd while the owner writes
        std::atomic<std::int64_t> minute{-1};    // minutes since epoch; -1: empty
        std::atomic<std::uint64_t> count{0};
        std::atomic<double> sum{0};
        std::atomic<double> min{0};
        std::atomic<double> max{0};
    };
    struct Slot {
        Bucket buckets[2];  // by minute parity
    };
    static constexpr std::size_t slots_per_chunk = 64;
    struct Chunk {
        Slot slots[slots_per_chunk];
    };

    explicit CityAccumulator(CityAggregates& owner);
    struct Reading {
        std::uint64_t count = 0;
        double sum = 0, min = 0, max = 0;  // min and max only when count > 0
    };
    // Count, sum, min and max of window `minute` in pair `id`; any thread.
    Reading read(std::size_t id, std::int64_t minute) const;

    CityAggregates& owner_;
    std::unordered_map<std::string, std::uint32_t> ids_;  // pairs this thread has seen
    std::string key_;                                     // reused lookup key
    std::unique_ptr<std::atomic<Chunk*>[]> chunks_;       // allocated on first use
};

// The figures of one pair in the last complete window and the current one.
struct CityAverage {
    std::string district;
    std::string measurement;
    std::uint64_t samples = 0;  // last complete minute (window)
    double average = 0;         // average, minimum, maximum: 0 when samples is 0
    double minimum = 0;
    double maximum = 0;
    std::uint64_t current_samples = 0;  // current partial minute
    double current_average = 0;
};

struct CitySnapshot {
    std::int64_t minute_start_ms = 0;  // start of the last complete minute (window)
    std::int64_t window_ms = 60'000;   // its length
    std::vector<CityAverage> pairs;    // pairs with readings in either minute, sorted
    std::size_t pairs_tracked = 0;
    std::uint64_t readings_dropped = 0;  // their pair was beyond the cap
};

class CityAggregates {
  public:
    // `max_pairs`: distinct (district, measurement) pairs kept; 0 keeps none. `window_ms`: the
    // length of a window, positive.
    explicit CityAggregates(std::size_t max_pairs, std::int64_t window_ms = 60'000);

    // A new accumulator for one I/O thread, alive as long as this object. Thread safe.
    CityAccumulator& add_accumulator();

    // The calling thread's accumulator, made on its first call. Thread safe; meant for the I/O
    // threads, which each keep the one they got.
    CityAccumulator& local();

    // Merges every accumulator. Thread safe.
    CitySnapshot snapshot(std::int64_t now_ms) const;

    // Prometheus text format: citygate_city_avg_1m, citygate_city_samples_1m, citygate_city_min_1m,
    // citygate_city_max_1m (last complete minute), the minute's start, pairs tracked and
    // readings dropped by the cap.
    static std::string serialize(const CitySnapshot& snapshot);

    std::size_t max_pairs() const { return max_pairs_; }
    std::int64_t window_ms() const { return window_ms_; }

  private:
    friend class CityAccumulator;
    // Finds or assigns the id of a pair; returns false beyond the cap.
    bool pair_id(const std::string& key, std::string_view district, std::string_view measurement,
                 std::uint32_t& id);

    std::size_t max_pairs_;
    std::int64_t window_ms_;
    std::uint64_t generation_;  // tells this object from an earlier one at the same address
    // Guards pairs_, ids_ and accumulators_; taken once per pair and thread. Once full_ is set
    // pairs_ and ids_ never change again and are read without it.
    mutable std::mutex mutex_;
    std::vector<std::pair<std::string, std::string>> pairs_;
    std::unordered_map<std::string, std::uint32_t> ids_;
    std::deque<std::unique_ptr<CityAccumulator>> accumulators_;
    std::atomic<bool> full_{false};
    std::atomic<std::uint64_t> dropped_{0};
};

}  // namespace citygate::ingest
