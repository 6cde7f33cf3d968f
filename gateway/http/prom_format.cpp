// Prometheus' HTTP API wire format (see prom_format.hpp).
#include "gateway/http/prom_format.hpp"

#include <charconv>
#include <cmath>
#include <ctime>

#include "gateway/http/http_api.hpp"
#include "gateway/json_text.hpp"
#include "promql/parser.hpp"

namespace citygate::gateway {
namespace {

namespace http = boost::beast::http;

template <typename... T>
struct Overloaded : T... {
    using T::operator()...;
};
// Clang 14 (the fuzz build) does not deduce aggregate template arguments by itself.
template <typename... T>
Overloaded(T...) -> Overloaded<T...>;

void append_pair_time_value(std::string& out, std::int64_t t, double v) {
    out += '[';
    append_prom_time(out, t);
    out += ",\"";
    append_prom_float(out, v);
    out += "\"]";
}

// Parses `digits` exactly as a non-negative integer.
bool parse_int(std::string_view digits, int& value) {
    if (digits.empty()) return false;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    return ec == std::errc() && end == digits.data() + digits.size();
}

std::optional<std::int64_t> parse_rfc3339(std::string_view text) {
    // YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)
    if (text.size() < 20 || text[4] != '-' || text[7] != '-' ||
        (text[10] != 'T' && text[10] != 't') || text[13] != ':' || text[16] != ':') {
        return std::nullopt;
    }
    std::tm tm{};
    int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
    if (!parse_int(text.substr(0, 4), year) || !parse_int(text.substr(5, 2), month) ||
        !parse_int(text.substr(8, 2), day) || !parse_int(text.substr(11, 2), hour) ||
        !parse_int(text.substr(14, 2), minute) || !parse_int(text.substr(17, 2), second)) {
        return std::nullopt;
    }
    if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) {
        return std::nullopt;
    }
    std::size_t at = 19;
    std::int64_t fraction_ms = 0;
    if (at < text.size() && text[at] == '.') {
        ++at;
        std::size_t digits = 0;
        std::int64_t scale = 100;
        while (at < text.size() && text[at] >= '0' && text[at] <= '9') {
            fraction_ms += (text[at] - '0') * scale;  // sub-ms digits are dropped
            scale /= 10;
            ++at;
            ++digits;
        }
        if (digits == 0) return std::nullopt;
    }
    if (at >= text.size()) return std::nullopt;
    std::int64_t offset_s = 0;
    if (text[at] == 'Z' || text[at] == 'z') {
        ++at;
    } else if (text[at] == '+' || text[at] == '-') {
        int oh = 0, om = 0;
        if (text.size() != at + 6 || text[at + 3] != ':' ||
            !parse_int(text.substr(at + 1, 2), oh) || !parse_int(text.substr(at + 4, 2), om) ||
            oh > 23 || om > 59) {
            return std::nullopt;
        }
        offset_s = (oh * 3600 + om * 60) * (text[at] == '+' ? 1 : -1);
        at += 6;
    } else {
        return std::nullopt;
    }
    if (at != text.size()) return std::nullopt;
    tm.tm_year = year - 1900;
    tm.tm_mon = month - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = minute;
    tm.tm_sec = second;
    std::int64_t seconds = ::timegm(&tm) - offset_s;
    return seconds * 1000 + fraction_ms;
}

// Seconds with an optional fraction (Go's ParseFloat as Prometheus uses it: also "1e9", "Inf"
// is refused since it is no time), in ms rounded as Prometheus does (to the ms below).
std::optional<double> parse_seconds(std::string_view text) {
    if (text.empty()) return std::nullopt;
    double value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(value)) {
        return std::nullopt;
    }
    return value;
}

// Limits of a time Prometheus can take: its minTime/maxTime are ±2^63 ns about 292 years.
constexpr double kMaxSeconds = 9'223'372'036.0;

}  // namespace

void append_prom_float(std::string& out, double value) {
    if (std::isnan(value)) {
        out += "NaN";
        return;
    }
    if (std::isinf(value)) {
        out += value > 0 ? "+Inf" : "-Inf";
        return;
    }
    char buffer[400];  // the longest fixed double (denormals) has ~330 characters
    auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::fixed);
    if (ec != std::errc()) {
        // Cannot happen with this buffer; fall back to the general shortest form.
        end = std::to_chars(buffer, buffer + sizeof buffer, value).ptr;
    }
    out.append(buffer, end);
}

void append_prom_time(std::string& out, std::int64_t ms) {
    std::int64_t seconds = ms / 1000;
    std::int64_t fraction = ms % 1000;
    if (fraction < 0) {
        fraction += 1000;
        seconds -= 1;
    }
    if (seconds < 0 && fraction != 0) {
        // -0.5 s: Prometheus writes the float value; sign then magnitude.
        out += '-';
        std::int64_t magnitude = -ms;
        out += std::to_string(magnitude / 1000);
        fraction = magnitude % 1000;
    } else {
        out += std::to_string(seconds);
    }
    if (fraction == 0) return;
    char digits[4] = {static_cast<char>('0' + fraction / 100),
                      static_cast<char>('0' + fraction / 10 % 10),
                      static_cast<char>('0' + fraction % 10), 0};
    std::size_t n = 3;
    while (n > 0 && digits[n - 1] == '0')
        --n;
    out += '.';
    out.append(digits, n);
}

void append_prom_metric(std::string& out, const promql::Labels& labels) {
    out += '{';
    bool first = true;
    for (const auto& label : labels.items()) {
        if (!first) out += ',';
        first = false;
        append_json_string(out, label.name);
        out += ':';
        append_json_string(out, label.value);
    }
    out += '}';
}

void append_prom_value(std::string& out, const promql::Value& value) {
    std::visit(Overloaded{[&](const promql::Scalar& s) {
                              out += "{\"resultType\":\"scalar\",\"result\":";
                              append_pair_time_value(out, s.t, s.v);
                              out += '}';
                          },
                          [&](const promql::String& s) {
                              out += "{\"resultType\":\"string\",\"result\":[";
                              append_prom_time(out, s.t);
                              out += ',';
                              append_json_string(out, s.v);
                              out += "]}";
                          },
                          [&](const promql::Vector& v) {
                              out += "{\"resultType\":\"vector\",\"result\":[";
                              for (std::size_t i = 0; i < v.size(); ++i) {
                                  if (i) out += ',';
                                  out += "{\"metric\":";
                                  append_prom_metric(out, v[i].labels);
                                  out += ",\"value\":";
                                  append_pair_time_value(out, v[i].t, v[i].v);
                                  out += '}';
                              }
                              out += "]}";
                          },
                          [&](const promql::Matrix& m) {
                              out += "{\"resultType\":\"matrix\",\"result\":[";
                              for (std::size_t i = 0; i < m.size(); ++i) {
                                  if (i) out += ',';
                                  out += "{\"metric\":";
                                  append_prom_metric(out, m[i].labels);
                                  out += ",\"values\":[";
                                  for (std::size_t p = 0; p < m[i].points.size(); ++p) {
                                      if (p) out += ',';
                                      append_pair_time_value(out, m[i].points[p].t,
                                                             m[i].points[p].v);
                                  }
                                  out += "]}";
                              }
                              out += "]}";
                          }},
               value);
}

std::size_t prom_value_json_bytes(const promql::Value& value) {
    // A label escapes each byte into at most 6; a point [t,"v"] with a comma takes at most 30
    // for the time and ~330 for a denormal value, but values of sensors are short: 60 covers
    // every value up to 1e30 with 17 digits, and longer ones grow the string past the charge
    // (the budget is a bound on what is held, so an estimate per point is what it takes).
    constexpr std::size_t kPoint = 60;
    auto labels_bytes = [](const promql::Labels& labels) {
        std::size_t n = 16;
        for (const auto& l : labels.items())
            n += 6 * (l.name.size() + l.value.size()) + 6;
        return n;
    };
    return std::visit(
        Overloaded{[&](const promql::Scalar&) -> std::size_t { return 128; },
                   [&](const promql::String& s) -> std::size_t { return 128 + 6 * s.v.size(); },
                   [&](const promql::Vector& v) -> std::size_t {
                       std::size_t n = 64;
                       for (const auto& s : v)
                           n += labels_bytes(s.labels) + kPoint + 32;
                       return n;
                   },
                   [&](const promql::Matrix& m) -> std::size_t {
                       std::size_t n = 64;
                       for (const auto& s : m)
                           n += labels_bytes(s.labels) + kPoint * s.points.size() + 32;
                       return n;
                   }},
        value);
}

const char* prom_error_type(PromError error) {
    switch (error) {
        case PromError::bad_data:
            return "bad_data";
        case PromError::execution:
            return "execution";
        case PromError::timeout:
            return "timeout";
        case PromError::canceled:
            return "canceled";
        case PromError::internal:
            return "internal";
        case PromError::unavailable:
            return "unavailable";
        case PromError::not_found:
            return "not_found";
    }
    return "internal";
}

http::status prom_error_status(PromError error) {
    switch (error) {
        case PromError::bad_data:
            return http::status::bad_request;
        case PromError::execution:
            return http::status::unprocessable_entity;
        case PromError::timeout:
        case PromError::canceled:
        case PromError::unavailable:
            return http::status::service_unavailable;
        case PromError::not_found:
            return http::status::not_found;
        case PromError::internal:
            return http::status::internal_server_error;
    }
    return http::status::internal_server_error;
}

HttpResponse prom_success(std::string_view data_json, const std::vector<std::string>& warnings) {
    std::string body;
    body.reserve(data_json.size() + 64);
    body += "{\"status\":\"success\",\"data\":";
    body += data_json;
    if (!warnings.empty()) {
        body += ",\"warnings\":[";
        for (std::size_t i = 0; i < warnings.size(); ++i) {
            if (i) body += ',';
            append_json_string(body, warnings[i]);
        }
        body += ']';
    }
    body += '}';
    return json_response(http::status::ok, std::move(body));
}

HttpResponse prom_failure(PromError error, std::string_view message) {
    std::string body = "{\"status\":\"error\",\"errorType\":\"";
    body += prom_error_type(error);
    body += "\",\"error\":";
    append_json_string(body, message);
    body += '}';
    return json_response(prom_error_status(error), std::move(body));
}

std::optional<PromParams> PromParams::parse(const HttpRequest& request, std::string_view query,
                                            std::string& error) {
    PromParams params;
    auto add_all = [&](std::string_view text) {
        while (!text.empty()) {
            std::size_t amp = text.find('&');
            std::string_view pair = text.substr(0, amp);
            if (!pair.empty()) {
                std::size_t eq = pair.find('=');
                std::string name, value;
                if (!url_decode(pair.substr(0, eq), name) ||
                    !url_decode(
                        eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1),
                        value)) {
                    error = "invalid parameter encoding: " + std::string(pair.substr(0, 64));
                    return false;
                }
                params.values_.emplace(name, value);
                params.ordered_.emplace_back(std::move(name), std::move(value));
            }
            if (amp == std::string_view::npos) break;
            text.remove_prefix(amp + 1);
        }
        return true;
    };
    if (!add_all(query)) return std::nullopt;
    if (request.method() == http::verb::post) {
        auto header = request[http::field::content_type];
        std::string_view type(header.data(), header.size());
        if (type.substr(0, type.find(';')) == "application/x-www-form-urlencoded") {
            if (!add_all(request.body())) return std::nullopt;
        }
    }
    return params;
}

std::optional<std::string> PromParams::get(std::string_view name) const {
    for (const auto& [n, v] : ordered_) {
        if (n == name) return v;
    }
    return std::nullopt;
}

std::vector<std::string> PromParams::all(std::string_view name) const {
    std::vector<std::string> out;
    for (const auto& [n, v] : ordered_) {
        if (n == name) out.push_back(v);
    }
    return out;
}

bool is_prometheus_request(const HttpRequest& request, std::string_view query) {
    if (request.method() == http::verb::post) return true;
    std::string ignored;
    return query_parameter(query, "query", ignored) || query_parameter(query, "match[]", ignored) ||
           query_parameter(query, "match%5B%5D", ignored);
}

std::optional<std::int64_t> parse_prom_time(std::string_view text) {
    if (auto seconds = parse_seconds(text)) {
        if (std::fabs(*seconds) > kMaxSeconds) return std::nullopt;
        // Prometheus rounds to the ms (math.Round of the fraction's ns, then ms).
        return static_cast<std::int64_t>(std::llround(*seconds * 1000.0));
    }
    return parse_rfc3339(text);
}

std::optional<std::int64_t> parse_prom_duration(std::string_view text) {
    if (auto seconds = parse_seconds(text)) {
        if (*seconds < 0 || *seconds > kMaxSeconds) return std::nullopt;
        return static_cast<std::int64_t>(std::llround(*seconds * 1000.0));
    }
    return promql::parse_duration(text);
}

}  // namespace citygate::gateway
