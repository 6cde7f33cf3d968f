// What the MQTT aggregate export publishes for one (district, measurement) window: its topic and
// its JSON payload. Pure code: no client, no clock.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace citygate::gateway {

// The figures of one closed window, [window_start_ms, window_end_ms).
struct AggregateWindow {
    std::string_view district;
    std::string_view measurement;
    std::int64_t window_start_ms = 0;
    std::int64_t window_end_ms = 0;
    std::uint64_t count = 0;
    double avg = 0;
    double min = 0;
    double max = 0;
};

// `<prefix>/<district>/<measurement>`. Each name stays one topic level and the topic stays
// publishable: '/', '+', '#' and NUL inside a name become '_', and an empty name is "_". An
// empty prefix gives `<district>/<measurement>`; a trailing '/' on the prefix is not doubled.
std::string aggregate_topic(std::string_view prefix, std::string_view district,
                            std::string_view measurement);

// {"district":..,"measurement":..,"window_start":RFC 3339,"window_end":..,"count":N,
//  "avg":x,"min":y,"max":z}; a value that is not finite is null (JSON has no infinity).
std::string aggregate_json(const AggregateWindow& window);

// UTC, whole seconds unless the time has milliseconds: "2026-12-03T05:34:00Z",
// "2026-12-03T05:34:00.250Z".
std::string rfc3339_utc(std::int64_t ms);

// Paho's form of a url config::validate accepted: mqtt://host[:port] becomes tcp://host:port
// (port 1883 by default), mqtts:// becomes ssl:// (8883). Anything else is returned unchanged.
std::string paho_server_uri(std::string_view url);

// `pattern` with every "{host}" replaced by `host`.
std::string expand_client_id(std::string_view pattern, std::string_view host);

}  // namespace citygate::gateway
