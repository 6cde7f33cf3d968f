// What the engine reads series from. The engine knows nothing of storage: an adapter over
// citygate's storage (or the in-memory one of the tests) implements this.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "promql/labels.hpp"
#include "promql/value.hpp"

namespace citygate::promql {

// Why a select failed. `limit` and `busy` map to Prometheus' 422 and 503 answers.
struct SelectError {
    enum class Kind { storage, limit, busy };
    Kind kind = Kind::storage;
    std::string message;
};

class [[nodiscard]] SelectResult {
  public:
    SelectResult(std::vector<Series> series) : state_(std::move(series)) {}
    SelectResult(SelectError error) : state_(std::move(error)) {}
    bool is_ok() const { return std::holds_alternative<std::vector<Series>>(state_); }
    std::vector<Series>& series() { return std::get<std::vector<Series>>(state_); }
    const SelectError& error() const { return std::get<SelectError>(state_); }

  private:
    std::variant<std::vector<Series>, SelectError> state_;
};

// What a rollup bucket knows of one series' samples with start <= t < start + width.
struct Bucket {
    std::int64_t start = 0;
    std::uint64_t count = 0;
    double sum = 0, min = 0, max = 0, last = 0;
};

// One series as rollups: its buckets, and its raw points in the spans asked for.
struct RollupSeries {
    Labels labels;
    std::vector<Bucket> buckets;  // ascending, buckets with samples only
    std::vector<Point> edges;     // ascending, staleness markers included
};

// A raw span [start_ms, end_ms).
struct Span {
    std::int64_t start_ms = 0;
    std::int64_t end_ms = 0;
};

class [[nodiscard]] RollupResult {
  public:
    RollupResult(std::vector<RollupSeries> series) : state_(std::move(series)) {}
    RollupResult(SelectError error) : state_(std::move(error)) {}
    bool is_ok() const { return std::holds_alternative<std::vector<RollupSeries>>(state_); }
    std::vector<RollupSeries>& series() { return std::get<std::vector<RollupSeries>>(state_); }
    const SelectError& error() const { return std::get<SelectError>(state_); }

  private:
    std::variant<std::vector<RollupSeries>, SelectError> state_;
};

class Queryable {
  public:
    virtual ~Queryable() = default;
    // Every series whose labels match all `matchers` (a label absent from a series matches as
    // the empty value), each with its raw samples in [mint_ms, maxt_ms] (both ends included)
    // in ascending time, staleness markers included. Series without a sample in the range may
    // be left out. Any order. Called from the evaluating thread only, once per selector.
    virtual SelectResult select(const std::vector<Matcher>& matchers, std::int64_t mint_ms,
                                std::int64_t maxt_ms) = 0;

    // The bucket widths (ms) select_rollups() serves, narrowest first; none by default.
    virtual std::vector<std::int64_t> rollup_widths() const { return {}; }
    // Every series matching `matchers` with its buckets of `width_ms` whose start lies in
    // [start_ms, end_ms) (multiples of the width), and its raw points in `spans` (sorted,
    // disjoint). A bucket sums every sample of its width, staleness markers included (their NaN
    // makes its sum NaN). Series with neither may be left out. Called like select().
    virtual RollupResult select_rollups(const std::vector<Matcher>& /*matchers*/,
                                        std::int64_t /*width_ms*/, std::int64_t /*start_ms*/,
                                        std::int64_t /*end_ms*/,
                                        const std::vector<Span>& /*spans*/) {
        return SelectError{SelectError::Kind::storage, "rollups are not available"};
    }
};

}  // namespace citygate::promql
