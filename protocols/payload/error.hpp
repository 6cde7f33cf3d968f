// Why a payload could not be decoded: an error_code enum in the project's boost category style.
#pragma once

#include <type_traits>

#include <boost/system/error_code.hpp>

namespace citygate::payload {

// Values are stable (they may be logged and counted); new ones go at the end.
enum class errc {
    empty_payload = 1,
    invalid_json,
    not_an_object,
    no_numeric_field,  // a payload with nothing storable in it
    bad_timestamp,     // a time that is negative, not an integer where one is due, or overflows
    payload_too_large,
    invalid_number,     // a number that does not fit a double (1e999)
    invalid_senml,      // not an array of record objects, or a field of the wrong type
    unsupported_senml,  // bver above 10, or a must-understand label (ending in '_')
    too_many_records,   // more SenML records than the limit
    invalid_line,       // line protocol syntax; PayloadDecoder::error_detail() says where
    too_many_lines,     // more line protocol lines than the limit
    not_a_number,       // a plain-number payload that is not one number
    no_measurement,     // a plain number (or nameless SenML record) and no name for it
};

const boost::system::error_category& payload_category();
inline boost::system::error_code make_error_code(errc e) {
    return {static_cast<int>(e), payload_category()};
}

}  // namespace citygate::payload

template <>
struct boost::system::is_error_code_enum<citygate::payload::errc> : std::true_type {};
