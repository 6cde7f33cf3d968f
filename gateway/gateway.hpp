// The gateway process: storage engine, MQTT I/O threads, HTTP API, and an orderly drain.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include "export/remote_write_sender.hpp"
#include "gateway/config.hpp"
#include "gateway/export/aggregate_exporter.hpp"
#include "gateway/http/http_api.hpp"
#include "gateway/http/http_server.hpp"
#include "gateway/http/query_pool.hpp"
#include "gateway/http/remote_api.hpp"
#include "gateway/mqtt/io_worker.hpp"
#include "gateway/mqtt/mqtt_listener.hpp"
#include "gateway/mqtt/tls.hpp"
#include "gateway/ops/metrics.hpp"
#include "gateway/ops/status_page.hpp"
#include "gateway/upstream/upstream_consumer.hpp"
#include "ingest/city_aggregates.hpp"

namespace citygate::gateway {

class Gateway {
  public:
    // Opens storage and binds every listener; throws ConfigError or std::runtime_error when the
    // gateway cannot start (the message says why).
    explicit Gateway(Config config);
    ~Gateway();
    Gateway(const Gateway&) = delete;
    Gateway& operator=(const Gateway&) = delete;

    // Serves until stop() or SIGINT/SIGTERM, then drains: stops accepting and reading, waits for
    // in-flight writes to be acknowledged, disconnects clients and closes storage.
    void run();

    // Thread safe; makes run() drain and return.
    void stop();

    std::uint16_t mqtt_port() const { return mqtt_port_; }
    std::uint16_t tls_port() const { return tls_port_; }  // 0 when TLS is off
    std::uint16_t http_port() const { return http_port_; }

  private:
    void drain();
    // On signal_io_: arms trim_timer_ for the next allocator trim.
    void trim_later();
    // Binds one listener per worker on `endpoint` (SO_REUSEPORT); returns the bound port.
    std::uint16_t listen(boost::asio::ip::tcp::endpoint endpoint, boost::asio::ssl::context* tls,
                         const char* what);
    // Runs `work` on every worker's thread and waits for all of them.
    template <typename Work>
    void on_every_worker(Work work);

    Config config_;
    Metrics metrics_;
    std::unique_ptr<ingest::CityAggregates> city_;  // before workers_: outlives their accumulators
    std::unique_ptr<AggregateExporter> export_mqtt_;  // after city_, which it reads; null: off
    std::unique_ptr<ingest::AccessControl> access_;
    std::unique_ptr<ingest::IngestMetrics> ingest_metrics_;
    // Before engine_: the engine's last completions, fired as it closes, run through the unit.
    std::unique_ptr<ingest::IngestUnit> ingest_;
    std::atomic<ingest::IngestUnit*> room_target_{nullptr};  // ingest_ once it exists
    // Before engine_ too (its completions count down pending()); drain() waits for them.
    std::unique_ptr<RemoteApi> remote_api_;
    std::unique_ptr<GatewayContext> context_;
    std::vector<std::unique_ptr<IoWorker>> workers_;
    std::unique_ptr<UpstreamConsumers> consumers_;  // null without [[upstream]]; outlives engine_
    std::unique_ptr<storage::Engine> engine_;       // after workers_: destroyed first
    // After engine_, which it reads: stopped and destroyed before it. Null when off.
    std::unique_ptr<exports::RemoteWriteSender> remote_write_;
    std::unique_ptr<boost::asio::ssl::context> tls_context_;
    std::vector<std::shared_ptr<MqttListener>> listeners_;  // plain and TLS, any order
    // Run by http.threads threads, a strand per connection.
    boost::asio::io_context http_io_;
    std::unique_ptr<StatusPage> status_;                   // its timer runs on http_io_
    std::unique_ptr<HttpAuth> http_auth_;                  // before api_, which asks it
    std::unique_ptr<boost::asio::ssl::context> http_tls_;  // before http_; null: plain HTTP
    std::unique_ptr<Backups> backups_;                     // before api_, which calls it
    std::unique_ptr<HttpApi> api_;
    std::unique_ptr<HttpServer> http_;
    // After api_ and http_io_: its jobs call the API and answer through http_io_.
    std::unique_ptr<QueryPool> query_pool_;
    boost::asio::io_context signal_io_{1};  // the signal set's, on signal_thread_
    std::thread signal_thread_;
    // On signal_io_: gives free allocator memory back every storage.memory_trim_interval.
    std::unique_ptr<boost::asio::steady_timer> trim_timer_;
    std::uint64_t memory_budget_ = 0;  // effective_memory_budget(); 0: none
    std::vector<std::thread> threads_;
    std::atomic<bool> ready_{false};

    std::mutex stop_mutex_;
    std::condition_variable stop_requested_;
    bool stopping_ = false;
    std::uint16_t mqtt_port_ = 0;
    std::uint16_t tls_port_ = 0;
    std::uint16_t http_port_ = 0;
};

}  // namespace citygate::gateway
