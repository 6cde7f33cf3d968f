// The PromQL syntax tree the parser produces and the engine evaluates. Times are int64
// milliseconds (durations, offsets, @ timestamps), as in Prometheus' storage.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "promql/labels.hpp"

namespace citygate::promql {

enum class ValueType { none, scalar, vector, matrix, string };
std::string_view to_string(ValueType type);

// Byte offsets into the query text, [start, end).
struct Position {
    std::size_t start = 0;
    std::size_t end = 0;
};

// `@ <time>`, `@ start()`, `@ end()`; start and end are the query's, fixed before evaluation.
struct AtModifier {
    enum class Kind { none, timestamp, start, end };
    Kind kind = Kind::none;
    std::int64_t timestamp_ms = 0;
    bool is_set() const { return kind != Kind::none; }
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct NumberLiteral {
    double value = 0;
};
struct StringLiteral {
    std::string value;
};
struct VectorSelector {
    std::string name;               // empty when only matchers name the series
    std::vector<Matcher> matchers;  // includes __name__="name" when name is set
    std::int64_t offset_ms = 0;
    AtModifier at;
};
struct MatrixSelector {
    VectorSelector selector;
    std::int64_t range_ms = 0;
};
struct Subquery {
    ExprPtr expr;
    std::int64_t range_ms = 0;
    std::int64_t step_ms = 0;  // 0: the engine's default subquery step
    std::int64_t offset_ms = 0;
    AtModifier at;
};
struct Paren {
    ExprPtr expr;
};
struct Unary {
    bool negate = false;  // unary plus is kept only for type checking
    ExprPtr expr;
};

enum class BinaryOp {
    add,
    sub,
    mul,
    div,
    mod,
    pow,
    atan2,
    eq,
    ne,
    gt,
    lt,
    ge,
    le,
    land,
    lor,
    lunless
};
std::string_view to_string(BinaryOp op);
bool is_comparison(BinaryOp op);
bool is_set_operator(BinaryOp op);

struct VectorMatching {
    enum class Card { one_to_one, many_to_one, one_to_many, many_to_many };
    Card card = Card::one_to_one;
    std::vector<std::string> labels;  // of on() or ignoring()
    bool on = false;
    std::vector<std::string> include;  // of group_left() / group_right()
};
struct Binary {
    BinaryOp op = BinaryOp::add;
    ExprPtr lhs;
    ExprPtr rhs;
    bool return_bool = false;
    std::optional<VectorMatching> matching;  // only between two instant vectors
};

enum class AggregateOp {
    sum,
    avg,
    count,
    min,
    max,
    group,
    stddev,
    stdvar,
    topk,
    bottomk,
    count_values,
    quantile
};
std::string_view to_string(AggregateOp op);
struct Aggregate {
    AggregateOp op = AggregateOp::sum;
    ExprPtr expr;
    ExprPtr param;  // topk/bottomk k, quantile q, count_values label
    std::vector<std::string> grouping;
    bool without = false;
};

// A function's signature. `variadic`: 0 exact arity; n > 0 up to n optional trailing arguments
// of the last type; -1 any number of them.
struct FunctionInfo {
    std::string_view name;
    std::vector<ValueType> arg_types;
    int variadic = 0;
    ValueType return_type = ValueType::vector;
};
// The function named `name`, or null when PromQL (as this engine knows it) has none.
const FunctionInfo* find_function(std::string_view name);

struct Call {
    const FunctionInfo* function = nullptr;
    std::vector<ExprPtr> args;
};

struct Expr {
    std::variant<NumberLiteral, StringLiteral, VectorSelector, MatrixSelector, Subquery, Paren,
                 Unary, Binary, Aggregate, Call>
        node;
    Position position;

    ValueType type() const;
    template <typename T>
    const T* as() const {
        return std::get_if<T>(&node);
    }
    template <typename T>
    T* as() {
        return std::get_if<T>(&node);
    }
};

}  // namespace citygate::promql
