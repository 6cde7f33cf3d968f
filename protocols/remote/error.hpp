// Why a Prometheus remote-write or remote-read message could not be decoded: an error_code enum
// in the project's boost category style.
#pragma once

#include <type_traits>

#include <boost/system/error_code.hpp>

namespace citygate::remote {

// Values are stable (they may be logged and counted); new ones go at the end.
enum class errc {
    truncated = 1,     // a varint, fixed field or length runs past the end of its message
    bad_varint,        // a varint longer than 10 bytes
    bad_wire_type,     // groups (3, 4) or wire types 6 and 7; or a known field of the wrong type
    too_many_series,   // more time series (or queries) than the limit
    too_many_samples,  // more samples in one request than the limit
    too_many_labels,   // more labels on one series (or matchers in one query) than the limit
    bad_matcher_type,  // a LabelMatcher type other than EQ, NEQ, RE, NRE
    bad_field_number,  // field number 0
};

const boost::system::error_category& remote_category();
inline boost::system::error_code make_error_code(errc e) {
    return {static_cast<int>(e), remote_category()};
}

}  // namespace citygate::remote

template <>
struct boost::system::is_error_code_enum<citygate::remote::errc> : std::true_type {};
