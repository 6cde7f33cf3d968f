// Payload formatting with std::to_chars (shortest representation that round-trips).
#include "loadgen/payload_format.hpp"

#include <charconv>

namespace citygate::loadgen {

void format_json(std::int64_t ts_ms, std::span<const Reading> readings, std::string& out) {
    char number[32];
    out.assign("{\"ts\":");
    auto [ts_end, ts_ec] = std::to_chars(number, number + sizeof number, ts_ms);
    out.append(number, ts_end);
    for (const Reading& reading : readings) {
        out += ",\"";
        out += reading.measurement;
        out += "\":";
        auto [end, ec] = std::to_chars(number, number + sizeof number, reading.value);
        out.append(number, end);
    }
    out += '}';
}

}  // namespace citygate::loadgen
