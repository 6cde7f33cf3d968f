// Registration of the ingest unit's metrics.
#include "ingest/ingest_metrics.hpp"

namespace citygate::ingest {
namespace {

prometheus::Counter& error_counter(prometheus::Registry& registry, const char* kind) {
    // The help text must equal the gateway's, so the registry merges the two into one family.
    return prometheus::BuildCounter()
        .Name("citygate_errors_total")
        .Help("Rejected input by kind")
        .Register(registry)
        .Add({{"kind", kind}});
}

}  // namespace

IngestMetrics::IngestMetrics(prometheus::Registry& registry)
    : acl_denied(error_counter(registry, "acl_denied")),
      topic_unmatched(error_counter(registry, "topic_unmatched")),
      payload_invalid(error_counter(registry, "payload_invalid")),
      timestamp_future(error_counter(registry, "timestamp_future")),
      timestamp_too_old(error_counter(registry, "timestamp_too_old")),
      field_skipped(error_counter(registry, "field_skipped")),
      storage_rejected(error_counter(registry, "storage_rejected")),
      storage_failed(error_counter(registry, "storage_failed")),
      series_limit(error_counter(registry, "series_limit")) {
    auto& refused = prometheus::BuildCounter()
                        .Name("citygate_series_refused_total")
                        .Help("Readings refused because they would create a series over a limit")
                        .Register(registry);
    // Every limit from the start, so a rule over them finds zeros, not absent series.
    for (std::size_t i = 1; i < storage::kSeriesLimits; ++i) {
        auto limit = static_cast<storage::SeriesLimit>(i);
        series_refused[i] = &refused.Add({{"limit", storage::series_limit_name(limit)}});
    }
}

}  // namespace citygate::ingest
