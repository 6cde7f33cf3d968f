// The payload error category: one message per errc value.
#include "protocols/payload/error.hpp"

#include <string>

namespace citygate::payload {
namespace {

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
                return "timestamp is negative, malformed or out of range";
            case errc::payload_too_large:
                return "payload too large";
            case errc::invalid_number:
                return "number does not fit a double";
            case errc::invalid_senml:
                return "not a SenML pack (an array of record objects with typed fields)";
            case errc::unsupported_senml:
                return "SenML version above 10 or a must-understand field";
            case errc::too_many_records:
                return "too many SenML records";
            case errc::invalid_line:
                return "invalid line protocol";
            case errc::too_many_lines:
                return "too many line protocol lines";
            case errc::not_a_number:
                return "payload is not a single number";
            case errc::no_measurement:
                return "no measurement name for the value";
        }
        return "unknown payload error";
    }
};

}  // namespace

const boost::system::error_category& payload_category() {
    static const PayloadCategory category;
    return category;
}

}  // namespace citygate::payload
