// JSON object payloads decoded with simdjson's DOM parser.
#include "protocols/payload/json_decoder.hpp"

#include <cmath>
#include <cstring>

#include "protocols/payload/detail/names.hpp"

namespace citygate::payload {
namespace detail {

JsonDocument::JsonDocument(std::size_t max_payload) : parser_(max_payload) {}

boost::system::error_code JsonDocument::parse(std::span<const std::uint8_t> payload,
                                              simdjson::dom::element& root) {
    // simdjson reads up to SIMDJSON_PADDING bytes past the end; the packet buffer gives no such
    // guarantee, so copy into a buffer that does. The buffer only grows.
    if (padded_.size() < payload.size() + simdjson::SIMDJSON_PADDING)
        padded_.resize(payload.size() + simdjson::SIMDJSON_PADDING);
    std::memcpy(padded_.data(), payload.data(), payload.size());
    std::memset(padded_.data() + payload.size(), 0, simdjson::SIMDJSON_PADDING);
    if (auto error = parser_.parse(padded_.data(), payload.size(), false).get(root)) {
        return error == simdjson::NUMBER_ERROR || error == simdjson::NUMBER_OUT_OF_RANGE
                   ? errc::invalid_number
                   : errc::invalid_json;
    }
    return {};
}

boost::system::error_code decode_json_object(simdjson::dom::element root, std::int64_t arrival_ms,
                                             Readings& out, SkippedFields& skipped) {
    simdjson::dom::object object;
    if (root.get_object().get(object)) return errc::not_an_object;

    std::size_t first = out.size();
    SkippedFields found;
    std::int64_t ts = arrival_ms;
    for (auto [key, value] : object) {
        if (key == "ts") {
            std::int64_t stamp = 0;
            if (value.get_int64().get(stamp) || stamp < 0) {
                out.resize(first);
                return errc::bad_timestamp;
            }
            ts = stamp;
            continue;
        }
        double number = 0;
        if (!value.is_number() || value.get_double().get(number)) {
            ++found.non_numeric;
            continue;
        }
        if (!std::isfinite(number)) {
            ++found.out_of_range;
            continue;
        }
        if (key.empty() || key.size() > max_name_length) {
            ++found.bad_name;
            continue;
        }
        Reading& reading = out.emplace_back();
        reading.measurement = key;
        reading.value = number;
    }
    if (out.size() == first) return errc::no_numeric_field;

    for (std::size_t i = first; i < out.size(); ++i)
        out[i].timestamp_ms = ts;
    skipped.non_numeric += found.non_numeric;
    skipped.bad_name += found.bad_name;
    skipped.out_of_range += found.out_of_range;
    return {};
}

}  // namespace detail

JsonDecoder::JsonDecoder(std::size_t max_payload)
    : max_payload_(max_payload), document_(max_payload) {}

boost::system::error_code JsonDecoder::decode(std::span<const std::uint8_t> payload,
                                              std::int64_t arrival_ms, Readings& out,
                                              SkippedFields& skipped) {
    if (payload.empty()) return errc::empty_payload;
    if (payload.size() > max_payload_) return errc::payload_too_large;
    simdjson::dom::element root;
    if (auto ec = document_.parse(payload, root)) return ec;
    return detail::decode_json_object(root, arrival_ms, out, skipped);
}

}  // namespace citygate::payload
