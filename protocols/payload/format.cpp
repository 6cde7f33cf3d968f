// Format names for the configuration, and detection.
#include "protocols/payload/format.hpp"

#include <cstring>

namespace citygate::payload {

std::optional<Format> parse_format(std::string_view name) {
    for (Format format :
         {Format::json, Format::senml, Format::line, Format::number, Format::detect}) {
        if (format_name(format) == name) return format;
    }
    return std::nullopt;
}

std::string_view format_name(Format format) {
    switch (format) {
        case Format::json:
            return "json";
        case Format::senml:
            return "senml";
        case Format::line:
            return "line";
        case Format::number:
            return "number";
        case Format::detect:
            return "detect";
    }
    return "unknown";
}

std::optional<TimePrecision> parse_precision(std::string_view name) {
    for (TimePrecision precision :
         {TimePrecision::ns, TimePrecision::us, TimePrecision::ms, TimePrecision::s}) {
        if (precision_name(precision) == name) return precision;
    }
    return std::nullopt;
}

std::string_view precision_name(TimePrecision precision) {
    switch (precision) {
        case TimePrecision::ns:
            return "ns";
        case TimePrecision::us:
            return "us";
        case TimePrecision::ms:
            return "ms";
        case TimePrecision::s:
            return "s";
    }
    return "unknown";
}

Format detect_format(std::span<const std::uint8_t> payload) {
    std::size_t i = 0;
    while (i < payload.size() &&
           (payload[i] == ' ' || payload[i] == '\t' || payload[i] == '\r' || payload[i] == '\n'))
        ++i;
    if (i == payload.size()) return Format::number;
    if (payload[i] == '{') return Format::json;
    if (payload[i] == '[') return Format::senml;
    bool has_equals = std::memchr(payload.data() + i, '=', payload.size() - i) != nullptr;
    return has_equals ? Format::line : Format::number;
}

}  // namespace citygate::payload
