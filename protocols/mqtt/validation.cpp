// UTF-8 and topic validation per the MQTT specifications (sections 1.5.4 and 4.7).
#include "protocols/mqtt/validation.hpp"

#include <cstdint>

namespace citygate::mqtt {

bool valid_utf8(std::string_view text) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    const auto* end = p + text.size();
    while (p < end) {
        // Topics and ids are almost always ASCII: skip 8 of those at a time.
        while (end - p >= 8) {
            std::uint64_t word;
            __builtin_memcpy(&word, p, 8);
            if ((word & 0x8080808080808080ULL) != 0) break;
            // A zero byte is U+0000: find it with the classic "has zero byte" trick.
            if (((word - 0x0101010101010101ULL) & ~word & 0x8080808080808080ULL) != 0) {
                return false;
            }
            p += 8;
        }
        if (p >= end) break;
        const unsigned char c = *p;
        if (c < 0x80) {
            if (c == 0) return false;
            ++p;
            continue;
        }
        int extra;
        std::uint32_t code;
        if (c >= 0xC2 && c <= 0xDF) {
            extra = 1;
            code = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            extra = 2;
            code = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            extra = 3;
            code = c & 0x07;
        } else {
            return false;  // continuation byte first, overlong C0/C1, or beyond F4
        }
        if (end - p <= extra) return false;
        for (int i = 1; i <= extra; ++i) {
            const unsigned char cc = p[i];
            if ((cc & 0xC0) != 0x80) return false;
            code = (code << 6) | (cc & 0x3F);
        }
        if (extra == 2 && (code < 0x800 || (code >= 0xD800 && code <= 0xDFFF))) return false;
        if (extra == 3 && (code < 0x10000 || code > 0x10FFFF)) return false;
        p += extra + 1;
    }
    return true;
}

bool valid_topic_name(std::string_view topic) noexcept {
    return !topic.empty() && !has_wildcard(topic);
}

bool is_shared_filter(std::string_view filter) noexcept {
    return filter.starts_with("$share/");
}

namespace {

bool valid_plain_filter(std::string_view filter) noexcept {
    if (filter.empty()) return false;
    for (std::size_t i = 0; i < filter.size(); ++i) {
        const char c = filter[i];
        if (c != '+' && c != '#') continue;
        const bool level_start = i == 0 || filter[i - 1] == '/';
        const bool level_end = i + 1 == filter.size() || filter[i + 1] == '/';
        if (!level_start || !level_end) return false;
        if (c == '#' && i + 1 != filter.size()) return false;
    }
    return true;
}

}  // namespace

bool valid_topic_filter(std::string_view filter, bool shared) noexcept {
    if (shared && is_shared_filter(filter)) {
        const std::string_view rest = filter.substr(7);
        const auto slash = rest.find('/');
        if (slash == std::string_view::npos || slash == 0) return false;
        const std::string_view name = rest.substr(0, slash);
        if (has_wildcard(name)) return false;
        return valid_plain_filter(rest.substr(slash + 1));
    }
    return valid_plain_filter(filter);
}

}  // namespace citygate::mqtt
