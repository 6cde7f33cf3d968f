// Registration of the gateway's metric families.
#include "gateway/ops/metrics.hpp"

#include <prometheus/text_serializer.h>

namespace citygate::gateway {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

prometheus::Family<prometheus::Counter>& counter_family(prometheus::Registry& registry,
                                                        const std::string& name,
                                                        const std::string& help) {
    return BuildCounter().Name(name).Help(help).Register(registry);
}

// Seconds from 50 µs to 10 s, roughly ×2.5 apart.
prometheus::Histogram::BucketBoundaries latency_buckets() {
    return {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
            0.025,   0.05,   0.1,     0.25,   0.5,   1,      2.5,   10};
}

}  // namespace

const char* error_kind_name(ErrorKind kind) {
    switch (kind) {
        case ErrorKind::malformed_packet:
            return "malformed_packet";
        case ErrorKind::protocol_error:
            return "protocol_error";
        case ErrorKind::connection_limit:
            return "connection_limit";
        case ErrorKind::http_bad_request:
            return "http_bad_request";
        case ErrorKind::auth_failed:
            return "auth_failed";
        case ErrorKind::tls_handshake_failed:
            return "tls_handshake_failed";
        case ErrorKind::slow_consumer:
            return "slow_consumer";
        case ErrorKind::partial_packet_timeout:
            return "partial_packet_timeout";
        case ErrorKind::partial_bytes_limit:
            return "partial_bytes_limit";
    }
    return "unknown";
}

Metrics::Metrics() : Metrics(std::make_shared<prometheus::Registry>()) {}

Metrics::Metrics(std::shared_ptr<prometheus::Registry> registry)
    : connections(BuildGauge()
                      .Name("citygate_connections")
                      .Help("Open MQTT connections")
                      .Register(*registry)
                      .Add({{"listener", "mqtt"}})),
      connections_tls(BuildGauge()
                          .Name("citygate_connections")
                          .Help("Open MQTT connections")
                          .Register(*registry)
                          .Add({{"listener", "mqtts"}})),
      connects_accepted(
          counter_family(*registry, "citygate_connects_total", "MQTT CONNECT attempts by result")
              .Add({{"result", "accepted"}})),
      connects_refused(
          counter_family(*registry, "citygate_connects_total", "MQTT CONNECT attempts by result")
              .Add({{"result", "refused"}})),
      messages_qos0(counter_family(*registry, "citygate_messages_received_total",
                                   "PUBLISH packets received by QoS")
                        .Add({{"qos", "0"}})),
      messages_qos1(counter_family(*registry, "citygate_messages_received_total",
                                   "PUBLISH packets received by QoS")
                        .Add({{"qos", "1"}})),
      messages_qos2(counter_family(*registry, "citygate_messages_received_total",
                                   "PUBLISH packets received by QoS")
                        .Add({{"qos", "2"}})),
      bytes_received(counter_family(*registry, "citygate_bytes_total", "MQTT bytes by direction")
                         .Add({{"direction", "in"}})),
      bytes_sent(counter_family(*registry, "citygate_bytes_total", "MQTT bytes by direction")
                     .Add({{"direction", "out"}})),
      samples_written(counter_family(*registry, "citygate_samples_written_total",
                                     "Samples durable in the storage WAL")
                          .Add({})),
      backpressure_pauses(counter_family(*registry, "citygate_backpressure_pauses_total",
                                         "Times a connection stopped reading because a storage "
                                         "shard queue was full")
                              .Add({})),
      rate_limited(counter_family(*registry, "citygate_rate_limited_total",
                                  "Times a connection stopped being read because it published "
                                  "faster than mqtt.max_publish_rate")
                       .Add({})),
      connections_limit(BuildGauge()
                            .Name("citygate_connections_limit")
                            .Help("mqtt.max_connections: CONNECTs beyond it hear server busy")
                            .Register(*registry)
                            .Add({})),
      batch_points(BuildHistogram()
                       .Name("citygate_storage_batch_points")
                       .Help("Points per group-committed storage batch")
                       .Register(*registry)
                       .Add({}, prometheus::Histogram::BucketBoundaries{1, 4, 16, 64, 256, 1024,
                                                                        4096, 16384, 65536})),
      write_latency(BuildHistogram()
                        .Name("citygate_storage_write_latency_seconds")
                        .Help("Time to write one storage batch to the WAL")
                        .Register(*registry)
                        .Add({}, latency_buckets())),
      ack_latency(BuildHistogram()
                      .Name("citygate_ack_latency_seconds")
                      .Help("PUBLISH received to PUBACK/PUBREC queued for sending")
                      .Register(*registry)
                      .Add({}, latency_buckets())),
      registry_(std::move(registry)) {
    BuildGauge()
        .Name("citygate_build_info")
        .Help("Version of the running gateway; the value is always 1")
        .Register(*registry_)
        .Add({{"version", CITYGATE_VERSION}})
        .Set(1);
    static const char* const type_names[16] = {"reserved",  "connect",  "connack",     "publish",
                                               "puback",    "pubrec",   "pubrel",      "pubcomp",
                                               "subscribe", "suback",   "unsubscribe", "unsuback",
                                               "pingreq",   "pingresp", "disconnect",  "auth"};
    auto& packets = counter_family(*registry_, "citygate_packets_total",
                                   "MQTT control packets by direction and type");
    for (int direction = 0; direction < 2; ++direction) {
        for (int type = 0; type < 16; ++type) {
            packets_[direction][type] = &packets.Add(
                {{"direction", direction == 0 ? "in" : "out"}, {"type", type_names[type]}});
        }
    }
    auto& errors = counter_family(*registry_, "citygate_errors_total", "Rejected input by kind");
    for (int i = 0; i < error_kind_count; ++i) {
        errors_[i] = &errors.Add({{"kind", error_kind_name(static_cast<ErrorKind>(i))}});
    }
}

std::string Metrics::serialize() const {
    auto families = registry_->Collect();
    if (collector_) collector_(families);
    prometheus::TextSerializer serializer;
    return serializer.Serialize(families);
}

}  // namespace citygate::gateway
