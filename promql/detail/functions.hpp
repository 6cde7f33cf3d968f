// Internals shared by the evaluator's files: the error it unwinds with, PromQL's functions and
// aggregations over one evaluation step.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "promql/ast.hpp"
#include "promql/engine.hpp"
#include "promql/queryable.hpp"
#include "promql/value.hpp"

namespace citygate::promql::detail {

// The evaluator recurses as deep as the syntax tree; the first error ends the query, so it
// unwinds with this and Engine turns it into a QueryError at its boundary (nothing escapes).
struct EvalError {
    QueryError error;
};
[[noreturn]] void fail(QueryError::Kind kind, std::string message);
[[noreturn]] inline void fail_execution(std::string message) {
    fail(QueryError::Kind::execution, std::move(message));
}

// One series' points inside a range selector's window at one step.
struct Window {
    std::span<const Point> points;  // never empty, stale markers removed
    std::int64_t ts = 0;            // the evaluation step
    std::int64_t range_start = 0;   // window bounds, offset and @ applied
    std::int64_t range_end = 0;
    std::int64_t range_ms = 0;
};
// `scalars[i]`: the value of the function's i-th argument at this step when it is a scalar.
using RangeFunction =
    std::function<std::optional<double>(const Window&, const std::vector<double>& scalars)>;
// The function of a call with a range-vector argument; null when `name` has none.
RangeFunction range_function(std::string_view name);

// The *_over_time functions whose answer rollup buckets hold (sums, counts, extremes and the
// last value of whole buckets), so a window can be read as buckets plus raw points at its edges.
enum class BucketFunction { sum, count, avg, min, max, last, present };
std::optional<BucketFunction> bucket_function(std::string_view name);
// The function over one window: raw points before its first whole bucket (`left`), the whole
// buckets, raw points after them (`right`), all finite and in time order. Nothing when the
// window holds no sample.
std::optional<double> bucket_window(BucketFunction function, std::span<const Point> left,
                                    std::span<const Bucket> buckets, std::span<const Point> right);

// A function without a range-vector argument, called once per step with its arguments' values
// (a scalar as a one-sample vector; string arguments are read from the call itself).
class VectorFunction {
  public:
    virtual ~VectorFunction() = default;
    virtual Vector call(std::vector<Vector>& args, std::int64_t ts) = 0;
};
std::unique_ptr<VectorFunction> vector_function(const Call& call);

// The group keys of the label sets one aggregation met, by label list identity (Labels share
// their list between copies, so a series' samples at every step have one): a range query
// computes each series' key once instead of at every step. Valid while the labels it saw live.
using GroupKeyCache = std::unordered_map<const void*, std::string>;

// One step of an aggregation. `param`: k or q; `label`: count_values' label. `keys` may be null.
Vector aggregate(const Aggregate& aggregate, const Vector& input, double param,
                 const std::string& label, GroupKeyCache* keys = nullptr);

// The q-quantile of `values` as Prometheus computes it (NaN sorts first).
double quantile(double q, std::vector<double> values);

// Unwraps parentheses.
const Expr& unwrap(const Expr& expr);

// The labels absent() and absent_over_time() answer with: the selector's equality matchers.
Labels absent_labels(const Expr& arg);

}  // namespace citygate::promql::detail
