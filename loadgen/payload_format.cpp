// Payload formatting with std::to_chars (shortest representation that round-trips).
#include "loadgen/payload_format.hpp"

#include <charconv>

namespace citygate::loadgen {
namespace {

template <typename Number>
void append_number(std::string& out, Number value) {
    char number[32];
    auto [end, ec] = std::to_chars(number, number + sizeof number, value);
    out.append(number, end);
}

}  // namespace

std::optional<PayloadFormat> parse_payload_format(std::string_view name) {
    if (name == "json") return PayloadFormat::json;
    if (name == "senml") return PayloadFormat::senml;
    if (name == "line") return PayloadFormat::line;
    return std::nullopt;
}

std::string_view payload_format_name(PayloadFormat format) {
    switch (format) {
        case PayloadFormat::json:
            return "json";
        case PayloadFormat::senml:
            return "senml";
        case PayloadFormat::line:
            return "line";
    }
    return "json";
}

void format_json(std::int64_t ts_ms, std::span<const Reading> readings, std::string& out) {
    out.assign("{\"ts\":");
    append_number(out, ts_ms);
    for (const Reading& reading : readings) {
        out += ",\"";
        out += reading.measurement;
        out += "\":";
        append_number(out, reading.value);
    }
    out += '}';
}

std::string_view senml_unit(std::string_view measurement) {
    if (measurement == "pm25" || measurement == "pm10" || measurement == "no2") return "ug/m3";
    if (measurement == "temperature") return "Cel";
    if (measurement == "humidity") return "%RH";
    if (measurement == "noise") return "dB";
    if (measurement == "traffic") return "count/min";
    if (measurement == "level") return "m";
    if (measurement == "power") return "kW";
    return "";
}

void format_senml(const Sensor& sensor, std::int64_t ts_ms, std::span<const Reading> readings,
                  std::string& out) {
    // A char, not "[": GCC 12 at -O3 warns -Wrestrict on assigning a 1-char literal (GCC PR105329).
    out.assign(1, '[');
    bool first = true;
    for (const Reading& reading : readings) {
        if (first) {
            out += "{\"bn\":\"urn:dev:city:";
            out += sensor.device;
            out += ":\",\"bt\":";
            // SenML times are seconds; a double holds ms since the epoch exactly.
            append_number(out, static_cast<double>(ts_ms) / 1000.0);
            out += ',';
        } else {
            out += ",{";
        }
        first = false;
        out += "\"n\":\"";
        out += reading.measurement;
        out += "\",\"u\":\"";
        out += senml_unit(reading.measurement);
        out += "\",\"v\":";
        append_number(out, reading.value);
        out += '}';
    }
    out += ']';
}

void format_line_protocol(const Sensor& sensor, std::int64_t ts_ms,
                          std::span<const Reading> readings, std::string& out) {
    // District and device names are [a-z0-9-]: nothing to escape.
    out.assign(type_name(sensor.type));
    out += ",district=";
    out += sensor.district;
    out += ",device=";
    out += sensor.device;
    char separator = ' ';
    for (const Reading& reading : readings) {
        out += separator;
        separator = ',';
        out += reading.measurement;
        out += '=';
        append_number(out, reading.value);
    }
    out += ' ';
    append_number(out, ts_ms);
    out += "000000";
}

void format_payload(PayloadFormat format, const Sensor& sensor, std::int64_t ts_ms,
                    std::span<const Reading> readings, std::string& out) {
    switch (format) {
        case PayloadFormat::json:
            return format_json(ts_ms, readings, out);
        case PayloadFormat::senml:
            return format_senml(sensor, ts_ms, readings, out);
        case PayloadFormat::line:
            return format_line_protocol(sensor, ts_ms, readings, out);
    }
}

}  // namespace citygate::loadgen
