// [export.mqtt]: publishes the city aggregates of every closed window (count, avg, min, max per
// district and measurement) to an upstream MQTT broker through Paho, one retained message per
// pair at <topic_prefix>/<district>/<measurement>.
//
// Threads: a thread of its own sleeps until each window closes (plus a grace period for readings
// still on their way through the I/O threads), snapshots ingest::CityAggregates and hands the
// messages to Paho; Paho's threads connect, reconnect with back-off and send. Nothing here runs
// on the gateway's I/O or HTTP threads.
//
// Bounds: while disconnected Paho buffers up to max_buffered messages in memory (no persistence:
// a restart loses them); a message beyond that is dropped and counted, never queued. Counted in
// citygate_export_mqtt_{published,dropped,failed}_total; citygate_export_mqtt_buffered and
// citygate_export_mqtt_connected are gauges.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "gateway/config.hpp"
#include "ingest/city_aggregates.hpp"

namespace mqtt {
class async_client;
}

namespace citygate::gateway {

class AggregateExporter {
  public:
    // `options` as validate() accepted them, enabled; `city` uses options.interval as its
    // window and outlives this object. Registers its metrics in `registry`. Throws ConfigError
    // when Paho refuses the url or the client id.
    AggregateExporter(const Config::ExportMqtt& options, const ingest::CityAggregates& city,
                      prometheus::Registry& registry);
    // Stops if still running.
    ~AggregateExporter();
    AggregateExporter(const AggregateExporter&) = delete;
    AggregateExporter& operator=(const AggregateExporter&) = delete;

    // Starts connecting and the publishing thread. Once.
    void start();

    // Publishes nothing more, waits up to two seconds for messages in flight, disconnects. What
    // is still buffered is lost. Idempotent.
    void stop();

    // Publishes the last closed window as of `now_ms` (ms since epoch) at once; the thread calls
    // it after each window closes. Returns the messages handed to Paho.
    std::size_t publish_closed_window(std::int64_t now_ms);

  private:
    class DeliveryListener;
    class ConnectListener;
    void run();
    void update_buffered();

    Config::ExportMqtt options_;
    const ingest::CityAggregates& city_;
    // The listeners before the client: Paho may call them until the client is gone.
    std::unique_ptr<DeliveryListener> delivery_;
    std::unique_ptr<ConnectListener> connecting_;
    std::unique_ptr<::mqtt::async_client> client_;

    prometheus::Counter& published_;
    prometheus::Counter& dropped_;
    prometheus::Counter& failed_;
    prometheus::Gauge& buffered_;
    prometheus::Gauge& connected_;

    std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    bool started_ = false;
    std::thread thread_;
};

}  // namespace citygate::gateway
