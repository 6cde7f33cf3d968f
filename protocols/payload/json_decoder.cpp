// JSON object payloads decoded with simdjson's on-demand parser.
#include "protocols/payload/json_decoder.hpp"

#include <cstring>

namespace citygate::payload {
namespace {

constexpr std::size_t max_measurement_length = 128;

class PayloadCategory : public boost::system::error_category {
  public:
    const char* name() const noexcept override { return "citygate.payload"; }
    std::string message(int value) const override {
        switch (static_cast<errc>(value)) {
            case errc::empty_payload:
                return "empty payload";
            case errc::invalid_json:
                return "invalid JSON";
            case errc::not_an_object:
                return "JSON payload is not an object";
            case errc::no_numeric_field:
                return "no numeric field in payload";
            case errc::bad_timestamp:
                return "ts is not a non-negative integer of milliseconds";
            case errc::payload_too_large:
                return "payload too large";
            case errc::invalid_number:
                return "number does not fit a double";
        }
        return "unknown payload error";
    }
};

}  // namespace

const boost::system::error_category& payload_category() {
    static const PayloadCategory category;
    return category;
}

JsonDecoder::JsonDecoder(std::size_t max_payload)
    : max_payload_(max_payload), parser_(max_payload) {}

boost::system::error_code JsonDecoder::decode(std::span<const std::uint8_t> payload,
                                              std::int64_t arrival_ms, std::vector<Reading>& out,
                                              SkippedFields& skipped) {
    if (payload.empty()) return errc::empty_payload;
    if (payload.size() > max_payload_) return errc::payload_too_large;

    // simdjson reads up to SIMDJSON_PADDING bytes past the end; the packet buffer gives no such
    // guarantee, so copy into a buffer that does.
    padded_.resize(payload.size() + simdjson::SIMDJSON_PADDING);
    std::memcpy(padded_.data(), payload.data(), payload.size());
    simdjson::padded_string_view view(padded_.data(), payload.size(), padded_.size());

    simdjson::dom::element doc;
    if (auto error = parser_.parse(padded_.data(), payload.size(), false).get(doc)) {
        return error == simdjson::NUMBER_ERROR || error == simdjson::NUMBER_OUT_OF_RANGE
                   ? errc::invalid_number
                   : errc::invalid_json;
    }
    simdjson::dom::object object;
    if (doc.get_object().get(object)) return errc::not_an_object;

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
        if (key.empty() || key.size() > max_measurement_length) {
            ++found.bad_name;
            continue;
        }
        out.push_back({std::string(key), number, 0});
    }
    if (out.size() == first) return errc::no_numeric_field;

    for (std::size_t i = first; i < out.size(); ++i)
        out[i].timestamp_ms = ts;
    skipped.non_numeric += found.non_numeric;
    skipped.bad_name += found.bad_name;
    return {};
}

}  // namespace citygate::payload
