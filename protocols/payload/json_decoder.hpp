// Decodes a JSON object payload into readings: every numeric field becomes one reading named
// after the field, `ts` (integer ms since epoch) optionally stamps them all.
// Example: {"ts": 1732262400000, "pm25": 35.2, "pm10": 60} -> pm25=35.2, pm10=60.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <simdjson.h>
#include <boost/system/error_code.hpp>

namespace citygate::payload {

struct Reading {
    std::string measurement;
    double value = 0;
    std::int64_t timestamp_ms = 0;
};

enum class errc {
    empty_payload = 1,
    invalid_json,
    not_an_object,
    no_numeric_field,  // an object with nothing storable in it
    bad_timestamp,     // `ts` present but not a non-negative integer of ms
    payload_too_large,
    invalid_number,  // a number that does not fit a double (1e999)
};

const boost::system::error_category& payload_category();
inline boost::system::error_code make_error_code(errc e) {
    return {static_cast<int>(e), payload_category()};
}

// Fields skipped inside an otherwise good payload, by why.
struct SkippedFields {
    std::size_t non_numeric = 0;  // strings, booleans, null, arrays, objects
    std::size_t bad_name = 0;     // empty or overlong field names
};

// Holds the simdjson parser and a padded copy buffer, reused across payloads. Not thread safe:
// one decoder per thread.
class JsonDecoder {
  public:
    explicit JsonDecoder(std::size_t max_payload = 256 * 1024);

    // Appends the readings of `payload` to `out`, stamped with `ts` or else `arrival_ms`.
    // On error nothing is appended. Skipped fields are added to `skipped`.
    boost::system::error_code decode(std::span<const std::uint8_t> payload, std::int64_t arrival_ms,
                                     std::vector<Reading>& out, SkippedFields& skipped);

  private:
    std::size_t max_payload_;
    std::vector<char> padded_;
    // The DOM parser picks the best SIMD kernel at run time; on-demand would be fixed at compile
    // time to the portable fallback for a generic x86-64 build.
    simdjson::dom::parser parser_;
};

}  // namespace citygate::payload

template <>
struct boost::system::is_error_code_enum<citygate::payload::errc> : std::true_type {};
