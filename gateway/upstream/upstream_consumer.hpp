// Consumer mode: citygate as an MQTT 5 client of upstream brokers ([[upstream]] sections). Each
// upstream gets `connections` persistent sessions (clean start 0, a session expiry) that
// subscribe at QoS 1, as a shared subscription ($share/<group>/<filter>) so that N citygates
// split the stream. A message goes through the ingest unit like a sensor's and is acknowledged
// upstream only once its samples are in the WAL: what a crash left unacknowledged, the broker
// sends again. The receive maximum bounds what is in flight per connection, so a slow storage
// slows the broker's sending, not our memory.
//
// The client engine is the project's own mqtt::client_session over Asio, not Paho: Paho MQTT
// C++ acknowledges a QoS 1 message when its callback returns, so acknowledging after the WAL
// would mean blocking that callback for every message, one message in flight per connection.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <prometheus/registry.h>
#include <boost/asio/io_context.hpp>

#include "gateway/config.hpp"
#include "ingest/ingest_unit.hpp"

namespace citygate::gateway {

class UpstreamConnection;
struct UpstreamWorker;
struct UpstreamMetrics;

class UpstreamConsumers {
  public:
    // Checks the configuration (files, TLS) and prepares the connections; nothing connects
    // before start(). Throws ConfigError. `ingest` must outlive this object.
    UpstreamConsumers(const std::vector<Config::Upstream>& upstreams, std::uint32_t max_packet_size,
                      ingest::IngestUnit& ingest, prometheus::Registry& registry);
    ~UpstreamConsumers();
    UpstreamConsumers(const UpstreamConsumers&) = delete;
    UpstreamConsumers& operator=(const UpstreamConsumers&) = delete;

    // Starts the consumer threads; each connection connects.
    void start();
    // Stops taking messages, waits (up to `deadline`) until every message taken is in the WAL
    // and acknowledged upstream, then disconnects (the sessions stay on the brokers for their
    // expiry) and joins the threads. The ingest unit and storage must still be there.
    void stop(std::chrono::steady_clock::time_point deadline);

    // Messages handed to storage whose acknowledgement has not yet gone upstream.
    std::int64_t pending() const { return pending_->load(); }

  private:
    std::shared_ptr<std::atomic<std::int64_t>> pending_;
    std::vector<std::unique_ptr<UpstreamWorker>> workers_;
    std::vector<std::shared_ptr<UpstreamConnection>> connections_;
    std::vector<std::unique_ptr<UpstreamMetrics>> metrics_;
    std::vector<std::thread> threads_;
    bool started_ = false;
};

// What a start would refuse in [[upstream]] sections: a password_file that cannot be read, TLS
// files that do not load. Throws ConfigError naming the option (for --check-config).
void check_upstream_files(const std::vector<Config::Upstream>& upstreams);

// The client id of connection `n` of `upstream` on host `host` ({host}, {name}, {n} replaced).
std::string upstream_client_id(const Config::Upstream& upstream, std::string_view host, unsigned n);

}  // namespace citygate::gateway
