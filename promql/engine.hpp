// The PromQL evaluator: instant and range queries over a Queryable, with Prometheus 2.42's
// semantics (lookback delta, staleness, step alignment, offset and @, extrapolated rates,
// __name__ handling, result order). Socket-, thread- and clock-free apart from the deadline the
// caller sets; one query runs on the calling thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "promql/ast.hpp"
#include "promql/parser.hpp"
#include "promql/queryable.hpp"
#include "promql/value.hpp"

namespace citygate::promql {

struct EngineOptions {
    // How far back an instant selector looks for a sample (Prometheus' --query.lookback-delta).
    std::int64_t lookback_delta_ms = 5 * 60 * 1000;
    // The step of a subquery written without one (`x[30m:]`); Prometheus uses its global
    // evaluation interval, 1 m by default.
    std::int64_t default_subquery_step_ms = 60 * 1000;
    ParseLimits parse_limits;
    // sum/count/avg/min/max/last/present/absent_over_time over a plain range selector read the
    // Queryable's rollups (whole buckets, raw points only at each window's edges) when a window
    // spans at least this many buckets and steps lie at least a bucket apart; otherwise raw
    // points cost less. The widest such bucket width is used. 0: always raw points.
    std::int64_t rollup_min_buckets = 30;
    // ... and when the window edges, read as raw points, span at most 1/this of the time a raw
    // read would (steps of about a bucket tile the whole range with edges). 0: no such check.
    std::int64_t rollup_edge_share = 8;
};

// One query's limits. The caller turns the resulting error kinds into HTTP answers.
struct QueryLimits {
    // Samples held in memory at once (Prometheus' --query.max-samples): raw points read for
    // range selectors, and the points of every intermediate and final result.
    std::size_t max_samples = 50'000'000;
    // Checked between series and steps; the query fails with `timeout` past it.
    std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
    // Once true, the query fails with `cancelled` (server shutting down, client gone). May be null.
    const std::atomic<bool>* cancelled = nullptr;
};

struct QueryError {
    enum class Kind {
        bad_data,          // parse errors and bad parameters: HTTP 400
        execution,         // cannot execute (many-to-many, bad regex, ...): HTTP 422
        too_many_samples,  // QueryLimits::max_samples: HTTP 422, naming the limit
        timeout,           // the deadline: HTTP 503
        cancelled,         // the cancellation flag: HTTP 503
        storage,           // the Queryable failed: HTTP 500 (or 422/503 per select_kind)
    };
    Kind kind = Kind::execution;
    std::string message;
    // For Kind::storage: what the Queryable said.
    SelectError::Kind select_kind = SelectError::Kind::storage;
};

class [[nodiscard]] QueryResult {
  public:
    QueryResult(Value value) : state_(std::move(value)) {}
    QueryResult(QueryError error) : state_(std::move(error)) {}
    bool is_ok() const { return std::holds_alternative<Value>(state_); }
    Value& value() { return std::get<Value>(state_); }
    const Value& value() const { return std::get<Value>(state_); }
    const QueryError& error() const { return std::get<QueryError>(state_); }

  private:
    std::variant<Value, QueryError> state_;
};

class Engine {
  public:
    explicit Engine(EngineOptions options = {}) : options_(options) {}

    const EngineOptions& options() const { return options_; }

    // Evaluates `query` at `time_ms`. Scalars give Scalar, strings String, instant vectors
    // Vector (in Prometheus' order: selector results by labels, sort()/topk as they ordered),
    // range vectors Matrix.
    QueryResult instant_query(Queryable& queryable, std::string_view query, std::int64_t time_ms,
                              const QueryLimits& limits = {}) const;
    // Evaluates `query` at start, start + step, ... up to end. The answer is a Matrix sorted by
    // labels; a scalar expression gives one series without labels. bad_data when step <= 0,
    // end < start or the expression is a range vector or a string.
    QueryResult range_query(Queryable& queryable, std::string_view query, std::int64_t start_ms,
                            std::int64_t end_ms, std::int64_t step_ms,
                            const QueryLimits& limits = {}) const;

    // The same over an expression parsed before; instant when start == end (then step is
    // ignored). The expression is not modified and may be evaluated again.
    QueryResult evaluate(Queryable& queryable, const Expr& expr, std::int64_t start_ms,
                         std::int64_t end_ms, std::int64_t step_ms,
                         const QueryLimits& limits = {}) const;

  private:
    EngineOptions options_;
};

}  // namespace citygate::promql
