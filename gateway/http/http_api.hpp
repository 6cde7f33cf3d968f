// The HTTP API over storage and the gateway's state: queries, health, readiness and metrics.
// Errors are JSON objects {"status":"error","error":"..."} with a 4xx/5xx status.
#pragma once

#include <atomic>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "gateway/http/http_auth.hpp"
#include "gateway/http/http_server.hpp"
#include "gateway/http/router.hpp"
#include "gateway/json_text.hpp"
#include "gateway/ops/metrics.hpp"
#include "gateway/ops/status_page.hpp"
#include "ingest/city_aggregates.hpp"
#include "storage/engine.hpp"

namespace citygate::gateway {

class HttpApi {
  public:
    HttpApi(const storage::Engine& engine, Metrics& metrics, const std::atomic<bool>& ready,
            storage::QueryLimits limits = {});

    // Serves `GET /` and `/api/v1/status` from `status` and `/metrics/city` from `city` (either
    // may be null: not served). Call before the first request; both must outlive this object.
    void set_status(const StatusPage* status, const ingest::CityAggregates* city);

    // Enables POST /api/v1/admin/checkpoint, writing checkpoints under `directory`.
    void set_backup_directory(std::filesystem::path directory) {
        backup_directory_ = std::move(directory);
    }

    // Thread safe. Dispatches through the route table (the constructor lists every endpoint):
    // GET and HEAD everywhere; PUT or POST also on /api/v1/log_level, only POST on
    // /api/v1/admin/checkpoint.
    // `peer` is the client's address, for the admin network check.
    HttpResponse handle(const HttpRequest& request,
                        const boost::asio::ip::address& peer = {}) const;

    // Routes needing a scope ask `auth` first (without it every call goes ahead, as in unit
    // tests); checkpoints start at most once per `checkpoint_interval`, one at a time. `auth`
    // must outlive this object. Call before the first request.
    void set_auth(const HttpAuth* auth, std::chrono::milliseconds checkpoint_interval);

  private:
    HttpResponse query_range(std::string_view query) const;
    HttpResponse aggregate(std::string_view query, storage::Selector selector, std::int64_t start,
                           std::int64_t end) const;
    HttpResponse series(std::string_view query) const;
    HttpResponse label_values(std::string_view name, std::string_view query) const;
    HttpResponse export_points(std::string_view query) const;
    HttpResponse bad_request(std::string_view message) const;
    HttpResponse log_level(const HttpRequest& request) const;
    HttpResponse checkpoint() const;
    std::optional<HttpResponse> range_parameters(std::string_view query,
                                                 storage::Selector& selector, std::int64_t& start,
                                                 std::int64_t& end) const;

    Router routes_;
    std::shared_ptr<CallGate> checkpoint_gate_ =
        std::make_shared<CallGate>(std::chrono::milliseconds(0));
    const storage::Engine& engine_;
    Metrics& metrics_;
    const std::atomic<bool>& ready_;
    storage::QueryLimits limits_;
    std::filesystem::path backup_directory_;
    const StatusPage* status_ = nullptr;
    const ingest::CityAggregates* city_ = nullptr;
};

// Decodes a percent-encoded query component ('+' is a space). Returns false on a bad escape.
bool url_decode(std::string_view in, std::string& out);

// Finds `name` in a query string and decodes its value; returns false when absent or malformed.
bool query_parameter(std::string_view query, std::string_view name, std::string& value);

}  // namespace citygate::gateway
