// Prometheus remote write/read and InfluxDB line protocol over HTTP, through the ingest unit.
#include "gateway/http/remote_api.hpp"

#include <algorithm>
#include <cmath>

#include "gateway/json_text.hpp"
#include "gateway/ops/log.hpp"
#include "protocols/remote/compression.hpp"
#include "protocols/remote/remote_read.hpp"

namespace citygate::gateway {
namespace {

namespace http = boost::beast::http;

constexpr const char* kEndpointNames[] = {"remote_write", "influx_v1", "influx_v2"};

std::string_view header(const HttpRequest& request, http::field field) {
    auto found = request.find(field);
    if (found == request.end()) return {};
    return {found->value().data(), found->value().size()};
}

std::string_view header(const HttpRequest& request, std::string_view name) {
    auto found = request.find(boost::beast::string_view(name.data(), name.size()));
    if (found == request.end()) return {};
    return {found->value().data(), found->value().size()};
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

// The media type without parameters or surrounding blanks, e.g. "application/x-protobuf".
std::string_view media_type(std::string_view content_type) {
    content_type = content_type.substr(0, content_type.find(';'));
    while (!content_type.empty() && content_type.back() == ' ')
        content_type.remove_suffix(1);
    while (!content_type.empty() && content_type.front() == ' ')
        content_type.remove_prefix(1);
    return content_type;
}

// Prometheus remote write 2.0 names its message in a proto= parameter; 1.0 has none, or
// prometheus.WriteRequest.
bool is_remote_write_1(std::string_view content_type) {
    if (!iequals(media_type(content_type), "application/x-protobuf")) return false;
    std::size_t proto = content_type.find("proto=");
    if (proto == std::string_view::npos) return true;
    std::string_view name = content_type.substr(proto + 6);
    name = name.substr(0, name.find(';'));
    return name == "prometheus.WriteRequest";
}

// The ingest unit's clock (a test's, else the system's), read once per request.
std::int64_t arrival_ms(const ingest::IngestUnit& unit) {
    if (unit.options().clock) return unit.options().clock();
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace

RemoteApi::RemoteApi(ingest::IngestUnit& unit, const storage::Engine& engine, Metrics& metrics,
                     RemoteApiOptions options)
    : unit_(unit),
      engine_(engine),
      metrics_(metrics),
      options_(options),
      appender_(unit),
      write_decoder_(
          remote::WriteLimits{options.max_write_samples, options.max_write_samples, 256}),
      line_decoder_(
          payload::PayloadLimits{options.max_decoded_body, 0, options.max_write_samples}) {
    requests_ = &prometheus::BuildCounter()
                     .Name("citygate_http_write_requests_total")
                     .Help(
                         "HTTP write requests (remote write, line protocol) by endpoint and "
                         "status code answered")
                     .Register(*metrics_.registry());
    auto& written = prometheus::BuildCounter()
                        .Name("citygate_http_write_samples_total")
                        .Help("Samples written durably over HTTP, by endpoint")
                        .Register(*metrics_.registry());
    auto& skipped = prometheus::BuildCounter()
                        .Name("citygate_http_write_samples_skipped_total")
                        .Help(
                            "Samples of good HTTP write requests not stored: NaN and infinite "
                            "values (Prometheus staleness markers), native histograms, string "
                            "and boolean line protocol fields")
                        .Register(*metrics_.registry());
    for (int i = 0; i < 3; ++i) {
        samples_written_[i] = &written.Add({{"endpoint", kEndpointNames[i]}});
        samples_skipped_[i] = &skipped.Add({{"endpoint", kEndpointNames[i]}});
        // Served from the start, so that rate() over it (CitygateHttpWritesFailing) has a base.
        requests_->Add({{"endpoint", kEndpointNames[i]}, {"code", "204"}});
    }
}

void RemoteApi::count(Endpoint endpoint, unsigned status) const {
    requests_
        ->Add({{"endpoint", kEndpointNames[static_cast<int>(endpoint)]},
               {"code", std::to_string(status)}})
        .Increment();
}

std::size_t RemoteApi::body_limit(std::string_view target) const {
    std::string_view path = target.substr(0, target.find('?'));
    if (path == "/api/v1/write" || path == "/write" || path == "/api/v2/write") {
        return options_.max_write_body;
    }
    if (path == "/api/v1/read") return options_.max_read_body;
    return 0;
}

// InfluxDB answers errors as {"code":"invalid","message":...} (v2) or {"error":...} (v1);
// citygate's shape is {"status":"error","error":...}. This body carries all three.
HttpResponse RemoteApi::refuse(Endpoint endpoint, http::status status,
                               std::string_view message) const {
    count(endpoint, static_cast<unsigned>(status));
    if (status == http::status::bad_request)
        metrics_.error(ErrorKind::http_bad_request).Increment();
    std::string body = "{\"status\":\"error\",\"error\":";
    append_json_string(body, message);
    if (endpoint != Endpoint::remote_write) {
        body += ",\"code\":";
        append_json_string(body, status == http::status::bad_request         ? "invalid"
                                 : status == http::status::payload_too_large ? "request too large"
                                                                             : "unavailable");
        body += ",\"message\":";
        append_json_string(body, message);
    }
    body += '}';
    HttpResponse response = json_response(status, std::move(body));
    if (status == http::status::service_unavailable || status == http::status::too_many_requests) {
        response.set(http::field::retry_after, "1");
    }
    return response;
}

void RemoteApi::add_routes(HttpApi& api) {
    using http::verb;
    Router& routes = api.router();
    routes.add({verb::post}, "/api/v1/write", Scope::write,
               deferred([this](const HttpCall& call, HttpRespond respond) {
                   remote_write(call, std::move(respond));
               }));
    routes.add({verb::post}, "/write", Scope::write,
               deferred([this](const HttpCall& call, HttpRespond respond) {
                   line_protocol(call, std::move(respond), Endpoint::influx_v1);
               }));
    routes.add({verb::post}, "/api/v2/write", Scope::write,
               deferred([this](const HttpCall& call, HttpRespond respond) {
                   line_protocol(call, std::move(respond), Endpoint::influx_v2);
               }));
    routes.add({verb::post}, "/api/v1/read", Scope::read,
               api.budgeted_route([this, &api](const HttpCall& call, storage::QueryBudget& b) {
                   return remote_read(call, b, api);
               }));
    // What InfluxDB clients ask before writing: GET /ping (204 with a version header), and
    // Telegraf's outputs.influxdb creating its database (a no-op: citygate has one store).
    routes.add({verb::get}, "/ping", [](const HttpCall&) {
        HttpResponse response(http::status::no_content, 11);
        response.set("X-Influxdb-Version", "1.8.10 (citygate)");
        response.set("X-Influxdb-Build", "OSS");
        return response;
    });
    routes.add({verb::post}, "/query", Scope::write, [this](const HttpCall& call) {
        std::string q;
        bool found = query_parameter(call.query, "q", q);
        if (!found) {
            // Form-encoded in the body, as Telegraf sends it.
            std::string_view body = call.request.body();
            found = query_parameter(body, "q", q);
        }
        std::string upper = q;
        for (char& c : upper)
            c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        if (!found || upper.rfind("CREATE DATABASE", 0) != 0) {
            return refuse(Endpoint::influx_v1, http::status::bad_request,
                          "only CREATE DATABASE (a no-op) is served on /query; query citygate "
                          "with PromQL on /api/v1/query");
        }
        return json_response(http::status::ok, "{\"results\":[{\"statement_id\":0}]}");
    });
}

void RemoteApi::submit(ingest::Write& write, const HttpCall& call, HttpRespond respond,
                       Endpoint endpoint) {
    std::size_t points = write.points();
    ingest::Identity anonymous;
    auto admission = unit_.series_admission(anonymous, "http:" + call.peer.to_string());
    pending_->fetch_add(1);
    auto pending = pending_;
    auto done = [this, respond, endpoint, points, pending](const ingest::Outcome& outcome) {
        pending->fetch_sub(1);
        int index = static_cast<int>(endpoint);
        if (outcome.verdict == ingest::Verdict::storage_failed) {
            CG_LOG(warn) << kEndpointNames[index] << ": storage failed: " << outcome.failure;
            return respond(
                refuse(endpoint, http::status::service_unavailable,
                       "storage failed, nothing of this request is durable: " + outcome.failure),
                nullptr);
        }
        samples_written_[index]->Increment(static_cast<double>(outcome.stored));
        if (outcome.rejected > 0) {
            // Final: late samples and samples of series over a limit are not retried.
            std::string message = std::to_string(outcome.stored) + " of " + std::to_string(points) +
                                  " samples stored; " + std::to_string(outcome.rejected) +
                                  " refused";
            if (outcome.verdict == ingest::Verdict::series_limit) {
                message +=
                    " (" + std::to_string(outcome.series_refused) + " would create series over " +
                    std::string(storage::series_limit_name(outcome.series_limit)) + " limit" + ")";
            } else {
                message += " (behind storage.out_of_order_window or retention)";
            }
            return respond(refuse(endpoint, http::status::bad_request, message), nullptr);
        }
        count(endpoint, 204);
        respond(HttpResponse(http::status::no_content, 11), nullptr);
    };
    if (!unit_.try_submit(write, std::move(done), std::move(admission))) {
        pending_->fetch_sub(1);
        respond(refuse(endpoint, http::status::service_unavailable,
                       "storage queues are full (storage.queue_capacity); retry later"),
                nullptr);
    }
}

void RemoteApi::remote_write(const HttpCall& call, HttpRespond respond) {
    const HttpRequest& request = call.request;
    auto fail = [&](http::status status, std::string_view message) {
        respond(refuse(Endpoint::remote_write, status, message), nullptr);
    };
    if (!is_remote_write_1(header(request, http::field::content_type))) {
        return fail(http::status::unsupported_media_type,
                    "remote write 1.0 needs Content-Type: application/x-protobuf "
                    "(prometheus.WriteRequest)");
    }
    if (!iequals(header(request, http::field::content_encoding), "snappy")) {
        return fail(http::status::unsupported_media_type,
                    "remote write needs Content-Encoding: snappy");
    }
    std::string_view version = header(request, "X-Prometheus-Remote-Write-Version");
    if (!version.empty() && version.rfind("0.1.", 0) != 0) {
        return fail(http::status::bad_request, "unsupported X-Prometheus-Remote-Write-Version " +
                                                   std::string(version) +
                                                   " (this receiver speaks 0.1.0)");
    }

    ingest::Write write;
    std::size_t skipped = 0;
    {
        std::lock_guard lock(mutex_);
        switch (remote::snappy_uncompress(request.body(), options_.max_decoded_body, decoded_)) {
            case remote::DecodeStatus::ok:
                break;
            case remote::DecodeStatus::corrupt:
                return fail(http::status::bad_request, "body is not snappy (block format)");
            case remote::DecodeStatus::too_large:
                return fail(http::status::payload_too_large,
                            "decompressed body over http.max_write_decoded_body (" +
                                std::to_string(options_.max_decoded_body) + " bytes)");
        }
        if (auto ec = write_decoder_.decode(decoded_)) {
            auto status =
                ec == remote::errc::too_many_samples || ec == remote::errc::too_many_series
                    ? http::status::payload_too_large
                    : http::status::bad_request;
            return fail(
                status,
                "WriteRequest: " + ec.message() +
                    (status == http::status::payload_too_large ? " (http.max_write_samples)" : ""));
        }
        skipped += write_decoder_.histograms();
        const std::int64_t now = arrival_ms(unit_);
        for (const remote::SeriesView& series : write_decoder_.series()) {
            std::string_view name;
            tags_.clear();
            for (const remote::Label& label : series.labels) {
                if (label.name == "__name__") {
                    name = label.value;
                } else if (!label.value.empty()) {  // an empty value is no label (Prometheus)
                    tags_.emplace_back(label.name, label.value);
                }
            }
            if (name.empty()) {
                return fail(http::status::bad_request, "a time series has no __name__ label");
            }
            samples_.clear();
            for (const remote::Sample& sample : series.samples) {
                // NaN (staleness markers) and infinities are not stored.
                if (!std::isfinite(sample.value)) {
                    ++skipped;
                    continue;
                }
                samples_.push_back({sample.timestamp_ms, sample.value});
            }
            ingest::SeriesSamples input{name, tags_, samples_, now};
            if (auto verdict = appender_.prepare(input, write);
                verdict != ingest::Verdict::stored) {
                return fail(http::status::bad_request, std::string("series ") + std::string(name) +
                                                           ": " +
                                                           std::string(appender_.error_detail()) +
                                                           " (" + ingest::verdict_name(verdict) +
                                                           "); nothing of this request "
                                                           "was written");
            }
        }
    }
    if (skipped) samples_skipped_[0]->Increment(static_cast<double>(skipped));
    submit(write, call, std::move(respond), Endpoint::remote_write);
}

void RemoteApi::line_protocol(const HttpCall& call, HttpRespond respond, Endpoint endpoint) {
    const HttpRequest& request = call.request;
    auto fail = [&](http::status status, std::string_view message) {
        respond(refuse(endpoint, status, message), nullptr);
    };
    std::string text;
    const char* target_name = endpoint == Endpoint::influx_v1 ? "db" : "bucket";
    if (!query_parameter(call.query, target_name, text) || text.empty()) {
        return fail(http::status::bad_request, std::string("missing parameter: ") + target_name +
                                                   " (any name: citygate keeps one store)");
    }
    payload::TimePrecision precision = payload::TimePrecision::ns;
    if (query_parameter(call.query, "precision", text) && !text.empty()) {
        // v1 spells them n, u, ms, s; v2 ns, us, ms, s.
        if (text == "n" || text == "ns") {
            precision = payload::TimePrecision::ns;
        } else if (text == "u" || text == "us" || text == "µ") {
            precision = payload::TimePrecision::us;
        } else if (text == "ms") {
            precision = payload::TimePrecision::ms;
        } else if (text == "s") {
            precision = payload::TimePrecision::s;
        } else {
            return fail(http::status::bad_request,
                        "precision must be ns, us, ms or s (n and u as InfluxDB 1.x spells them)");
        }
    }
    std::string_view encoding = header(request, http::field::content_encoding);
    bool gzip = iequals(encoding, "gzip");
    if (!gzip && !encoding.empty() && !iequals(encoding, "identity")) {
        return fail(http::status::unsupported_media_type,
                    "Content-Encoding must be gzip or identity");
    }

    ingest::Write write;
    std::size_t skipped_fields = 0;
    {
        std::lock_guard lock(mutex_);
        std::string_view body = request.body();
        if (gzip) {
            switch (remote::gzip_uncompress(body, options_.max_decoded_body, decoded_)) {
                case remote::DecodeStatus::ok:
                    break;
                case remote::DecodeStatus::corrupt:
                    return fail(http::status::bad_request, "body is not valid gzip");
                case remote::DecodeStatus::too_large:
                    return fail(http::status::payload_too_large,
                                "decompressed body over http.max_write_decoded_body (" +
                                    std::to_string(options_.max_decoded_body) + " bytes)");
            }
            body = decoded_;
        }
        readings_.clear();
        payload::SkippedFields skipped;
        const std::int64_t now = arrival_ms(unit_);
        auto bytes = std::span<const std::uint8_t>(
            reinterpret_cast<const std::uint8_t*>(body.data()), body.size());
        if (!body.empty()) {
            if (auto ec = line_decoder_.decode(payload::Format::line, bytes, "value", now,
                                               readings_, skipped, precision)) {
                unit_.metrics().payload_invalid.Increment();
                bool too_large =
                    ec == payload::errc::too_many_lines || ec == payload::errc::payload_too_large;
                return fail(too_large ? http::status::payload_too_large : http::status::bad_request,
                            std::string(line_decoder_.error_detail()) +
                                (too_large ? " (http.max_write_samples, "
                                             "http.max_write_decoded_body)"
                                           : "") +
                                "; nothing of this request was written");
            }
        }
        skipped_fields = skipped.total();
        if (skipped_fields) {
            unit_.metrics().field_skipped.Increment(static_cast<double>(skipped_fields));
        }
        for (std::size_t i = 0; i < readings_.size(); ++i) {
            payload::Reading& reading = readings_[i];
            if (auto verdict = appender_.prepare(reading, now, write);
                verdict != ingest::Verdict::stored) {
                return fail(http::status::bad_request,
                            "reading " + std::to_string(i + 1) + " (" + reading.measurement +
                                "): " + std::string(appender_.error_detail()) + " (" +
                                ingest::verdict_name(verdict) +
                                "); nothing of this request was written");
            }
        }
    }
    if (skipped_fields) {
        samples_skipped_[static_cast<int>(endpoint)]->Increment(
            static_cast<double>(skipped_fields));
    }
    submit(write, call, std::move(respond), endpoint);
}

HttpResponse RemoteApi::remote_read(const HttpCall& call, storage::QueryBudget& budget,
                                    const HttpApi& api) const {
    const HttpRequest& request = call.request;
    auto bad = [this](http::status status, std::string_view message) {
        if (status == http::status::bad_request)
            metrics_.error(ErrorKind::http_bad_request).Increment();
        return json_error(status, message);
    };
    if (!iequals(header(request, http::field::content_encoding), "snappy")) {
        return bad(http::status::unsupported_media_type,
                   "remote read needs Content-Encoding: snappy");
    }
    std::string decoded;
    switch (remote::snappy_uncompress(request.body(), options_.max_decoded_body, decoded)) {
        case remote::DecodeStatus::ok:
            break;
        case remote::DecodeStatus::corrupt:
            return bad(http::status::bad_request, "body is not snappy (block format)");
        case remote::DecodeStatus::too_large:
            return bad(http::status::payload_too_large, "decompressed read request too large");
    }
    remote::ReadRequest read;
    if (auto ec = remote::decode_read_request(decoded, read)) {
        return bad(http::status::bad_request, "ReadRequest: " + ec.message());
    }
    if (!read.accepts_samples()) {
        return bad(http::status::bad_request,
                   "this server answers remote read with SAMPLES only; the request does not "
                   "accept them");
    }
    std::string response;
    for (const remote::Query& query : read.queries) {
        storage::Selector selector;
        for (const remote::LabelMatcher& m : query.matchers) {
            storage::Matcher matcher;
            matcher.name = std::string(m.name);
            matcher.value = std::string(m.value);
            switch (m.type) {
                case remote::LabelMatcher::Type::equal:
                    matcher.op = storage::Matcher::Op::equal;
                    break;
                case remote::LabelMatcher::Type::not_equal:
                    matcher.op = storage::Matcher::Op::not_equal;
                    break;
                case remote::LabelMatcher::Type::regex:
                    matcher.op = storage::Matcher::Op::regex;
                    break;
                case remote::LabelMatcher::Type::not_regex:
                    matcher.op = storage::Matcher::Op::not_regex;
                    break;
            }
            selector.matchers.push_back(std::move(matcher));
        }
        std::int64_t end =
            query.end_ms == INT64_MAX ? query.end_ms : query.end_ms + 1;  // inclusive
        auto result = engine_.query_raw(selector, query.start_ms, end, budget);
        if (!result.is_ok()) return api.failed_query(result.status(), budget);
        std::vector<std::pair<std::string, std::vector<storage::Tag>>> keys;
        std::vector<remote::ResultSeries> series;
        keys.reserve(result.value().size());
        series.reserve(result.value().size());
        for (const storage::RawSeries& raw : result.value()) {
            auto parsed = storage::parse_series_key(raw.series);
            if (!parsed.is_ok()) continue;
            keys.push_back(std::move(parsed.value()));
        }
        std::size_t k = 0;
        for (const storage::RawSeries& raw : result.value()) {
            if (k >= keys.size()) break;
            const auto& [measurement, tags] = keys[k++];
            remote::ResultSeries one;
            one.labels.push_back({"__name__", measurement});
            for (const auto& [name, value] : tags)
                one.labels.push_back({name, value});
            std::sort(
                one.labels.begin(), one.labels.end(),
                [](const remote::Label& a, const remote::Label& b) { return a.name < b.name; });
            one.timestamps_ms = raw.timestamps_ms;
            one.values = raw.values;
            series.push_back(std::move(one));
        }
        if (auto s = budget.grow(response, remote::query_result_size(series)); !s.is_ok()) {
            return api.failed_query(s, budget);
        }
        remote::append_query_result(response, series);
    }
    std::string compressed;
    if (auto s = budget.grow(compressed, response.size() + response.size() / 6 + 64); !s.is_ok()) {
        return api.failed_query(s, budget);
    }
    remote::snappy_compress(response, compressed);
    HttpResponse answer(http::status::ok, 11);
    answer.set(http::field::content_type, "application/x-protobuf");
    answer.set(http::field::content_encoding, "snappy");
    answer.body() = std::move(compressed);
    return answer;
}

}  // namespace citygate::gateway
