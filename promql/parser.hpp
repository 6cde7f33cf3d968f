// PromQL text to syntax tree. Bounded for hostile input: the query length and the nesting depth
// are limits given by the caller; errors name their position, as Prometheus' do, for an HTTP 400
// `bad_data` answer. No allocation grows with anything but the (bounded) input.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "promql/ast.hpp"

namespace citygate::promql {

struct ParseLimits {
    std::size_t max_length = 256 * 1024;  // bytes of query text
    std::size_t max_depth = 200;          // nested expressions (parentheses, operands, calls)
};

struct ParseError {
    std::string message;  // "1:7: parse error: unexpected ..." (line:column, 1-based)
    Position position;
};

class [[nodiscard]] ParseResult {
  public:
    ParseResult(ExprPtr expr) : state_(std::move(expr)) {}
    ParseResult(ParseError error) : state_(std::move(error)) {}
    bool is_ok() const { return std::holds_alternative<ExprPtr>(state_); }
    const ParseError& error() const { return std::get<ParseError>(state_); }
    ExprPtr& expr() { return std::get<ExprPtr>(state_); }

  private:
    std::variant<ExprPtr, ParseError> state_;
};

// Parses and type-checks one PromQL expression.
ParseResult parse(std::string_view query, const ParseLimits& limits = {});

// Prometheus' duration syntax ("1h30m", "5m", "500ms", "1y2w"; units in descending order, no
// fractions), in milliseconds; nullopt when not one or when it overflows.
std::optional<std::int64_t> parse_duration(std::string_view text);

// A PromQL number literal's value (decimal, 0x hex, 0 octal, exponents, Inf, NaN); nullopt when
// it is not one.
std::optional<double> parse_number(std::string_view text);

}  // namespace citygate::promql
