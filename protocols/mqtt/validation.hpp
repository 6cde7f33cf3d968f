// MQTT string and topic rules shared by the parser, the session engines and the gateway's ACLs.
#pragma once

#include <string_view>

namespace citygate::mqtt {

// Well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF) without
// U+0000, as MQTT-1.5.4-1 and MQTT-1.5.4-2 require of every UTF-8 encoded string.
[[nodiscard]] bool valid_utf8(std::string_view text) noexcept;

// Whether '+' or '#' occurs. A plain loop: string_view::find_first_of calls memchr per
// character, which dominated PUBLISH parsing.
[[nodiscard]] inline bool has_wildcard(std::string_view s) noexcept {
    for (char c : s) {
        if (c == '+' || c == '#') return true;
    }
    return false;
}

// A topic name a PUBLISH may carry: non-empty and without '+' or '#' (MQTT-3.3.2-2).
// The string is assumed to be valid UTF-8 already.
[[nodiscard]] bool valid_topic_name(std::string_view topic) noexcept;

// A topic filter: non-empty, '#' only as the whole last level, '+' only as a whole level
// (MQTT-4.7.1-1, MQTT-4.7.1-2). With `shared` set, "$share/{name}/{filter}" must also have a
// non-empty share name without wildcards and a non-empty filter (MQTT 5 section 4.8.2).
[[nodiscard]] bool valid_topic_filter(std::string_view filter, bool shared = true) noexcept;

// True for "$share/..." filters (MQTT 5 shared subscriptions).
[[nodiscard]] bool is_shared_filter(std::string_view filter) noexcept;

}  // namespace citygate::mqtt
