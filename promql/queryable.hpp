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

class Queryable {
  public:
    virtual ~Queryable() = default;
    // Every series whose labels match all `matchers` (a label absent from a series matches as
    // the empty value), each with its raw samples in [mint_ms, maxt_ms] (both ends included)
    // in ascending time, staleness markers included. Series without a sample in the range may
    // be left out. Any order. Called from the evaluating thread only, once per selector.
    virtual SelectResult select(const std::vector<Matcher>& matchers, std::int64_t mint_ms,
                                std::int64_t maxt_ms) = 0;
};

}  // namespace citygate::promql
