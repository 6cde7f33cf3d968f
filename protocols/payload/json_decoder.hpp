// Decodes a JSON object payload into readings: every numeric field becomes one reading named
// after the field, `ts` (integer ms since epoch) optionally stamps them all.
// Example: {"ts": 1732262400000, "pm25": 35.2, "pm10": 60} -> pm25=35.2, pm10=60.
// PayloadDecoder (payload_decoder.hpp) covers this and the other formats behind one call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <boost/system/error_code.hpp>

#include "protocols/payload/detail/json_document.hpp"
#include "protocols/payload/error.hpp"
#include "protocols/payload/reading.hpp"

namespace citygate::payload {

// Holds the simdjson parser and a padded copy buffer, reused across payloads. Not thread safe:
// one decoder per thread.
class JsonDecoder {
  public:
    explicit JsonDecoder(std::size_t max_payload = 256 * 1024);

    // Appends the readings of `payload` to `out`, stamped with `ts` or else `arrival_ms`.
    // On error nothing is appended. Skipped fields are added to `skipped`.
    boost::system::error_code decode(std::span<const std::uint8_t> payload, std::int64_t arrival_ms,
                                     Readings& out, SkippedFields& skipped);

  private:
    std::size_t max_payload_;
    detail::JsonDocument document_;
};

}  // namespace citygate::payload
