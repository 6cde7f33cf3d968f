// The ingest unit's metrics: refusals and skipped fields, as `citygate_errors_total{kind=...}`
// beside the gateway's own kinds (same family, merged in one registry). Thread safe.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <array>

#include "storage/engine.hpp"

namespace citygate::ingest {

struct IngestMetrics {
    explicit IngestMetrics(prometheus::Registry& registry);

    prometheus::Counter& acl_denied;         // messages the ACL denied
    prometheus::Counter& topic_unmatched;    // messages no topic template matched
    prometheus::Counter& payload_invalid;    // payloads that did not decode
    prometheus::Counter& timestamp_future;   // messages with a reading stamped too far ahead
    prometheus::Counter& timestamp_too_old;  // messages with a reading stamped before the floor
    prometheus::Counter& field_skipped;      // fields skipped inside good payloads
    prometheus::Counter& storage_rejected;   // writes of which storage refused some points
    prometheus::Counter& storage_failed;     // writes whose WAL write failed
    prometheus::Counter& series_limit;       // messages with readings refused by a series limit
    // citygate_series_refused_total{limit}: readings refused because they would have created a
    // series over that limit, indexed by storage::SeriesLimit (none is null).
    std::array<prometheus::Counter*, storage::kSeriesLimits> series_refused{};
};

}  // namespace citygate::ingest
