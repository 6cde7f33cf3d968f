// The simdjson parse shared by the JSON object and SenML decoders, and the two walks over the
// parsed document. Internal to protocols/payload.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include <simdjson.h>
#include <boost/system/error_code.hpp>

#include "protocols/payload/reading.hpp"

namespace citygate::payload::detail {

// Holds the simdjson parser and a padded copy buffer, reused across payloads. Not thread safe.
class JsonDocument {
  public:
    explicit JsonDocument(std::size_t max_payload);

    // Parses `payload` (its size already checked against the limit). `root` is valid until the
    // next parse. Errors: invalid_json, invalid_number.
    boost::system::error_code parse(std::span<const std::uint8_t> payload,
                                    simdjson::dom::element& root);

  private:
    std::vector<char> padded_;
    // The DOM parser picks the best SIMD kernel at run time; on-demand would be fixed at compile
    // time to the portable fallback for a generic x86-64 build.
    simdjson::dom::parser parser_;
};

// A JSON object: each numeric field a reading, `ts` (ms) stamping them all. Appends nothing on
// error; adds to `skipped` only on success.
boost::system::error_code decode_json_object(simdjson::dom::element root, std::int64_t arrival_ms,
                                             Readings& out, SkippedFields& skipped);

// An RFC 8428 SenML pack; see PayloadDecoder for the rules. Appends nothing on error; adds to
// `skipped` only on success.
boost::system::error_code decode_senml(simdjson::dom::element root,
                                       std::string_view default_measurement,
                                       std::size_t max_records, std::int64_t arrival_ms,
                                       Readings& out, SkippedFields& skipped);

}  // namespace citygate::payload::detail
