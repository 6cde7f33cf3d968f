// Topic and JSON text of the MQTT aggregate export.
#include "gateway/export/aggregate_message.hpp"

#include <cmath>
#include <cstdio>
#include <ctime>

#include "gateway/json_text.hpp"

namespace citygate::gateway {
namespace {

void append_level(std::string& out, std::string_view name) {
    if (name.empty()) {
        out += '_';
        return;
    }
    for (char c : name)
        out += c == '/' || c == '+' || c == '#' || c == '\0' ? '_' : c;
}

void append_number(std::string& out, double value) {
    if (!std::isfinite(value)) {
        out += "null";
        return;
    }
    char buffer[32];
    int n = std::snprintf(buffer, sizeof buffer, "%.17g", value);
    out.append(buffer, static_cast<std::size_t>(n));
}

}  // namespace

std::string aggregate_topic(std::string_view prefix, std::string_view district,
                            std::string_view measurement) {
    std::string topic;
    topic.reserve(prefix.size() + district.size() + measurement.size() + 2);
    topic += prefix;
    if (!topic.empty() && topic.back() != '/') topic += '/';
    append_level(topic, district);
    topic += '/';
    append_level(topic, measurement);
    return topic;
}

std::string rfc3339_utc(std::int64_t ms) {
    std::int64_t seconds = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
    int millis = static_cast<int>(ms - seconds * 1000);
    std::time_t t = static_cast<std::time_t>(seconds);
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char buffer[40];
    std::size_t n = std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%S", &tm);
    std::string out(buffer, n);
    if (millis) {
        std::snprintf(buffer, sizeof buffer, ".%03d", millis);
        out += buffer;
    }
    out += 'Z';
    return out;
}

std::string aggregate_json(const AggregateWindow& window) {
    std::string out = "{\"district\":";
    append_json_string(out, window.district);
    out += ",\"measurement\":";
    append_json_string(out, window.measurement);
    out += ",\"window_start\":\"";
    out += rfc3339_utc(window.window_start_ms);
    out += "\",\"window_end\":\"";
    out += rfc3339_utc(window.window_end_ms);
    out += "\",\"count\":";
    out += std::to_string(window.count);
    out += ",\"avg\":";
    append_number(out, window.avg);
    out += ",\"min\":";
    append_number(out, window.min);
    out += ",\"max\":";
    append_number(out, window.max);
    out += '}';
    return out;
}

std::string paho_server_uri(std::string_view url) {
    std::string_view scheme, port;
    if (url.starts_with("mqtt://")) {
        scheme = "tcp://";
        port = ":1883";
    } else if (url.starts_with("mqtts://")) {
        scheme = "ssl://";
        port = ":8883";
    } else {
        return std::string(url);
    }
    std::string_view authority = url.substr(url.find("://") + 3);
    // A port is there when the last ':' follows any IPv6 literal's ']'.
    std::size_t colon = authority.rfind(':');
    std::size_t bracket = authority.rfind(']');
    bool has_port =
        colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket);
    std::string out(scheme);
    out += authority;
    if (!has_port) out += port;
    return out;
}

std::string expand_client_id(std::string_view pattern, std::string_view host) {
    std::string out;
    constexpr std::string_view token = "{host}";
    for (std::size_t at = 0;;) {
        std::size_t found = pattern.find(token, at);
        out += pattern.substr(at, found == std::string_view::npos ? found : found - at);
        if (found == std::string_view::npos) return out;
        out += host;
        at = found + token.size();
    }
}

}  // namespace citygate::gateway
