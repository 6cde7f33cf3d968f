// The HTTP write and read paths of the Prometheus and InfluxDB ecosystems, beside HttpApi's own
// routes: Prometheus remote write 1.0 (POST /api/v1/write) and remote read (POST /api/v1/read,
// SAMPLES), InfluxDB line protocol (POST /write?db=, POST /api/v2/write?bucket=, GET /ping and
// the CREATE DATABASE that Telegraf's outputs.influxdb sends to /query).
//
// Writes go through the ingest unit like MQTT readings (names checked, series keys built,
// timestamps checked, series limits, metrics) and are answered 204 only once storage reports them
// in the WAL: the route is deferred (gateway/http/router.hpp), so no HTTP thread waits. A body is
// validated whole before anything is submitted, so a bad one writes nothing.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <prometheus/counter.h>

#include "gateway/http/http_api.hpp"
#include "gateway/http/router.hpp"
#include "ingest/ingest_unit.hpp"
#include "protocols/payload/payload_decoder.hpp"
#include "protocols/remote/remote_write.hpp"
#include "storage/engine.hpp"

namespace citygate::gateway {

struct RemoteApiOptions {
    std::size_t max_write_body = 16 << 20;      // bytes as sent (compressed); 413 beyond
    std::size_t max_decoded_body = 64 << 20;    // bytes once snappy or gzip is undone; 413 beyond
    std::size_t max_write_samples = 1'000'000;  // samples (line protocol lines) per request; 413
    std::size_t max_read_body = 1 << 20;        // a remote-read request as sent
};

class RemoteApi {
  public:
    // `unit` and `engine` must outlive this object; `metrics` gets the counters.
    RemoteApi(ingest::IngestUnit& unit, const storage::Engine& engine, Metrics& metrics,
              RemoteApiOptions options = {});
    RemoteApi(const RemoteApi&) = delete;
    RemoteApi& operator=(const RemoteApi&) = delete;

    // Adds the routes to `api`'s table (write routes need Scope::write, read Scope::read); the
    // read route runs on its query pool under its budgets. Call before the first request; `api`
    // must outlive every request, this object too.
    void add_routes(HttpApi& api);

    // The body limit of a request target: max_write_body for the write paths, max_read_body for
    // remote read, 0 for a target that is none of these (the server's default applies).
    std::size_t body_limit(std::string_view target) const;

    // Write requests taken whose answer storage has not given yet.
    std::size_t pending() const { return pending_->load(); }

  private:
    enum class Endpoint { remote_write, influx_v1, influx_v2 };
    void remote_write(const HttpCall& call, HttpRespond respond);
    void line_protocol(const HttpCall& call, HttpRespond respond, Endpoint endpoint);
    HttpResponse remote_read(const HttpCall& call, storage::QueryBudget& budget,
                             const HttpApi& api) const;
    // Submits `write` and answers from its outcome; `points` for the counters.
    void submit(ingest::Write& write, const HttpCall& call, HttpRespond respond, Endpoint endpoint);
    HttpResponse refuse(Endpoint endpoint, boost::beast::http::status status,
                        std::string_view message) const;
    void count(Endpoint endpoint, unsigned status) const;

    ingest::IngestUnit& unit_;
    const storage::Engine& engine_;
    Metrics& metrics_;
    RemoteApiOptions options_;

    // Decoding state, shared by the HTTP threads (each request decodes under the lock; the
    // wait for storage is outside it).
    std::mutex mutex_;
    ingest::Appender appender_;
    remote::WriteRequestDecoder write_decoder_;
    payload::PayloadDecoder line_decoder_;
    std::string decoded_;
    payload::Readings readings_;
    std::vector<ingest::SeriesSamples::Sample> samples_;
    std::vector<std::pair<std::string_view, std::string_view>> tags_;

    std::shared_ptr<std::atomic<std::size_t>> pending_ =
        std::make_shared<std::atomic<std::size_t>>(0);
    prometheus::Family<prometheus::Counter>* requests_ = nullptr;
    prometheus::Counter* samples_written_[3] = {};
    prometheus::Counter* samples_skipped_[3] = {};
};

}  // namespace citygate::gateway
