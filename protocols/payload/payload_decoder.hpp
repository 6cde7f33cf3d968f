// The gateway's one entry point for payloads: JSON object, SenML JSON, InfluxDB line protocol or
// a plain number, chosen per topic or detected, decoded into readings. Pure code: the caller
// passes the arrival time and the name a nameless value gets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/system/error_code.hpp>

#include "protocols/payload/detail/json_document.hpp"
#include "protocols/payload/detail/text_formats.hpp"
#include "protocols/payload/error.hpp"
#include "protocols/payload/format.hpp"
#include "protocols/payload/reading.hpp"

namespace citygate::payload {

struct PayloadLimits {
    std::size_t max_payload = 256 * 1024;  // bytes, refused before parsing
    std::size_t max_records = 10'000;      // SenML records in one pack
    std::size_t max_lines = 10'000;        // line protocol lines (not blank, not comments)
};

// Decodes payloads, reusing its parse buffers across calls: after warm-up a payload allocates
// only its output readings. Not thread safe: one decoder per thread.
//
// Names. Measurement and tag names from SenML, line protocol and `default_measurement` keep
// letters, digits, '_', '.' and '-'; every other byte (':', '/', spaces, ...) becomes '_', and a
// name starting with a digit, '.' or '-' gets a leading '_' (the series key grammar). Names over
// 128 bytes are skipped as bad_name. JSON object field names are kept as they are.
//
// Values. Only finite numbers are stored. Strings, booleans, null and SenML vs/vb/vd values are
// skipped and counted as non_numeric; NaN, infinities and numbers beyond a double or a 64-bit
// integer as out_of_range.
//
// JSON object: each numeric field is a reading named after it; `ts` (integer ms) stamps them.
//
// SenML (RFC 8428 JSON): base fields bn, bt, bu, bv, bs apply to their record and the ones after
// it until replaced. A record gives a reading `bn+n` (mapped) of value bv+v, and, when it has a
// sum, one named `bn+n` + "_sum" of value bs+s. The resolved name must be a valid SenML name
// (§4.5.1) or the record is skipped as bad_name; a record with neither bn nor n takes
// `default_measurement`. The unit (u, else bu) becomes the tag `unit`, so one name in several
// units (RFC 8428 §5.1.4: %RH, lon, lat) stays several series. Time is bt+t seconds; below 2^28 it
// is relative to `arrival_ms` (§4.5.3: 0 or absent is "now", -5 is five seconds before), else
// absolute; it is rounded to ms. A bad time, a bver above 10 or an unknown label ending in '_'
// refuses the pack. Records of base fields only yield nothing.
//
// Line protocol: `measurement[,tag=v...] field=value[,field=value...] [timestamp]`, one point a
// line; blank lines and '#' comments skipped; "\r\n" accepted. Escapes: "\," "\ " (and "\=" in
// keys and tag values) and "\\". A field becomes the reading `measurement_field`, or just
// `measurement` for a field called `value` (the InfluxDB and Telegraf convention for Prometheus).
// Floats, integers (`12i`) and unsigned (`12u`) are stored as doubles (integers beyond 2^53
// round). The timestamp is in `precision` (InfluxDB's default ns), truncated to ms; without one
// the point takes `arrival_ms`. The line's tags go into each reading's tags. Any syntax error
// refuses the whole payload (the error says which line and column, error_detail()), so a batch
// is stored whole or not at all.
//
// Plain number: one number with optional surrounding whitespace ("35.2", "-1e3", "+7"), named
// `default_measurement`.
class PayloadDecoder {
  public:
    explicit PayloadDecoder(PayloadLimits limits = {});

    // Appends the readings of `payload` in `format` to `out`; tags from the payload are in each
    // reading's `tags`, topic tags are the caller's (merge_tags puts topic tags first). On error
    // appends nothing and leaves `skipped` alone; on success adds the skipped fields to it.
    // `default_measurement` names plain numbers and nameless SenML records (the caller picks it:
    // the topic's last level, or a template tag called `measurement`). `precision` is the unit of
    // line protocol timestamps.
    boost::system::error_code decode(Format format, std::span<const std::uint8_t> payload,
                                     std::string_view default_measurement, std::int64_t arrival_ms,
                                     Readings& out, SkippedFields& skipped,
                                     TimePrecision precision = TimePrecision::ns);

    // After a failed decode: where and why, for a log line ("line 2, column 9: expected '='
    // after the field key" for line protocol; the error's message otherwise).
    std::string_view error_detail() const { return detail_; }

    const PayloadLimits& limits() const { return limits_; }

  private:
    boost::system::error_code dispatch(Format format, std::span<const std::uint8_t> payload,
                                       std::string_view default_measurement,
                                       std::int64_t arrival_ms, Readings& out,
                                       SkippedFields& skipped, TimePrecision precision);

    PayloadLimits limits_;
    detail::JsonDocument json_;
    detail::LineScratch line_;
    std::string detail_;
};

}  // namespace citygate::payload
