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
#include "gateway/http/prom_format.hpp"
#include "gateway/http/query_pool.hpp"
#include "gateway/http/router.hpp"
#include "gateway/json_text.hpp"
#include "gateway/ops/backups.hpp"
#include "gateway/ops/metrics.hpp"
#include "gateway/ops/status_page.hpp"
#include "ingest/city_aggregates.hpp"
#include "promql/engine.hpp"
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
    HttpApi(storage::Engine& engine, Metrics& metrics, const std::atomic<bool>& ready,
            storage::QueryLimits limits = {});

    // Serves `GET /` and `/api/v1/status` from `status` and `/metrics/city` from `city` (either
    // may be null: not served). Call before the first request; both must outlive this object.
    void set_status(const StatusPage* status, const ingest::CityAggregates* city);

    // Enables POST /api/v1/admin/checkpoint through `backups` (which must outlive this object).
    // Call before the first request.
    void set_backups(const Backups* backups) { backups_ = backups; }

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
    // The memory all running queries share; null when unbounded. Thread safe.
    const storage::QueryMemory* query_memory() const { return memory_.get(); }

    // Routes needing a scope ask `auth` first (without it every call goes ahead, as in unit
    // tests); checkpoints start at most once per `checkpoint_interval` (429), one at a time (a
    // second while one runs: 409). `auth`
    // must outlive this object. Call before the first request.
    void set_auth(const HttpAuth* auth, std::chrono::milliseconds checkpoint_interval);

    // The PromQL engine's options (lookback delta). Call before the first request.
    void set_promql_options(const promql::EngineOptions& options) {
        promql_ = promql::Engine(options);
    }

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
    // The message of a query a limit stopped, naming the option that sets it (and counted in
    // citygate_http_queries_refused_total).
    std::string describe_failure(const storage::Status& status,
                                 const storage::QueryBudget& budget) const;

    // Prometheus' query API (prom_api.cpp). A handler run(call, params, budget) on the query
    // pool, under a budget of its own (with Prometheus' `timeout` parameter when shorter than
    // http.query_timeout) that lives until the answer is written.
    using PromRun =
        std::function<HttpResponse(const HttpCall&, const PromParams&, storage::QueryBudget&)>;
    RouteHandler prom_route(PromRun run) const;
    void add_prometheus_routes();
    RouteHandler prom_query_range_route() const;
    RouteHandler prom_series_route() const;
    HttpResponse prom_query(const HttpCall& call, const PromParams& params,
                            storage::QueryBudget& budget, bool range) const;
    HttpResponse prom_series(const PromParams& params, storage::QueryBudget& budget) const;
    HttpResponse prom_labels(const PromParams& params, storage::QueryBudget& budget) const;
    HttpResponse prom_label_values(std::string_view encoded_name, const PromParams& params,
                                   storage::QueryBudget& budget) const;
    HttpResponse prom_metadata(const PromParams& params, storage::QueryBudget& budget) const;
    HttpResponse prom_string_list(std::vector<std::string> items, std::size_t limit,
                                  storage::QueryBudget& budget) const;
    std::optional<HttpResponse> prom_limit(const PromParams& params, std::size_t& limit) const;
    HttpResponse prom_storage_failure(const storage::Status& status,
                                      const storage::QueryBudget& budget) const;
    static constexpr std::chrono::seconds kLogLevelInterval{1};
    HttpResponse log_level(const HttpRequest& request) const;
    HttpResponse checkpoint() const;
    // POST/PUT /api/v1/admin/tsdb/delete_series (as Prometheus'): match[] selectors, optional
    // start and end (Unix seconds or RFC 3339, inclusive). 204, or 400 naming the bad parameter.
    static constexpr std::chrono::seconds kDeleteInterval{1};
    HttpResponse delete_series(const HttpCall& call) const;

    Router routes_;
    std::shared_ptr<CallGate> checkpoint_gate_ =
        std::make_shared<CallGate>(std::chrono::milliseconds(0));
    // Changes of the log level (a debug level costs every thread): at most one a second.
    std::shared_ptr<CallGate> log_level_gate_ = std::make_shared<CallGate>(kLogLevelInterval);
    // Deletes (delete_series, which also answers 409 while one runs): at most one a second.
    std::shared_ptr<CallGate> delete_gate_ = std::make_shared<CallGate>(kDeleteInterval);
    storage::Engine& engine_;
    promql::Engine promql_;
    Metrics& metrics_;
    const std::atomic<bool>& ready_;
    storage::QueryLimits limits_;
    std::unique_ptr<storage::QueryMemory> memory_;  // shared by every query; null: unbounded
    const std::atomic<bool>* cancelled_ = nullptr;  // the query pool's stopping()
    prometheus::Family<prometheus::Counter>* refused_ = nullptr;
    prometheus::Gauge* query_memory_in_use_ = nullptr;  // set from memory_ at each scrape
    const Backups* backups_ = nullptr;
    const StatusPage* status_ = nullptr;
    const ingest::CityAggregates* city_ = nullptr;
};

// Gives malloc's free pages back after a big query (on the query thread that ran it).
void release_query_memory();

// Decodes a percent-encoded query component ('+' is a space). Returns false on a bad escape.
bool url_decode(std::string_view in, std::string& out);

// Finds `name` in a query string and decodes its value; returns false when absent or malformed.
bool query_parameter(std::string_view query, std::string_view name, std::string& value);

// Every value of `name` (compared after decoding, so match%5B%5D is match[]), decoded, in
// order; false when one is malformed.
bool query_parameters(std::string_view query, std::string_view name,
                      std::vector<std::string>& values);

// A time as Prometheus' API takes it: Unix seconds with an optional fraction ("1718409600.5")
// or RFC 3339 ("2024-06-15T00:00:00.5Z", "2024-06-15T02:00:00+02:00"), into ms since the epoch.
// False for anything else, or a time beyond what ms in an int64 hold.
bool parse_api_time(std::string_view text, std::int64_t& ms);

}  // namespace citygate::gateway
