// citygate's storage as a PromQL Queryable (see promql_queryable.hpp).
#include "gateway/http/promql_queryable.hpp"

#include <limits>

namespace citygate::gateway {

storage::Selector to_storage_selector(const std::vector<promql::Matcher>& matchers) {
    storage::Selector selector;
    selector.matchers.reserve(matchers.size());
    for (const auto& m : matchers) {
        storage::Matcher::Op op = storage::Matcher::Op::equal;
        switch (m.type()) {
            case promql::Matcher::Type::equal:
                op = storage::Matcher::Op::equal;
                break;
            case promql::Matcher::Type::not_equal:
                op = storage::Matcher::Op::not_equal;
                break;
            case promql::Matcher::Type::regex:
                op = storage::Matcher::Op::regex;
                break;
            case promql::Matcher::Type::not_regex:
                op = storage::Matcher::Op::not_regex;
                break;
        }
        selector.matchers.push_back({m.name(), op, m.value()});
    }
    return selector;
}

promql::Labels labels_of_key(std::string_view series_key) {
    auto parsed = storage::parse_series_key(series_key);
    if (!parsed.is_ok())
        return promql::Labels{{std::string(promql::metric_name_label), std::string(series_key)}};
    std::vector<promql::Label> labels;
    labels.reserve(parsed.value().second.size() + 1);
    labels.push_back({std::string(promql::metric_name_label), std::move(parsed.value().first)});
    for (auto& [name, value] : parsed.value().second)
        labels.push_back({std::move(name), std::move(value)});
    return promql::Labels(std::move(labels));
}

StorageQueryable::StorageQueryable(const storage::Engine& engine, storage::QueryBudget& budget,
                                   std::function<std::string(const storage::Status&)> describe)
    : engine_(engine), budget_(budget), describe_(std::move(describe)) {}

promql::SelectResult StorageQueryable::select(const std::vector<promql::Matcher>& matchers,
                                              std::int64_t mint_ms, std::int64_t maxt_ms) {
    // Storage ranges are half-open; the selection includes maxt.
    const std::int64_t end =
        maxt_ms == std::numeric_limits<std::int64_t>::max() ? maxt_ms : maxt_ms + 1;
    auto read = engine_.query_raw(to_storage_selector(matchers), mint_ms, end, budget_);
    if (!read.is_ok()) return refusal(read.status());
    std::vector<promql::Series> out;
    out.reserve(read.value().size());
    for (storage::RawSeries& raw : read.value()) {
        promql::Series series;
        series.labels = labels_of_key(raw.series);
        series.points.resize(raw.timestamps_ms.size());
        for (std::size_t i = 0; i < raw.timestamps_ms.size(); ++i)
            series.points[i] = {raw.timestamps_ms[i], raw.values[i]};
        // Each raw series is freed once converted, so a read holds at most one copy of a series
        // twice.
        std::vector<std::int64_t>().swap(raw.timestamps_ms);
        std::vector<double>().swap(raw.values);
        out.push_back(std::move(series));
    }
    return out;
}

std::vector<std::int64_t> StorageQueryable::rollup_widths() const {
    return {60'000, 3'600'000};
}

promql::RollupResult StorageQueryable::select_rollups(const std::vector<promql::Matcher>& matchers,
                                                      std::int64_t width_ms, std::int64_t start_ms,
                                                      std::int64_t end_ms,
                                                      const std::vector<promql::Span>& spans) {
    std::vector<storage::TimeSpan> raw_spans;
    raw_spans.reserve(spans.size());
    for (const auto& s : spans)
        raw_spans.push_back({s.start_ms, s.end_ms});
    auto read = engine_.query_rollups(to_storage_selector(matchers), width_ms, start_ms, end_ms,
                                      std::move(raw_spans), budget_);
    if (!read.is_ok()) return refusal(read.status());
    std::vector<promql::RollupSeries> out;
    out.reserve(read.value().size());
    for (storage::RollupSeries& stored : read.value()) {
        promql::RollupSeries series;
        series.labels = labels_of_key(stored.series);
        series.buckets.reserve(stored.buckets.size());
        for (const auto& b : stored.buckets)
            series.buckets.push_back({b.start, b.count, b.sum, b.min, b.max, b.last});
        series.edges.resize(stored.edge_timestamps_ms.size());
        for (std::size_t i = 0; i < series.edges.size(); ++i)
            series.edges[i] = {stored.edge_timestamps_ms[i], stored.edge_values[i]};
        std::vector<storage::BucketSummary>().swap(stored.buckets);
        std::vector<std::int64_t>().swap(stored.edge_timestamps_ms);
        std::vector<double>().swap(stored.edge_values);
        out.push_back(std::move(series));
    }
    return out;
}

promql::SelectError StorageQueryable::refusal(const storage::Status& status) const {
    promql::SelectError error;
    switch (status.code()) {
        case storage::Status::Code::limit_exceeded:
            error.kind = promql::SelectError::Kind::limit;
            break;
        case storage::Status::Code::busy:
            error.kind = promql::SelectError::Kind::busy;
            break;
        default:
            error.kind = promql::SelectError::Kind::storage;
            break;
    }
    error.message = describe_(status);
    return error;
}

}  // namespace citygate::gateway
