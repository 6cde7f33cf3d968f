// Prometheus' HTTP query API on citygate's HTTP port (the HttpApi's Prometheus routes):
// /api/v1/query, query_range, series, labels, label/<name>/values, metadata, status/buildinfo,
// /-/healthy and /-/ready, answered as Prometheus 2.42 answers them. Queries run on the query
// pool under the same budgets as citygate's own queries.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <set>

#include "gateway/http/http_api.hpp"
#include "gateway/http/prom_format.hpp"
#include "gateway/http/promql_queryable.hpp"
#include "gateway/json_text.hpp"
#include "gateway/ops/log.hpp"
#include "promql/parser.hpp"

namespace citygate::gateway {
namespace {

namespace http = boost::beast::http;

// Prometheus' limit on a range query's resolution.
constexpr std::int64_t kMaxRangePoints = 11'000;

std::int64_t wall_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

HttpResponse bad_param(std::string_view name, std::string_view message) {
    return prom_failure(PromError::bad_data,
                        "invalid parameter \"" + std::string(name) + "\": " + std::string(message));
}

// The selectors of every match[]: each must be a plain instant vector selector.
std::optional<std::vector<storage::Selector>> parse_matches(const std::vector<std::string>& texts,
                                                            std::string& error) {
    std::vector<storage::Selector> out;
    for (const std::string& text : texts) {
        auto parsed = promql::parse(text);
        if (!parsed.is_ok()) {
            error = parsed.error().message;
            return std::nullopt;
        }
        const auto* selector = parsed.expr()->as<promql::VectorSelector>();
        if (!selector) {
            error = "1:1: parse error: expected vector selector, got " + text;
            return std::nullopt;
        }
        for (const auto& m : selector->matchers) {
            if (!m.error().empty()) {
                error = m.error();
                return std::nullopt;
            }
        }
        out.push_back(to_storage_selector(selector->matchers));
    }
    return out;
}

storage::Selector every_series() {
    storage::Selector all;
    all.matchers.push_back({"__name__", storage::Matcher::Op::regex, ".+"});
    return all;
}

// The match[] selectors of labels and label values: every series when there are none. A bad
// one is answered 400.
std::optional<HttpResponse> matches_or_all(const PromParams& params,
                                           std::vector<storage::Selector>& selectors) {
    auto texts = params.all("match[]");
    if (texts.empty()) {
        selectors.push_back(every_series());
        return std::nullopt;
    }
    std::string error;
    auto parsed = parse_matches(texts, error);
    if (!parsed) return bad_param("match[]", error);
    selectors = std::move(*parsed);
    return std::nullopt;
}

}  // namespace

std::string HttpApi::describe_failure(const storage::Status& status,
                                      const storage::QueryBudget& budget) const {
    using Limit = storage::QueryBudget::Limit;
    const char* option = nullptr;  // the option that sets the limit, named in the message
    const char* counted = nullptr;
    switch (budget.exceeded()) {
        case Limit::series:
            option = counted = "http.max_query_series";
            break;
        case Limit::points:
            option = counted = "http.max_query_points";
            break;
        case Limit::bytes:
            option = counted = "http.max_query_bytes";
            break;
        case Limit::shared_bytes:
            option = counted = "http.query_memory_budget";
            break;
        case Limit::timeout:
            option = counted = "http.query_timeout";
            break;
        case Limit::cancelled:
            counted = "shutdown";
            break;
        case Limit::none:
            break;
    }
    if (counted && refused_) refused_->Add({{"limit", counted}}).Increment();
    std::string message = status.message();
    if (option) message += std::string(" (") + option + ")";
    return message;
}

HttpResponse HttpApi::prom_storage_failure(const storage::Status& status,
                                           const storage::QueryBudget& budget) const {
    std::string message = describe_failure(status, budget);
    switch (status.code()) {
        case storage::Status::Code::invalid_argument:
            return prom_failure(PromError::bad_data, message);
        case storage::Status::Code::limit_exceeded:
            return prom_failure(PromError::execution, message);
        case storage::Status::Code::busy:
            return prom_failure(budget.exceeded() == storage::QueryBudget::Limit::cancelled
                                    ? PromError::canceled
                                    : PromError::timeout,
                                message);
        default:
            return prom_failure(PromError::internal, message);
    }
}

RouteHandler HttpApi::prom_route(PromRun run) const {
    return on_query_pool([this, run = std::move(run)](const HttpCall& call) {
        std::string error;
        auto params = PromParams::parse(call.request, call.query, error);
        if (!params) return prom_failure(PromError::bad_data, error);
        storage::QueryLimits limits = limits_;
        if (auto timeout = params->get("timeout")) {
            auto ms = parse_prom_duration(*timeout);
            if (!ms) {
                return bad_param("timeout",
                                 "cannot parse \"" + *timeout + "\" to a valid duration");
            }
            if (*ms > 0 && (limits.timeout.count() == 0 || *ms < limits.timeout.count())) {
                limits.timeout = std::chrono::milliseconds(*ms);
            }
        }
        auto budget = std::make_shared<storage::QueryBudget>(limits, memory_.get(), call.received,
                                                             cancelled_);
        HttpResponse response = run(call, *params, *budget);
        if (budget->peak() >= (std::size_t{16} << 20)) release_query_memory();
        if (call.keep && response.result() == http::status::ok) *call.keep = std::move(budget);
        return response;
    });
}

HttpResponse HttpApi::prom_query(const HttpCall& call, const PromParams& params,
                                 storage::QueryBudget& budget, bool range) const {
    std::string query = params.get("query").value_or("");
    std::int64_t start = 0, end = 0, step = 0;
    if (range) {
        struct Named {
            const char* name;
            std::int64_t* into;
        };
        for (auto [name, into] : {Named{"start", &start}, Named{"end", &end}}) {
            auto text = params.get(name);
            auto t = text ? parse_prom_time(*text) : std::nullopt;
            if (!t) {
                return bad_param(name,
                                 "cannot parse \"" + text.value_or("") + "\" to a valid timestamp");
            }
            *into = *t;
        }
        if (end < start) {
            return prom_failure(PromError::bad_data, "end timestamp must not be before start time");
        }
        auto step_text = params.get("step");
        auto s = step_text ? parse_prom_duration(*step_text) : std::nullopt;
        if (!s) {
            return bad_param("step",
                             "cannot parse \"" + step_text.value_or("") + "\" to a valid duration");
        }
        step = *s;
        if (step <= 0) {
            return prom_failure(PromError::bad_data,
                                "zero or negative query resolution step widths are not accepted. "
                                "Try a positive integer");
        }
        if ((end - start) / step > kMaxRangePoints) {
            return prom_failure(PromError::bad_data,
                                "exceeded maximum resolution of 11,000 points per timeseries. Try "
                                "decreasing the query resolution (?step=XX)");
        }
    } else if (auto text = params.get("time")) {
        auto t = parse_prom_time(*text);
        if (!t) return bad_param("time", "cannot parse \"" + *text + "\" to a valid timestamp");
        start = end = *t;
    } else {
        start = end = wall_ms();
    }

    StorageQueryable queryable(engine_, budget, [this, &budget](const storage::Status& status) {
        return describe_failure(status, budget);
    });
    promql::QueryLimits limits;
    limits.max_samples = limits_.max_points;
    if (budget.limits().timeout.count() > 0)
        limits.deadline = call.received + budget.limits().timeout;
    limits.cancelled = cancelled_;
    auto result = range ? promql_.range_query(queryable, query, start, end, step, limits)
                        : promql_.instant_query(queryable, query, start, limits);
    if (!result.is_ok()) {
        const promql::QueryError& e = result.error();
        using Kind = promql::QueryError::Kind;
        switch (e.kind) {
            case Kind::bad_data:
                return prom_failure(PromError::bad_data, e.message);
            case Kind::execution:
                return prom_failure(PromError::execution, e.message);
            case Kind::too_many_samples:
                if (refused_) refused_->Add({{"limit", "http.max_query_points"}}).Increment();
                return prom_failure(PromError::execution, e.message + " (http.max_query_points)");
            case Kind::timeout:
                if (refused_) refused_->Add({{"limit", "http.query_timeout"}}).Increment();
                return prom_failure(PromError::timeout, e.message + " (http.query_timeout)");
            case Kind::cancelled:
                return prom_failure(PromError::canceled, e.message);
            case Kind::storage:
                switch (e.select_kind) {
                    case promql::SelectError::Kind::limit:
                        return prom_failure(PromError::execution, e.message);
                    case promql::SelectError::Kind::busy:
                        return prom_failure(
                            budget.exceeded() == storage::QueryBudget::Limit::cancelled
                                ? PromError::canceled
                                : PromError::timeout,
                            e.message);
                    case promql::SelectError::Kind::storage:
                        return prom_failure(PromError::internal, e.message);
                }
        }
        return prom_failure(PromError::internal, e.message);
    }
    std::string data;
    if (auto s = budget.grow(data, prom_value_json_bytes(result.value())); !s.is_ok()) {
        return prom_storage_failure(s, budget);
    }
    append_prom_value(data, result.value());
    return prom_success(data);
}

HttpResponse HttpApi::prom_series(const PromParams& params, storage::QueryBudget& budget) const {
    auto texts = params.all("match[]");
    if (texts.empty()) return prom_failure(PromError::bad_data, "no match[] parameter provided");
    std::string error;
    auto selectors = parse_matches(texts, error);
    if (!selectors) return bad_param("match[]", error);
    std::vector<std::string> keys;
    for (const auto& selector : *selectors) {
        auto found = engine_.series(selector, budget);
        if (!found.is_ok()) return prom_storage_failure(found.status(), budget);
        if (auto s = budget.grow(keys, found.value().size()); !s.is_ok()) {
            return prom_storage_failure(s, budget);
        }
        std::move(found.value().begin(), found.value().end(), std::back_inserter(keys));
    }
    std::vector<promql::Labels> labels;
    if (auto s = budget.grow(labels, keys.size()); !s.is_ok()) {
        return prom_storage_failure(s, budget);
    }
    for (const auto& key : keys)
        labels.push_back(labels_of_key(key));
    std::sort(labels.begin(), labels.end());
    labels.erase(std::unique(labels.begin(), labels.end()), labels.end());
    std::string data;
    std::size_t bytes = 16;
    for (const auto& key : keys)
        bytes += 6 * key.size() + 32;
    if (auto s = budget.grow(data, bytes); !s.is_ok()) return prom_storage_failure(s, budget);
    data += '[';
    for (std::size_t i = 0; i < labels.size(); ++i) {
        if (i) data += ',';
        append_prom_metric(data, labels[i]);
    }
    data += ']';
    return prom_success(data);
}

// Sorted strings as a JSON list, cut at `limit` (0: none) with Prometheus' warning.
HttpResponse HttpApi::prom_string_list(std::vector<std::string> items, std::size_t limit,
                                       storage::QueryBudget& budget) const {
    std::vector<std::string> warnings;
    if (limit > 0 && items.size() > limit) {
        items.resize(limit);
        warnings.push_back("results truncated due to limit");
    }
    std::string data;
    std::size_t bytes = 16;
    for (const auto& item : items)
        bytes += 6 * item.size() + 3;
    if (auto s = budget.grow(data, bytes); !s.is_ok()) return prom_storage_failure(s, budget);
    data += '[';
    for (std::size_t i = 0; i < items.size(); ++i) {
        if (i) data += ',';
        append_json_string(data, items[i]);
    }
    data += ']';
    return prom_success(data, warnings);
}

std::optional<HttpResponse> HttpApi::prom_limit(const PromParams& params,
                                                std::size_t& limit) const {
    limit = 0;
    auto text = params.get("limit");
    if (!text || text->empty()) return std::nullopt;
    auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), limit);
    if (ec != std::errc() || end != text->data() + text->size()) {
        return bad_param("limit", "cannot parse \"" + *text + "\" to a valid limit");
    }
    return std::nullopt;
}

HttpResponse HttpApi::prom_labels(const PromParams& params, storage::QueryBudget& budget) const {
    std::size_t limit = 0;
    if (auto refused = prom_limit(params, limit)) return *refused;
    std::vector<storage::Selector> selectors;
    if (auto refused = matches_or_all(params, selectors)) return *refused;
    // From the series keys: the index knows every key, and each key its names.
    std::set<std::string> names;
    for (const auto& selector : selectors) {
        auto found = engine_.series(selector, budget);
        if (!found.is_ok()) return prom_storage_failure(found.status(), budget);
        for (const auto& key : found.value()) {
            const promql::Labels labels = labels_of_key(key);
            for (const auto& label : labels.items())
                names.insert(label.name);
        }
    }
    return prom_string_list({names.begin(), names.end()}, limit, budget);
}

HttpResponse HttpApi::prom_label_values(std::string_view encoded_name, const PromParams& params,
                                        storage::QueryBudget& budget) const {
    std::string name;
    if (!url_decode(encoded_name, name) || !promql::is_valid_label_name(name)) {
        return prom_failure(PromError::bad_data, "invalid label name: \"" + name + "\"");
    }
    std::size_t limit = 0;
    if (auto refused = prom_limit(params, limit)) return *refused;
    std::vector<storage::Selector> selectors;
    if (auto refused = matches_or_all(params, selectors)) return *refused;
    std::vector<std::string> values;
    for (const auto& selector : selectors) {
        auto found = engine_.label_values(name, selector, budget);
        if (!found.is_ok()) return prom_storage_failure(found.status(), budget);
        if (auto s = budget.grow(values, found.value().size()); !s.is_ok()) {
            return prom_storage_failure(s, budget);
        }
        std::move(found.value().begin(), found.value().end(), std::back_inserter(values));
    }
    std::sort(values.begin(), values.end());
    values.erase(std::unique(values.begin(), values.end()), values.end());
    return prom_string_list(std::move(values), limit, budget);
}

HttpResponse HttpApi::prom_metadata(const PromParams& params, storage::QueryBudget& budget) const {
    std::size_t limit = 0;
    if (auto refused = prom_limit(params, limit)) return *refused;
    std::vector<std::string> names;
    if (auto metric = params.get("metric"); metric && !metric->empty()) {
        storage::Selector selector;
        selector.matchers.push_back({"__name__", storage::Matcher::Op::equal, *metric});
        auto found = engine_.label_values("__name__", selector, budget);
        if (!found.is_ok()) return prom_storage_failure(found.status(), budget);
        names = std::move(found.value());
    } else {
        auto found = engine_.label_values("__name__", every_series(), budget);
        if (!found.is_ok()) return prom_storage_failure(found.status(), budget);
        names = std::move(found.value());
    }
    if (limit > 0 && names.size() > limit) names.resize(limit);
    // Readings carry no type or help: every measurement is "unknown", as Prometheus says of
    // metrics scraped without metadata.
    std::string data;
    std::size_t bytes = 16;
    for (const auto& n : names)
        bytes += 6 * n.size() + 64;
    if (auto s = budget.grow(data, bytes); !s.is_ok()) return prom_storage_failure(s, budget);
    data += '{';
    for (std::size_t i = 0; i < names.size(); ++i) {
        if (i) data += ',';
        append_json_string(data, names[i]);
        data += ":[{\"type\":\"unknown\",\"help\":\"\",\"unit\":\"\"}]";
    }
    data += '}';
    return prom_success(data);
}

void HttpApi::add_prometheus_routes() {
    using http::verb;
    using Budget = storage::QueryBudget;
    routes_.add({verb::get, verb::post}, "/api/v1/query", Scope::read,
                prom_route([this](const HttpCall& call, const PromParams& p, Budget& b) {
                    return prom_query(call, p, b, false);
                }));
    routes_.add({verb::get, verb::post}, "/api/v1/labels", Scope::read,
                prom_route([this](const HttpCall&, const PromParams& p, Budget& b) {
                    return prom_labels(p, b);
                }));
    routes_.add({verb::get, verb::post}, "/api/v1/label/{name}/values", Scope::read,
                prom_route([this](const HttpCall& call, const PromParams& p, Budget& b) {
                    return prom_label_values(call.params[0], p, b);
                }));
    routes_.add({verb::get}, "/api/v1/metadata", Scope::read,
                prom_route([this](const HttpCall&, const PromParams& p, Budget& b) {
                    return prom_metadata(p, b);
                }));
    routes_.add({verb::get}, "/api/v1/status/buildinfo", [](const HttpCall&) {
        // The Prometheus API version it answers as (Grafana picks its features by it), and
        // citygate's own in `application`/`revision`.
        return prom_success(
            "{\"version\":\"2.42.0\",\"revision\":\"citygate-" CITYGATE_VERSION
            "\",\"branch\":\"\",\"buildUser\":\"\",\"buildDate\":\"\",\"goVersion\":\"\","
            "\"application\":\"citygate\"}");
    });
    auto text = [](http::status status, std::string body) {
        HttpResponse response(status, 11);
        response.set(http::field::content_type, "text/plain; charset=utf-8");
        response.body() = std::move(body);
        return response;
    };
    routes_.add({verb::get}, "/-/healthy", [text](const HttpCall&) {
        return text(http::status::ok, "citygate is Healthy.\n");
    });
    routes_.add({verb::get}, "/-/ready", [this, text](const HttpCall&) {
        return ready_.load() ? text(http::status::ok, "citygate is Ready.\n")
                             : text(http::status::service_unavailable, "Service Unavailable\n");
    });
}

RouteHandler HttpApi::prom_query_range_route() const {
    return prom_route([this](const HttpCall& call, const PromParams& p, storage::QueryBudget& b) {
        return prom_query(call, p, b, true);
    });
}

RouteHandler HttpApi::prom_series_route() const {
    return prom_route([this](const HttpCall&, const PromParams& p, storage::QueryBudget& b) {
        return prom_series(p, b);
    });
}

}  // namespace citygate::gateway
