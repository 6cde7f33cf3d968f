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
      storage_failed(error_counter(registry, "storage_failed")) {}

}  // namespace citygate::ingest
