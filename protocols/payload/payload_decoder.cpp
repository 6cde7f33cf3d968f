// Dispatch from a format (or detection) to the decoder for it, with the shared limits.
#include "protocols/payload/payload_decoder.hpp"

namespace citygate::payload {

PayloadDecoder::PayloadDecoder(PayloadLimits limits) : limits_(limits), json_(limits.max_payload) {}

boost::system::error_code PayloadDecoder::decode(Format format,
                                                 std::span<const std::uint8_t> payload,
                                                 std::string_view default_measurement,
                                                 std::int64_t arrival_ms, Readings& out,
                                                 SkippedFields& skipped, TimePrecision precision) {
    detail_.clear();
    auto ec = dispatch(format, payload, default_measurement, arrival_ms, out, skipped, precision);
    if (ec && detail_.empty()) detail_ = ec.message();
    return ec;
}

boost::system::error_code PayloadDecoder::dispatch(
    Format format, std::span<const std::uint8_t> payload, std::string_view default_measurement,
    std::int64_t arrival_ms, Readings& out, SkippedFields& skipped, TimePrecision precision) {
    if (payload.empty()) return errc::empty_payload;
    if (payload.size() > limits_.max_payload) return errc::payload_too_large;
    if (format == Format::detect) format = detect_format(payload);

    std::string_view text(reinterpret_cast<const char*>(payload.data()), payload.size());
    simdjson::dom::element root;
    switch (format) {
        case Format::json:
            if (auto ec = json_.parse(payload, root)) return ec;
            return detail::decode_json_object(root, arrival_ms, out, skipped);
        case Format::senml:
            if (auto ec = json_.parse(payload, root)) return ec;
            return detail::decode_senml(root, default_measurement, limits_.max_records, arrival_ms,
                                        out, skipped);
        case Format::line:
            return detail::decode_line_protocol(text, precision, limits_.max_lines, arrival_ms, out,
                                                skipped, line_, detail_);
        case Format::number:
        case Format::detect:
            return detail::decode_number(text, default_measurement, arrival_ms, out);
    }
    return errc::not_a_number;
}

}  // namespace citygate::payload
