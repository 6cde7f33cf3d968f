// Routes of the HTTP API.
#include "gateway/http/http_api.hpp"

#include "gateway/config.hpp"
#include "gateway/ops/log.hpp"

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <prometheus/counter.h>
#include <prometheus/gauge.h>

namespace citygate::gateway {
namespace {

namespace http = boost::beast::http;

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

bool parse_int64(std::string_view text, std::int64_t& value) {
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    return ec == std::errc() && end == text.data() + text.size();
}

void append_number(std::string& out, double value) {
    char buffer[32];
    // %.17g round-trips every double; finite values only ever reach storage.
    int n = std::snprintf(buffer, sizeof buffer, "%.17g", value);
    out.append(buffer, static_cast<std::size_t>(n));
}

void append_labels(std::string& out, const std::string& measurement,
                   const std::vector<storage::Tag>& tags) {
    out += '{';
    bool first = true;
    if (!measurement.empty()) {
        out += "\"__name__\":";
        append_json_string(out, measurement);
        first = false;
    }
    for (const auto& [name, value] : tags) {
        if (!first) out += ',';
        first = false;
        append_json_string(out, name);
        out += ':';
        append_json_string(out, value);
    }
    out += '}';
}

void append_values(std::string& out, const std::vector<std::int64_t>& timestamps,
                   const std::vector<double>& values) {
    out += '[';
    for (std::size_t i = 0; i < timestamps.size() && i < values.size(); ++i) {
        if (i) out += ',';
        out += '[';
        out += std::to_string(timestamps[i]);
        out += ',';
        append_number(out, values[i]);
        out += ']';
    }
    out += ']';
}

// One element of data.result: {"series":KEY,"metric":{...},"values":[[ts,v],...]}. The labels
// come from the key, or from `group_labels` for a group (which has no series key of its own).
void append_result(std::string& out, std::string_view key,
                   const std::vector<storage::Tag>* group_labels,
                   const std::vector<std::int64_t>& timestamps, const std::vector<double>& values) {
    out += "{\"series\":";
    append_json_string(out, key);
    out += ",\"metric\":";
    if (group_labels) {
        append_labels(out, {}, *group_labels);
    } else {
        auto parsed = storage::parse_series_key(key);
        append_labels(out, parsed.is_ok() ? parsed.value().first : std::string(),
                      parsed.is_ok() ? parsed.value().second : std::vector<storage::Tag>{});
    }
    out += ",\"values\":";
    append_values(out, timestamps, values);
    out += '}';
}

// RFC 4180: a field with quotes or commas is quoted, quotes doubled.
void append_csv_field(std::string& out, std::string_view text) {
    out += '"';
    for (char c : text) {
        if (c == '"') out += '"';
        out += c;
    }
    out += '"';
}

// {"status":"success","data":["a","b",...]}, written into `body` (empty, maybe reserved).
HttpResponse string_list_response(const std::vector<std::string>& items, std::string body = {}) {
    body += "{\"status\":\"success\",\"data\":[";
    for (std::size_t i = 0; i < items.size(); ++i) {
        if (i) body += ',';
        append_json_string(body, items[i]);
    }
    body += "]}";
    return json_response(http::status::ok, std::move(body));
}

// What a query's answer takes at most, as JSON, so a budget can be charged before it is written:
// a JSON string escapes a byte into at most 6, a point ([ts,value], with a comma) takes at most
// 48 (20 digits and 24 characters of %.17g).
constexpr std::size_t kEscapedByte = 6;
constexpr std::size_t kPointBytes = 48;
// One data.result element: the key as "series" and again as labels, and its points.
std::size_t result_json_bytes(std::string_view key, std::size_t points) {
    return 2 * kEscapedByte * key.size() + 64 + kPointBytes * points;
}
// The six rollup fields of an export line ("count":...,"sum":... or six CSV columns).
constexpr std::size_t kRollupFieldsBytes = 6 * (10 + 24);
std::size_t string_list_json_bytes(const std::vector<std::string>& items) {
    std::size_t bytes = 64;
    for (const auto& item : items)
        bytes += kEscapedByte * item.size() + 3;
    return bytes;
}

// A query that held this much gives malloc's free pages back afterwards, on its query thread.
// Measured with a raw query of 1 M points (54 MB at its peak, 22 MB of JSON) three times: RSS
// 1 s after it 83-96 MB without, 61-69 MB with (55 MB before); malloc_trim(0) took 1.2-2.5 ms.
// Small queries, the most, skip it.
constexpr std::size_t kTrimAfterBytes = std::size_t{16} << 20;

http::status status_for(const storage::Status& status) {
    switch (status.code()) {
        case storage::Status::Code::invalid_argument:
            return http::status::bad_request;
        case storage::Status::Code::limit_exceeded:
            return http::status::unprocessable_entity;
        case storage::Status::Code::not_found:
            return http::status::not_found;
        case storage::Status::Code::busy:
            return http::status::service_unavailable;
        default:
            return http::status::internal_server_error;
    }
}

}  // namespace

void release_query_memory() {
#ifdef __GLIBC__
    ::malloc_trim(0);
#endif
}

bool url_decode(std::string_view in, std::string& out) {
    out.clear();
    for (std::size_t i = 0; i < in.size(); ++i) {
        char c = in[i];
        if (c == '+') {
            out += ' ';
        } else if (c == '%') {
            if (i + 2 >= in.size()) return false;
            unsigned value = 0;
            auto [end, ec] = std::from_chars(in.data() + i + 1, in.data() + i + 3, value, 16);
            if (ec != std::errc() || end != in.data() + i + 3) return false;
            out += static_cast<char>(value);
            i += 2;
        } else {
            out += c;
        }
    }
    return true;
}

bool query_parameters(std::string_view query, std::string_view name,
                      std::vector<std::string>& values) {
    values.clear();
    std::string key, value;
    while (!query.empty()) {
        std::size_t amp = query.find('&');
        std::string_view pair = query.substr(0, amp);
        std::size_t eq = pair.find('=');
        if (!pair.empty() && url_decode(pair.substr(0, eq), key) && key == name) {
            if (!url_decode(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1),
                            value)) {
                return false;
            }
            values.push_back(value);
        }
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
    return true;
}

bool parse_api_time(std::string_view text, std::int64_t& ms) {
    if (text.empty()) return false;
    // Unix seconds, maybe with a fraction.
    double seconds = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
    if (ec == std::errc() && end == text.data() + text.size()) {
        double value = std::round(seconds * 1000.0);
        // Within ±2^62 ms (146 million years): far beyond any sensor, safely inside int64.
        if (!std::isfinite(value) || std::fabs(value) > 4.6e18) return false;
        ms = static_cast<std::int64_t>(value);
        return true;
    }
    // RFC 3339: YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM).
    auto digits = [&](std::size_t at, std::size_t n, int& out) {
        if (at + n > text.size()) return false;
        out = 0;
        for (std::size_t i = at; i < at + n; ++i) {
            if (text[i] < '0' || text[i] > '9') return false;
            out = out * 10 + (text[i] - '0');
        }
        return true;
    };
    int year, month, day, hour, minute, second;
    if (!digits(0, 4, year) || text.size() < 20 || text[4] != '-' || !digits(5, 2, month) ||
        text[7] != '-' || !digits(8, 2, day) || (text[10] != 'T' && text[10] != 't') ||
        !digits(11, 2, hour) || text[13] != ':' || !digits(14, 2, minute) || text[16] != ':' ||
        !digits(17, 2, second)) {
        return false;
    }
    if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) {
        return false;
    }
    std::size_t at = 19;
    std::int64_t fraction_ms = 0;
    if (at < text.size() && text[at] == '.') {
        std::size_t first = ++at;
        std::int64_t scale = 100;
        while (at < text.size() && text[at] >= '0' && text[at] <= '9') {
            fraction_ms += (text[at] - '0') * scale;
            scale /= 10;
            ++at;
        }
        if (at == first) return false;
    }
    std::int64_t offset_s = 0;
    if (at < text.size() && (text[at] == 'Z' || text[at] == 'z') && at + 1 == text.size()) {
        // UTC
    } else if (at + 6 == text.size() && (text[at] == '+' || text[at] == '-') &&
               text[at + 3] == ':') {
        int oh, om;
        if (!digits(at + 1, 2, oh) || !digits(at + 4, 2, om) || oh > 23 || om > 59) return false;
        offset_s = (oh * 3600 + om * 60) * (text[at] == '-' ? -1 : 1);
    } else {
        return false;
    }
    std::tm tm{};
    tm.tm_year = year - 1900;
    tm.tm_mon = month - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = minute;
    tm.tm_sec = second;
    std::int64_t utc = static_cast<std::int64_t>(::timegm(&tm));
    ms = (utc - offset_s) * 1000 + fraction_ms;
    return true;
}

bool query_parameter(std::string_view query, std::string_view name, std::string& value) {
    while (!query.empty()) {
        std::size_t amp = query.find('&');
        std::string_view pair = query.substr(0, amp);
        std::size_t eq = pair.find('=');
        if (pair.substr(0, eq) == name) {
            return url_decode(
                eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1), value);
        }
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
    return false;
}

HttpApi::HttpApi(storage::Engine& engine, Metrics& metrics, const std::atomic<bool>& ready,
                 storage::QueryLimits limits)
    : engine_(engine), metrics_(metrics), ready_(ready), limits_(limits) {
    using http::verb;
    auto text = [](const char* content_type, std::string body) {
        HttpResponse response(http::status::ok, 11);
        response.set(http::field::content_type, content_type);
        response.body() = std::move(body);
        return response;
    };
    auto not_served = [](const HttpCall& call) {
        return json_error(http::status::not_found, "no such endpoint: " + std::string(call.path));
    };
    routes_.add({verb::get}, "/healthz", [](const HttpCall&) {
        return json_response(http::status::ok, "{\"status\":\"ok\"}");
    });
    // Not ready while starting or draining, and while storage does not take writes (a full
    // data volume, a read-only start, a failed shard): the reasons say which.
    routes_.add({verb::get}, "/readyz", [this](const HttpCall&) {
        if (!ready_.load()) return json_error(http::status::service_unavailable, "not ready");
        // Not writable: 503 with the reasons. Ready, but with what an operator must know (a
        // shard that started on a damaged WAL): 200 with the problems.
        std::vector<std::string> reasons = engine_.problems();
        std::vector<std::string> problems = storage_problems(engine_);
        if (reasons.empty() && problems.empty()) {
            return json_response(http::status::ok, "{\"status\":\"ready\"}");
        }
        auto append_list = [](std::string& out, const std::vector<std::string>& items) {
            out += '[';
            for (std::size_t i = 0; i < items.size(); ++i) {
                if (i) out += ',';
                append_json_string(out, items[i]);
            }
            out += ']';
        };
        std::string body;
        if (reasons.empty()) {
            body = "{\"status\":\"ready\"";
        } else {
            body = "{\"status\":\"error\",\"error\":";
            append_json_string(body, "not ready: " + reasons.front());
            body += ",\"reasons\":";
            append_list(body, reasons);
        }
        if (!problems.empty()) {
            body += ",\"problems\":";
            append_list(body, problems);
        }
        body += '}';
        return json_response(reasons.empty() ? http::status::ok : http::status::service_unavailable,
                             std::move(body));
    });
    routes_.add({verb::get}, "/metrics", [this, text](const HttpCall&) {
        if (memory_) query_memory_in_use_->Set(static_cast<double>(memory_->in_use()));
        return text("text/plain; version=0.0.4", metrics_.serialize());
    });
    routes_.add({verb::get}, "/metrics/city", [this, text, not_served](const HttpCall& call) {
        if (!city_) return not_served(call);
        return text("text/plain; version=0.0.4",
                    ingest::CityAggregates::serialize(city_->snapshot(now_ms())));
    });
    routes_.add({verb::get}, "/", [this, text, not_served](const HttpCall& call) {
        if (!status_) return not_served(call);
        HttpResponse response = text("text/html; charset=utf-8", std::string(StatusPage::html()));
        response.set(http::field::cache_control, "no-store");
        return response;
    });
    // citygate's own API lives under /api/citygate/v1/. Its old paths under /api/v1/ stay as
    // aliases; query_range and series, which Prometheus' API has too, go to Prometheus' handler
    // for a POST or Prometheus' parameters (query=, match[]=) and to citygate's otherwise.
    auto status_route = [this, not_served](const HttpCall& call) {
        if (!status_) return not_served(call);
        return json_response(http::status::ok, status_->json(now_ms()));
    };
    // Queries run on the query pool, each under a budget of its own (see query_route).
    using Budget = storage::QueryBudget;
    auto own_query_range =
        query_route([this](auto& call, Budget& b) { return query_range(call.query, b); });
    auto own_series = query_route([this](auto& call, Budget& b) { return series(call.query, b); });
    auto own_export =
        query_route([this](auto& call, Budget& b) { return export_points(call.query, b); });
    auto own_label_values = query_route(
        [this](auto& call, Budget& b) { return label_values(call.params[0], call.query, b); });
    auto own_log_level = [this](const HttpCall& call) { return log_level(call.request); };
    auto own_checkpoint = on_query_pool(
        [this](const HttpCall&) { return checkpoint_gate_->run([this] { return checkpoint(); }); });
    for (std::string_view prefix : {"/api/citygate/v1", "/api/v1"}) {
        const std::string p(prefix);
        const bool alias = prefix == "/api/v1";
        routes_.add({verb::get}, p + "/status", status_route);
        if (alias) {
            auto either = [](RouteHandler prom, RouteHandler own) {
                return on_query_pool([prom, own](const HttpCall& call) {
                    return is_prometheus_request(call.request, call.query) ? prom(call) : own(call);
                });
            };
            routes_.add({verb::get, verb::post}, p + "/query_range", Scope::read,
                        either(prom_query_range_route(), own_query_range));
            routes_.add({verb::get, verb::post}, p + "/series", Scope::read,
                        either(prom_series_route(), own_series));
        } else {
            routes_.add({verb::get}, p + "/query_range", Scope::read, own_query_range);
            routes_.add({verb::get}, p + "/series", Scope::read, own_series);
        }
        routes_.add({verb::get}, p + "/export", Scope::read, own_export);
        routes_.add({verb::get}, p + "/labels/{name}/values", Scope::read, own_label_values);
        routes_.add({verb::get, verb::put, verb::post}, p + "/log_level",
                    {Scope::read, Scope::admin}, own_log_level);
        routes_.add({verb::post}, p + "/admin/checkpoint", Scope::admin, own_checkpoint);
    }
    // Prometheus' path: the same in both APIs.
    routes_.add({verb::post, verb::put}, "/api/v1/admin/tsdb/delete_series", Scope::admin,
                on_query_pool([this](const HttpCall& call) { return delete_series(call); }));
    add_prometheus_routes();
    refused_ = &prometheus::BuildCounter()
                    .Name("citygate_http_queries_refused_total")
                    .Help(
                        "Queries refused or stopped by a limit, by the option that sets it "
                        "(shutdown: cancelled by a drain)")
                    .Register(*metrics_.registry());
}

template <typename Run>
RouteHandler HttpApi::query_route(Run run) const {
    return on_query_pool([this, run](const HttpCall& call) {
        auto budget = std::make_shared<storage::QueryBudget>(limits_, memory_.get(), call.received,
                                                             cancelled_);
        HttpResponse response = run(call, *budget);
        CG_LOG(debug).with("peak_bytes", budget->peak())
            << "query " << call.path << " held at most " << budget->peak() << " bytes";
        // Big queries leave freed pages in malloc's arenas (the shard reads' threads each have
        // one) that it keeps: give them back.
        if (budget->peak() >= kTrimAfterBytes) release_query_memory();
        // An answer stays counted until it is written; an error's memory is free at once.
        if (call.keep && response.result() == http::status::ok) *call.keep = std::move(budget);
        return response;
    });
}

RouteHandler HttpApi::budgeted_route(
    std::function<HttpResponse(const HttpCall&, storage::QueryBudget&)> run) const {
    return query_route(std::move(run));
}

void HttpApi::set_status(const StatusPage* status, const ingest::CityAggregates* city) {
    status_ = status;
    city_ = city;
}

HttpResponse HttpApi::handle(const HttpRequest& request,
                             const boost::asio::ip::address& peer) const {
    return routes_.dispatch(request, peer);
}

void HttpApi::handle(HttpRequest request, const boost::asio::ip::address& peer,
                     HttpRespond respond) const {
    routes_.dispatch(std::make_shared<const HttpRequest>(std::move(request)), peer,
                     std::move(respond));
}

void HttpApi::set_query_pool(QueryPool* pool, std::size_t memory_budget_bytes) {
    routes_.set_query_pool(pool);
    cancelled_ = pool ? &pool->stopping() : nullptr;
    memory_ = memory_budget_bytes > 0 ? std::make_unique<storage::QueryMemory>(memory_budget_bytes)
                                      : nullptr;
    if (!memory_) return;
    auto& memory = prometheus::BuildGauge()
                       .Name("citygate_query_memory_bytes")
                       .Help(
                           "Memory of running queries and their unwritten answers, against "
                           "http.query_memory_budget")
                       .Register(*metrics_.registry());
    query_memory_in_use_ = &memory.Add({{"state", "in_use"}});
    memory.Add({{"state", "budget"}}).Set(static_cast<double>(memory_budget_bytes));
}

void HttpApi::set_auth(const HttpAuth* auth, std::chrono::milliseconds checkpoint_interval) {
    routes_.set_authorizer([auth](const HttpCall& call, Scope scope) {
        return auth->check(call.request, call.peer, scope);
    });
    checkpoint_gate_ =
        std::make_shared<CallGate>(checkpoint_interval, [auth] { auth->count_rate_limited(); });
    log_level_gate_ =
        std::make_shared<CallGate>(kLogLevelInterval, [auth] { auth->count_rate_limited(); });
    delete_gate_ =
        std::make_shared<CallGate>(kDeleteInterval, [auth] { auth->count_rate_limited(); });
}

// Writes a checkpoint of every shard under the backup directory and prunes the oldest.
HttpResponse HttpApi::checkpoint() const {
    if (!backups_) return json_error(http::status::not_found, "checkpoints are not configured");
    Backups::Taken taken = backups_->take();  // logs and counts a failure itself
    if (!taken.status.is_ok()) {
        return json_error(status_for(taken.status), "checkpoint failed: " + taken.status.message());
    }
    std::string body = "{\"status\":\"success\",\"data\":{\"path\":";
    append_json_string(body, taken.path.string());
    body += ",\"pruned\":[";
    for (std::size_t i = 0; i < taken.pruned.size(); ++i) {
        if (i) body += ',';
        append_json_string(body, taken.pruned[i].string());
    }
    body += "]}}";
    return json_response(http::status::ok, std::move(body));
}

HttpResponse HttpApi::delete_series(const HttpCall& call) const {
    // Parameters in the query string or, as Prometheus takes them too, a form body.
    std::string params(call.query);
    auto field = call.request[http::field::content_type];
    std::string_view type(field.data(), field.size());
    if (type.starts_with("application/x-www-form-urlencoded") && !call.request.body().empty()) {
        if (!params.empty()) params += '&';
        params += call.request.body();
    }
    std::vector<std::string> matches;
    if (!query_parameters(params, "match[]", matches)) return bad_request("match[]: bad escape");
    if (matches.empty()) {
        return bad_request(
            "missing parameter: match[] (a series selector, e.g. pm25{device=\"a-1\"})");
    }
    std::vector<storage::Selector> selectors;
    for (const auto& text : matches) {
        if (text.empty()) return bad_request("match[] must not be empty");
        auto selector = storage::Selector::parse(text);
        if (!selector.is_ok()) return bad_request("match[]: " + selector.status().message());
        selectors.push_back(std::move(selector.value()));
    }
    std::int64_t start = INT64_MIN, end = INT64_MAX;
    std::string text;
    if (query_parameter(params, "start", text) && !parse_api_time(text, start)) {
        return bad_request("start must be Unix seconds or RFC 3339, got \"" + text + "\"");
    }
    if (query_parameter(params, "end", text) && !parse_api_time(text, end)) {
        return bad_request("end must be Unix seconds or RFC 3339, got \"" + text + "\"");
    }
    if (end < start) return bad_request("end is before start");
    // Both ends inclusive, as in Prometheus; storage takes [start, end).
    const std::int64_t end_exclusive = end == INT64_MAX ? end : end + 1;
    return delete_gate_->run([&] {
        storage::DeleteResult total;
        for (const auto& selector : selectors) {
            auto deleted = engine_.delete_points(selector, start, end_exclusive);
            if (!deleted.is_ok()) {
                CG_LOG(error).with("reason", deleted.status().message())
                    << "delete_series failed: " << deleted.status().message();
                return json_error(status_for(deleted.status()),
                                  "delete failed: " + deleted.status().message());
            }
            total.series += deleted.value().series;
            total.points += deleted.value().points;
            total.series_removed += deleted.value().series_removed;
        }
        // An operator's change to stored data: always in the log, whatever the level.
        std::string joined;
        for (const auto& m : matches)
            joined += (joined.empty() ? "" : " ") + m;
        CG_LOG(warn)
                .with("match", joined)
                .with("start_ms", start)
                .with("end_ms", end)
                .with("series", total.series)
                .with("points", total.points)
                .with("series_removed", total.series_removed)
            << "delete_series: " << total.points << " points of " << total.series
            << " series deleted, " << total.series_removed << " series removed";
        HttpResponse response(http::status::no_content, 11);
        return response;
    });
}

// GET answers the level; PUT or POST with a body of debug, info, warn or error (surrounding
// whitespace and quotes ignored) sets it for the whole process.
HttpResponse HttpApi::log_level(const HttpRequest& request) const {
    auto answer = [](log::Level previous) {
        std::string body = "{\"status\":\"success\",\"data\":{\"level\":\"";
        body += log::level_name(log::level());
        body += "\",\"previous\":\"";
        body += log::level_name(previous);
        body += "\"}}";
        return json_response(http::status::ok, std::move(body));
    };
    http::verb method = request.method();
    if (method == http::verb::get || method == http::verb::head) return answer(log::level());
    std::string_view text = request.body();
    auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '"'; };
    while (!text.empty() && blank(text.front()))
        text.remove_prefix(1);
    while (!text.empty() && blank(text.back()))
        text.remove_suffix(1);
    log::Level level;
    if (!log::parse_level(text, level)) {
        return bad_request("log level must be debug, info, warn or error");
    }
    // A valid change passes the rate limit; a bad body is answered without using it up.
    return log_level_gate_->run([&] {
        log::Level previous = log::level();
        log::set_level(level);
        // Logged at warn so the change shows at any level it leaves.
        CG_LOG(warn)
                .with("level", log::level_name(level))
                .with("previous", log::level_name(previous))
            << "log level changed to " << log::level_name(level) << " over HTTP";
        return answer(previous);
    });
}

HttpResponse HttpApi::bad_request(std::string_view message) const {
    metrics_.error(ErrorKind::http_bad_request).Increment();
    return json_error(http::status::bad_request, message);
}

std::optional<RangeRequest> parse_range_request(std::string_view query, std::size_t max_steps,
                                                std::string& error) {
    RangeRequest request;
    std::string text;
    if ((!query_parameter(query, "series", text) && !query_parameter(query, "match", text)) ||
        text.empty()) {
        error = "missing parameter: series";
        return std::nullopt;
    }
    auto selector = storage::Selector::parse(text);
    if (!selector.is_ok()) {
        error = "series: " + selector.status().message();
        return std::nullopt;
    }
    request.selector = std::move(selector.value());
    if (!query_parameter(query, "start", text) || !parse_int64(text, request.start_ms)) {
        error = "start must be an integer of ms since epoch";
        return std::nullopt;
    }
    if (!query_parameter(query, "end", text) || !parse_int64(text, request.end_ms)) {
        error = "end must be an integer of ms since epoch";
        return std::nullopt;
    }
    if (request.end_ms < request.start_ms) {
        error = "end is before start";
        return std::nullopt;
    }
    std::string step_text, function_text, group_text, source_text;
    bool has_step = query_parameter(query, "step", step_text);
    bool has_function = query_parameter(query, "function", function_text);
    bool has_group = query_parameter(query, "group_by", group_text);
    bool has_source = query_parameter(query, "source", source_text);
    if (!has_step && !has_function && !has_group && !has_source) return request;

    storage::AggregateQuery& aggregate = request.aggregate.emplace();
    aggregate.selector = request.selector;
    aggregate.start_ms = request.start_ms;
    // The API's end is inclusive, storage ranges are half-open.
    aggregate.end_ms = request.end_ms == INT64_MAX ? request.end_ms : request.end_ms + 1;
    if (has_step) {
        std::int64_t step = 0;
        if (!parse_int64(step_text, step)) {
            try {
                step = parse_duration(step_text, "step").count();
            } catch (const ConfigError&) {
                error = "step must be ms or a duration like \"5m\"";
                return std::nullopt;
            }
        }
        if (step <= 0) {
            error = "step must be positive";
            return std::nullopt;
        }
        aggregate.step_ms = step;
    }
    if (has_function) {
        auto function = storage::parse_aggregation(function_text);
        if (!function) {
            error = "function must be avg, min, max, sum, count, first, last or rate";
            return std::nullopt;
        }
        aggregate.function = *function;
    }
    if (has_group) {
        std::vector<std::string> names;
        for (std::size_t at = 0; at <= group_text.size();) {
            std::size_t comma = std::min(group_text.find(',', at), group_text.size());
            if (comma > at) names.push_back(group_text.substr(at, comma - at));
            at = comma + 1;
        }
        aggregate.group_by = std::move(names);
    }
    if (has_source) {
        if (source_text != "raw" && source_text != "auto") {
            error = "source must be raw or auto";
            return std::nullopt;
        }
        if (source_text == "raw") aggregate.source = storage::AggregateQuery::Source::raw;
    }
    // Unsigned: the span of two int64 times always fits.
    std::uint64_t span = static_cast<std::uint64_t>(aggregate.end_ms) -
                         static_cast<std::uint64_t>(aggregate.start_ms);
    if (span / static_cast<std::uint64_t>(aggregate.step_ms) > max_steps) {
        error = "too many steps: widen the step or narrow the range";
        return std::nullopt;
    }
    return request;
}

HttpResponse HttpApi::query_failed(const storage::Status& status,
                                   const storage::QueryBudget& budget) const {
    return json_error(status_for(status), describe_failure(status, budget));
}

HttpResponse HttpApi::query_range(std::string_view query, storage::QueryBudget& budget) const {
    std::string error;
    auto request = parse_range_request(query, limits_.max_points, error);
    if (!request) return bad_request(error);
    if (request->aggregate) return aggregate(*request, budget);

    const std::int64_t end = request->end_ms == INT64_MAX ? request->end_ms : request->end_ms + 1;
    auto result = engine_.query_raw(request->selector, request->start_ms, end, budget);
    if (!result.is_ok()) return query_failed(result.status(), budget);
    std::string body = "{\"status\":\"success\",\"data\":{\"result\":[";
    for (const storage::RawSeries& series : result.value()) {
        if (auto s =
                budget.grow(body, result_json_bytes(series.series, series.timestamps_ms.size()));
            !s.is_ok()) {
            return query_failed(s, budget);
        }
        if (body.back() != '[') body += ',';
        append_result(body, series.series, nullptr, series.timestamps_ms, series.values);
    }
    body += "]}}";
    return json_response(http::status::ok, std::move(body));
}

HttpResponse HttpApi::aggregate(const RangeRequest& request, storage::QueryBudget& budget) const {
    const storage::AggregateQuery& query = *request.aggregate;
    auto result = engine_.query_aggregate(query, budget);
    if (!result.is_ok()) return query_failed(result.status(), budget);
    std::string body = "{\"status\":\"success\",\"data\":{\"result\":[";
    for (const storage::AggregatedSeries& series : result.value()) {
        if (auto s = budget.grow(body, result_json_bytes(series.key, series.timestamps_ms.size()));
            !s.is_ok()) {
            return query_failed(s, budget);
        }
        if (body.back() != '[') body += ',';
        append_result(body, series.key, query.group_by ? &series.labels : nullptr,
                      series.timestamps_ms, series.values);
    }
    body += "]}}";
    return json_response(http::status::ok, std::move(body));
}

HttpResponse HttpApi::label_values(std::string_view name, std::string_view query,
                                   storage::QueryBudget& budget) const {
    std::string label;
    if (!url_decode(name, label) || label.empty()) return bad_request("bad label name");
    std::string selector_text = "{__name__=~\".+\"}";
    if (query_parameter(query, "match", selector_text) && selector_text.empty()) {
        return bad_request("match must not be empty");
    }
    auto selector = storage::Selector::parse(selector_text);
    if (!selector.is_ok()) return bad_request("match: " + selector.status().message());
    auto result = engine_.label_values(label, selector.value(), budget);
    if (!result.is_ok()) return query_failed(result.status(), budget);
    std::string body;
    if (auto s = budget.grow(body, string_list_json_bytes(result.value())); !s.is_ok()) {
        return query_failed(s, budget);
    }
    return string_list_response(result.value(), std::move(body));
}

HttpResponse HttpApi::export_points(std::string_view query, storage::QueryBudget& budget) const {
    std::string error;
    auto request = parse_range_request(query, limits_.max_points, error);
    if (!request) return bad_request(error);
    const storage::Selector& selector = request->selector;
    const std::int64_t start = request->start_ms;
    std::string format = "csv", rollup;
    query_parameter(query, "format", format);
    if (format != "csv" && format != "jsonl") return bad_request("format must be csv or jsonl");
    query_parameter(query, "rollup", rollup);
    if (!rollup.empty() && rollup != "1m" && rollup != "1h") {
        return bad_request("rollup must be 1m or 1h");
    }
    std::int64_t end_exclusive =
        request->end_ms == INT64_MAX ? request->end_ms : request->end_ms + 1;
    bool csv = format == "csv";
    std::string body;

    if (rollup.empty()) {
        auto result = engine_.query_raw(selector, start, end_exclusive, budget);
        if (!result.is_ok()) return query_failed(result.status(), budget);
        if (csv) body = "series,timestamp_ms,value\n";
        for (const storage::RawSeries& series : result.value()) {
            // A line: the key (quoted or escaped), a time, a value and punctuation.
            std::size_t line = kEscapedByte * series.series.size() + 72;
            if (auto s = budget.grow(body, line * series.timestamps_ms.size()); !s.is_ok()) {
                return query_failed(s, budget);
            }
            std::string quoted;
            if (csv) append_csv_field(quoted, series.series);
            for (std::size_t i = 0; i < series.timestamps_ms.size(); ++i) {
                if (csv) {
                    body += quoted;
                    body += ',';
                    body += std::to_string(series.timestamps_ms[i]);
                    body += ',';
                    append_number(body, series.values[i]);
                } else {
                    body += "{\"series\":";
                    append_json_string(body, series.series);
                    body += ",\"ts\":";
                    body += std::to_string(series.timestamps_ms[i]);
                    body += ",\"value\":";
                    append_number(body, series.values[i]);
                    body += '}';
                }
                body += '\n';
            }
        }
    } else {
        // One aggregate query per rollup field, zipped by series and bucket start.
        using storage::Aggregation;
        static constexpr std::pair<Aggregation, const char*> fields[] = {
            {Aggregation::count, "count"}, {Aggregation::sum, "sum"},
            {Aggregation::min, "min"},     {Aggregation::max, "max"},
            {Aggregation::first, "first"}, {Aggregation::last, "last"}};
        std::vector<std::vector<storage::AggregatedSeries>> columns;
        storage::AggregateQuery aggregate;
        aggregate.selector = selector;
        aggregate.step_ms = rollup == "1m" ? 60'000 : 3'600'000;
        // Buckets are aligned to the rollup's grid, so a range starting mid-bucket still reads
        // whole buckets.
        aggregate.start_ms = start - start % aggregate.step_ms;
        aggregate.end_ms = end_exclusive;
        for (const auto& [function, name] : fields) {
            aggregate.function = function;
            auto result = engine_.query_aggregate(aggregate, budget);
            if (!result.is_ok()) return query_failed(result.status(), budget);
            columns.push_back(std::move(result.value()));
        }
        if (csv) body = "series,bucket_start_ms,count,sum,min,max,first,last\n";
        for (std::size_t s = 0; s < columns[0].size(); ++s) {
            const auto& key = columns[0][s].key;
            std::size_t line = kEscapedByte * key.size() + 72 + kRollupFieldsBytes;
            if (auto status = budget.grow(body, line * columns[0][s].timestamps_ms.size());
                !status.is_ok()) {
                return query_failed(status, budget);
            }
            std::string quoted;
            if (csv) append_csv_field(quoted, key);
            for (std::size_t b = 0; b < columns[0][s].timestamps_ms.size(); ++b) {
                if (csv) {
                    body += quoted;
                    body += ',';
                    body += std::to_string(columns[0][s].timestamps_ms[b]);
                } else {
                    body += "{\"series\":";
                    append_json_string(body, key);
                    body += ",\"bucket_start_ms\":";
                    body += std::to_string(columns[0][s].timestamps_ms[b]);
                }
                for (std::size_t f = 0; f < columns.size(); ++f) {
                    const auto& column = columns[f][s];
                    double value = b < column.values.size() ? column.values[b] : 0;
                    if (csv) {
                        body += ',';
                    } else {
                        body += ",\"";
                        body += fields[f].second;
                        body += "\":";
                    }
                    append_number(body, value);
                }
                body += csv ? "\n" : "}\n";
            }
        }
    }
    HttpResponse response(http::status::ok, 11);
    response.set(http::field::content_type, csv ? "text/csv" : "application/x-ndjson");
    response.body() = std::move(body);
    return response;
}

HttpResponse HttpApi::series(std::string_view query, storage::QueryBudget& budget) const {
    std::string selector_text;
    if (!query_parameter(query, "match", selector_text) || selector_text.empty()) {
        return bad_request("missing parameter: match");
    }
    auto selector = storage::Selector::parse(selector_text);
    if (!selector.is_ok()) return bad_request("match: " + selector.status().message());
    auto result = engine_.series(selector.value(), budget);
    if (!result.is_ok()) return query_failed(result.status(), budget);
    std::string body;
    if (auto s = budget.grow(body, string_list_json_bytes(result.value())); !s.is_ok()) {
        return query_failed(s, budget);
    }
    return string_list_response(result.value(), std::move(body));
}

}  // namespace citygate::gateway
