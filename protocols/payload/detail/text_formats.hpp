// The text formats: InfluxDB line protocol and the plain number. Internal to protocols/payload.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <boost/system/error_code.hpp>

#include "protocols/payload/format.hpp"
#include "protocols/payload/reading.hpp"

namespace citygate::payload::detail {

// Buffers the line protocol decoder reuses across payloads, so that a payload allocates only
// its output readings.
struct LineScratch {
    ReadingTags tags;         // the current line's tags
    std::string unescaped;    // a key or value with its escapes removed
    std::string tag_key;      // the current tag key, mapped
    std::string measurement;  // the current line's measurement, mapped
};

// More tags on one line, or longer tag keys or values, make the line invalid.
constexpr std::size_t max_line_tags = 64;
constexpr std::size_t max_tag_value_length = 1024;

// Appends the readings of every line of `text`; see PayloadDecoder for the rules. On error
// appends nothing and writes "line N, column C: what" to `detail`; adds to `skipped` only on
// success.
boost::system::error_code decode_line_protocol(std::string_view text, TimePrecision precision,
                                               std::size_t max_lines, std::int64_t arrival_ms,
                                               Readings& out, SkippedFields& skipped,
                                               LineScratch& scratch, std::string& detail);

// One number, whitespace around it allowed, named `measurement` (mapped like other names).
boost::system::error_code decode_number(std::string_view text, std::string_view measurement,
                                        std::int64_t arrival_ms, Readings& out);

}  // namespace citygate::payload::detail
