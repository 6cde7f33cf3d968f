// Measurement and tag names from SenML, line protocol and topics, mapped into the series key
// grammar (storage/selector.cpp): first character [A-Za-z_:], then also [0-9.-].
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace citygate::payload::detail {

// Longer names are skipped and counted as bad_name (as JSON field names are).
constexpr std::size_t max_name_length = 128;

inline bool is_ascii_letter(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
inline bool is_ascii_digit(char c) {
    return c >= '0' && c <= '9';
}

// Letters, digits, '_', '.' and '-' are kept: the JSON decoder stores field names such as
// `pm2.5` or `no-2` unchanged and the key grammar admits them, so one sensor quantity lands in
// one series whatever the format. Every other byte maps to '_': ':' (Prometheus keeps colons
// for recording rules), '/', spaces, commas, '=', and each byte of a non-ASCII character.
inline bool is_kept_name_char(char c) {
    return is_ascii_letter(c) || is_ascii_digit(c) || c == '_' || c == '.' || c == '-';
}

// Appends `raw` mapped as above. When `out` is empty and `raw` starts with a digit, '.' or '-',
// a '_' goes first, since the key grammar needs a letter or '_' there ("3303/0/5700" becomes
// "_3303_0_5700").
inline void append_mapped_name(std::string& out, std::string_view raw) {
    if (out.empty() && !raw.empty() && !is_ascii_letter(raw[0]) && raw[0] != '_' &&
        is_kept_name_char(raw[0]))
        out.push_back('_');
    for (char c : raw)
        out.push_back(is_kept_name_char(c) ? c : '_');
}

}  // namespace citygate::payload::detail
