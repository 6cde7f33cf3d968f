// citygate's storage as the PromQL engine's Queryable: a selector's matchers become a storage
// selector, its series keys PromQL label sets (the measurement as __name__), and every read is
// charged to the HTTP query's QueryBudget (series, points, memory, deadline, cancellation), so a
// PromQL query carries the same budgets as citygate's own queries.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "promql/queryable.hpp"
#include "storage/engine.hpp"
#include "storage/query_budget.hpp"

namespace citygate::gateway {

// The storage selector for PromQL matchers (same semantics: anchored RE2 regexes, an absent
// label matching as "").
storage::Selector to_storage_selector(const std::vector<promql::Matcher>& matchers);

// A series key's labels: the measurement as __name__, then its tags.
promql::Labels labels_of_key(std::string_view series_key);

class StorageQueryable final : public promql::Queryable {
  public:
    // `describe` turns a failed read into the message of the refusal (naming the limit).
    // Both references must outlive this object; one query at a time.
    StorageQueryable(const storage::Engine& engine, storage::QueryBudget& budget,
                     std::function<std::string(const storage::Status&)> describe);

    promql::SelectResult select(const std::vector<promql::Matcher>& matchers, std::int64_t mint_ms,
                                std::int64_t maxt_ms) override;
    // 1-minute and 1-hour rollups.
    std::vector<std::int64_t> rollup_widths() const override;
    promql::RollupResult select_rollups(const std::vector<promql::Matcher>& matchers,
                                        std::int64_t width_ms, std::int64_t start_ms,
                                        std::int64_t end_ms,
                                        const std::vector<promql::Span>& spans) override;

  private:
    promql::SelectError refusal(const storage::Status& status) const;

    const storage::Engine& engine_;
    storage::QueryBudget& budget_;
    std::function<std::string(const storage::Status&)> describe_;
};

}  // namespace citygate::gateway
