// Payload formats a topic can be configured with, the line protocol time precision, and format
// detection from the payload's first byte.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace citygate::payload {

enum class Format {
    json,    // {"ts": 1732262400000, "pm25": 35.2}: each numeric field is a measurement
    senml,   // RFC 8428 SenML JSON pack: [{"bn": "dev1:", "n": "pm25", "u": "ug/m3", "v": 35.2}]
    line,    // InfluxDB line protocol: air,device=a1 pm25=35.2,pm10=60i 1732262400000000000
    number,  // one number, named by the caller (last topic level or a template tag)
    detect,  // picked per payload by detect_format()
};

// The unit of line protocol timestamps. InfluxDB's default is nanoseconds.
enum class TimePrecision { ns, us, ms, s };

// "json", "senml", "line", "number", "detect" <-> Format; nothing for another name.
std::optional<Format> parse_format(std::string_view name);
std::string_view format_name(Format format);

// "ns", "us", "ms", "s" <-> TimePrecision; nothing for another name.
std::optional<TimePrecision> parse_precision(std::string_view name);
std::string_view precision_name(TimePrecision precision);

// Picks the format from the first byte that is not whitespace: '{' is a JSON object, '[' a SenML
// pack; otherwise a payload with no '=' is a plain number (so "NaN" is refused as a number, not
// as bad line protocol) and one with '=' is line protocol. An empty or blank payload gives
// Format::number, which refuses it as empty. Never returns Format::detect.
Format detect_format(std::span<const std::uint8_t> payload);

}  // namespace citygate::payload
