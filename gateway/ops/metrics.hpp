// The gateway's Prometheus metrics. Label values are bounded sets (QoS, result, error kind),
// never a device or topic. Every member is thread safe.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

namespace citygate::gateway {

// Kinds of rejected input at the gateway's edge, one label value each. The ingest unit counts
// its own kinds (acl_denied, topic_unmatched, payload_invalid, ...) in the same family
// (ingest/ingest_metrics.hpp).
enum class ErrorKind {
    malformed_packet,
    protocol_error,
    connection_limit,
    http_bad_request,
    auth_failed,
    tls_handshake_failed,
    slow_consumer,           // closed: did not read what the gateway sent
    partial_packet_timeout,  // closed: a packet not complete in mqtt.partial_packet_timeout
    partial_bytes_limit,     // closed: its packet would pass mqtt.max_partial_bytes_total
};
inline constexpr int error_kind_count = 9;
const char* error_kind_name(ErrorKind kind);

class Metrics {
  public:
    Metrics();

    std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

    // Families computed at scrape time (storage figures), appended after the registry's.
    using Collector = std::function<void(std::vector<prometheus::MetricFamily>&)>;
    void set_collector(Collector collector) { collector_ = std::move(collector); }

    // The text exposition format of everything registered and collected.
    std::string serialize() const;

    prometheus::Gauge& connections;      // listener="mqtt"
    prometheus::Gauge& connections_tls;  // listener="mqtts"
    prometheus::Counter& connects_accepted;
    prometheus::Counter& connects_refused;
    prometheus::Counter& messages_qos0;
    prometheus::Counter& messages_qos1;
    prometheus::Counter& messages_qos2;
    prometheus::Counter& bytes_received;
    prometheus::Counter& bytes_sent;
    prometheus::Counter& samples_written;
    prometheus::Counter& backpressure_pauses;
    prometheus::Counter& rate_limited;
    prometheus::Gauge& connections_limit;
    prometheus::Histogram& batch_points;
    prometheus::Histogram& write_latency;
    prometheus::Histogram& ack_latency;
    prometheus::Counter& error(ErrorKind kind) { return *errors_[static_cast<int>(kind)]; }

    // MQTT control packets by direction and type (1 CONNECT ... 15 AUTH).
    enum class Direction { in = 0, out = 1 };
    prometheus::Counter& packets(Direction direction, unsigned type) {
        return *packets_[static_cast<int>(direction)][type < 16 ? type : 0];
    }

  private:
    explicit Metrics(std::shared_ptr<prometheus::Registry> registry);
    std::shared_ptr<prometheus::Registry> registry_;
    prometheus::Counter* errors_[error_kind_count];
    prometheus::Counter* packets_[2][16];
    Collector collector_;
};

}  // namespace citygate::gateway
