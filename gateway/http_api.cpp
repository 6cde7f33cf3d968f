// Routes of the HTTP API.
#include "gateway/http_api.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>

namespace citygate::gateway {
namespace {

namespace http = boost::beast::http;

HttpResponse json_response(http::status status, std::string body) {
    HttpResponse response(status, 11);
    response.set(http::field::content_type, "application/json");
    response.body() = std::move(body);
    return response;
}

HttpResponse json_error(http::status status, std::string_view message) {
    std::string body = "{\"status\":\"error\",\"error\":";
    append_json_string(body, message);
    body += '}';
    return json_response(status, std::move(body));
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

void append_json_string(std::string& out, std::string_view text) {
    out += '"';
    for (char c : text) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (static_cast<unsigned char>(c) < 0x20) {
                    char escaped[8];
                    std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
                    out += escaped;
                } else {
                    out += c;
                }
        }
    }
    out += '"';
}

HttpApi::HttpApi(const storage::Engine& engine, Metrics& metrics, const std::atomic<bool>& ready)
    : engine_(engine), metrics_(metrics), ready_(ready) {}

HttpResponse HttpApi::handle(const HttpRequest& request) const {
    std::string_view target(request.target().data(), request.target().size());
    std::size_t question = target.find('?');
    std::string_view path = target.substr(0, question);
    std::string_view query =
        question == std::string_view::npos ? std::string_view{} : target.substr(question + 1);

    if (request.method() != http::verb::get && request.method() != http::verb::head) {
        HttpResponse response = json_error(http::status::method_not_allowed, "use GET");
        response.set(http::field::allow, "GET, HEAD");
        return response;
    }
    if (path == "/healthz") return json_response(http::status::ok, "{\"status\":\"ok\"}");
    if (path == "/readyz") {
        return ready_.load() ? json_response(http::status::ok, "{\"status\":\"ready\"}")
                             : json_error(http::status::service_unavailable, "not ready");
    }
    if (path == "/metrics") {
        HttpResponse response(http::status::ok, 11);
        response.set(http::field::content_type, "text/plain; version=0.0.4");
        response.body() = metrics_.serialize();
        return response;
    }
    if (path == "/api/v1/query_range") return query_range(query);
    if (path == "/api/v1/series") return series(query);
    return json_error(http::status::not_found, "no such endpoint: " + std::string(path));
}

HttpResponse HttpApi::query_range(std::string_view query) const {
    std::string selector_text, start_text, end_text;
    if (!query_parameter(query, "series", selector_text) || selector_text.empty()) {
        metrics_.error(ErrorKind::http_bad_request).Increment();
        return json_error(http::status::bad_request, "missing parameter: series");
    }
    std::int64_t start = 0, end = 0;
    if (!query_parameter(query, "start", start_text) || !parse_int64(start_text, start)) {
        metrics_.error(ErrorKind::http_bad_request).Increment();
        return json_error(http::status::bad_request, "start must be an integer of ms since epoch");
    }
    if (!query_parameter(query, "end", end_text) || !parse_int64(end_text, end)) {
        metrics_.error(ErrorKind::http_bad_request).Increment();
        return json_error(http::status::bad_request, "end must be an integer of ms since epoch");
    }
    if (end < start) {
        metrics_.error(ErrorKind::http_bad_request).Increment();
        return json_error(http::status::bad_request, "end is before start");
    }
    auto selector = storage::Selector::parse(selector_text);
    if (!selector.is_ok()) {
        metrics_.error(ErrorKind::http_bad_request).Increment();
        return json_error(http::status::bad_request, "series: " + selector.status().message());
    }
    // The API's end is inclusive, storage ranges are half-open.
    auto result = engine_.query_raw(selector.value(), start, end == INT64_MAX ? end : end + 1);
    if (!result.is_ok()) return json_error(status_for(result.status()), result.status().message());

    std::string body = "{\"status\":\"success\",\"data\":{\"result\":[";
    bool first_series = true;
    for (const storage::RawSeries& series : result.value()) {
        if (!first_series) body += ',';
        first_series = false;
        body += "{\"series\":";
        append_json_string(body, series.series);
        body += ",\"metric\":{";
        auto parsed = storage::parse_series_key(series.series);
        if (parsed.is_ok()) {
            body += "\"__name__\":";
            append_json_string(body, parsed.value().first);
            for (const auto& [name, value] : parsed.value().second) {
                body += ',';
                append_json_string(body, name);
                body += ':';
                append_json_string(body, value);
            }
        }
        body += "},\"values\":[";
        for (std::size_t i = 0; i < series.timestamps_ms.size(); ++i) {
            if (i) body += ',';
            body += '[';
            body += std::to_string(series.timestamps_ms[i]);
            body += ',';
            append_number(body, series.values[i]);
            body += ']';
        }
        body += "]}";
    }
    body += "]}}";
    return json_response(http::status::ok, std::move(body));
}

HttpResponse HttpApi::series(std::string_view query) const {
    std::string selector_text;
    if (!query_parameter(query, "match", selector_text) || selector_text.empty()) {
        metrics_.error(ErrorKind::http_bad_request).Increment();
        return json_error(http::status::bad_request, "missing parameter: match");
    }
    auto selector = storage::Selector::parse(selector_text);
    if (!selector.is_ok()) {
        metrics_.error(ErrorKind::http_bad_request).Increment();
        return json_error(http::status::bad_request, "match: " + selector.status().message());
    }
    auto result = engine_.series(selector.value());
    if (!result.is_ok()) return json_error(status_for(result.status()), result.status().message());
    std::string body = "{\"status\":\"success\",\"data\":[";
    for (std::size_t i = 0; i < result.value().size(); ++i) {
        if (i) body += ',';
        append_json_string(body, result.value()[i]);
    }
    body += "]}";
    return json_response(http::status::ok, std::move(body));
}

}  // namespace citygate::gateway
