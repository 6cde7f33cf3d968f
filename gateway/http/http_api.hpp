// The HTTP API over storage and the gateway's state: queries, health, readiness and metrics.
// Errors are JSON objects {"status":"error","error":"..."} with a 4xx/5xx status.
#pragma once

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "gateway/http/http_auth.hpp"
#include "gateway/http/http_server.hpp"
#include "gateway/http/query_pool.hpp"
#include "gateway/http/router.hpp"
#include "gateway/json_text.hpp"
#include "gateway/ops/metrics.hpp"
#include "gateway/ops/status_page.hpp"
#include "ingest/city_aggregates.hpp"
#include "storage/engine.hpp"
#include "storage/query_budget.hpp"

namespace citygate::gateway {

// The parameters of a query_range (and, without `aggregate`, an export) request, parsed and
// checked. Times are ms since the epoch, both ends inclusive as sent.
struct RangeRequest {
    storage::Selector selector;  // `series`, or `match` as in Prometheus
    std::int64_t start_ms = 0;
    std::int64_t end_ms = 0;
    // Set when step, function, group_by or source is given (half-open range, as storage takes).
    std::optional<storage::AggregateQuery> aggregate;
};

// Parses a query_range query string; nothing, with `error` saying why (a 400), when it is
// missing a parameter or one is malformed, or it asks for more than `max_steps` steps.
std::optional<RangeRequest> parse_range_request(std::string_view query, std::size_t max_steps,
                                                std::string& error);

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

    // The same, answering through `respond`: queries (query_range, series, label values,
    // export) and checkpoints answer from the query pool when one is set, the rest at once.
    void handle(HttpRequest request, const boost::asio::ip::address& peer,
                HttpRespond respond) const;

    // Runs queries and checkpoints on `pool` (its stopping() cancels the queries running), and
    // bounds the memory all queries hold together by `memory_budget_bytes` (0: no shared
    // bound). Without it they run on the caller's thread, bounded one by one. Call before the
    // first request; `pool` must outlive every request.
    void set_query_pool(QueryPool* pool, std::size_t memory_budget_bytes);

    // Routes needing a scope ask `auth` first (without it every call goes ahead, as in unit
    // tests); checkpoints start at most once per `checkpoint_interval`, one at a time. `auth`
    // must outlive this object. Call before the first request.
    void set_auth(const HttpAuth* auth, std::chrono::milliseconds checkpoint_interval);

    // For route tables beside this one (remote read and write, gateway/http/remote_api.hpp):
    // the routes, a query route on the query pool under this API's budgets, and the answer to a
    // query that failed. Add routes before the first request.
    Router& router() { return routes_; }
    RouteHandler budgeted_route(
        std::function<HttpResponse(const HttpCall&, storage::QueryBudget&)> run) const;
    HttpResponse failed_query(const storage::Status& status,
                              const storage::QueryBudget& budget) const {
        return query_failed(status, budget);
    }

  private:
    // A handler `run(call, budget)` on the query pool, under a budget of its own that lives
    // until the answer is written.
    template <typename Run>
    RouteHandler query_route(Run run) const;
    HttpResponse query_range(std::string_view query, storage::QueryBudget& budget) const;
    HttpResponse aggregate(const RangeRequest& request, storage::QueryBudget& budget) const;
    HttpResponse series(std::string_view query, storage::QueryBudget& budget) const;
    HttpResponse label_values(std::string_view name, std::string_view query,
                              storage::QueryBudget& budget) const;
    HttpResponse export_points(std::string_view query, storage::QueryBudget& budget) const;
    // The answer to a query that failed: the status's code and message, naming the option of
    // the limit that stopped it.
    HttpResponse query_failed(const storage::Status& status,
                              const storage::QueryBudget& budget) const;
    HttpResponse bad_request(std::string_view message) const;
    static constexpr std::chrono::seconds kLogLevelInterval{1};
    HttpResponse log_level(const HttpRequest& request) const;
    HttpResponse checkpoint() const;

    Router routes_;
    std::shared_ptr<CallGate> checkpoint_gate_ =
        std::make_shared<CallGate>(std::chrono::milliseconds(0));
    // Changes of the log level (a debug level costs every thread): at most one a second.
    std::shared_ptr<CallGate> log_level_gate_ = std::make_shared<CallGate>(kLogLevelInterval);
    const storage::Engine& engine_;
    Metrics& metrics_;
    const std::atomic<bool>& ready_;
    storage::QueryLimits limits_;
    std::unique_ptr<storage::QueryMemory> memory_;  // shared by every query; null: unbounded
    const std::atomic<bool>* cancelled_ = nullptr;  // the query pool's stopping()
    prometheus::Family<prometheus::Counter>* refused_ = nullptr;
    prometheus::Gauge* query_memory_in_use_ = nullptr;  // set from memory_ at each scrape
    std::filesystem::path backup_directory_;
    const StatusPage* status_ = nullptr;
    const ingest::CityAggregates* city_ = nullptr;
};

// Decodes a percent-encoded query component ('+' is a space). Returns false on a bad escape.
bool url_decode(std::string_view in, std::string& out);

// Finds `name` in a query string and decodes its value; returns false when absent or malformed.
bool query_parameter(std::string_view query, std::string_view name, std::string& value);

}  // namespace citygate::gateway
