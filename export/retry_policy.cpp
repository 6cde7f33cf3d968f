// Back-off, jitter and Retry-After for the remote-write sender.
#include "export/retry_policy.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <string>

namespace citygate::exports {

Outcome classify_status(unsigned status) {
    if (status >= 200 && status < 300) return Outcome::acknowledged;
    if (status == 0 || status == 429 || status >= 500) return Outcome::retry;
    return Outcome::drop;
}

Backoff::Backoff(std::chrono::milliseconds min, std::chrono::milliseconds max, std::uint64_t seed)
    : min_(std::max(min, std::chrono::milliseconds(1))),
      max_(std::max(max, min_)),
      step_(min_),
      state_(seed | 1) {}

std::chrono::milliseconds Backoff::next() {
    // xorshift64*: enough randomness for jitter, no <random> state to carry.
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    std::uint64_t random = state_ * 0x2545F4914F6CDD1DULL;
    auto step = static_cast<std::uint64_t>(step_.count());
    auto delay = std::chrono::milliseconds(step - step / 2 + random % (step / 2 + 1));
    step_ = std::min(max_, step_ * 2);
    return delay;
}

std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value,
                                                           std::int64_t now_unix_ms) {
    while (!value.empty() && value.front() == ' ')
        value.remove_prefix(1);
    while (!value.empty() && value.back() == ' ')
        value.remove_suffix(1);
    if (value.empty()) return std::nullopt;
    std::int64_t seconds = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
    if (ec == std::errc() && end == value.data() + value.size()) {
        if (seconds < 0) return std::nullopt;
        return std::chrono::milliseconds(std::min<std::int64_t>(seconds, 86'400 * 365) * 1000);
    }
    // IMF-fixdate, the form RFC 9110 requires senders to use: "Sun, 06 Nov 1994 08:49:37 GMT".
    std::tm tm{};
    std::string text(value);
    char weekday[4] = {}, month[4] = {}, zone[4] = {};
    int day = 0, year = 0, hour = 0, minute = 0, second = 0;
    if (std::sscanf(text.c_str(), "%3s, %d %3s %d %d:%d:%d %3s", weekday, &day, month, &year, &hour,
                    &minute, &second, zone) != 8 ||
        std::string_view(zone) != "GMT") {
        return std::nullopt;
    }
    static constexpr std::array<std::string_view, 12> months = {
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    auto found = std::find(months.begin(), months.end(), std::string_view(month));
    if (found == months.end()) return std::nullopt;
    tm.tm_year = year - 1900;
    tm.tm_mon = static_cast<int>(found - months.begin());
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = minute;
    tm.tm_sec = second;
    std::int64_t at_ms = static_cast<std::int64_t>(timegm(&tm)) * 1000;
    return std::chrono::milliseconds(std::max<std::int64_t>(0, at_ms - now_unix_ms));
}

std::chrono::milliseconds retry_delay(std::chrono::milliseconds backoff,
                                      std::optional<std::chrono::milliseconds> retry_after) {
    auto delay = retry_after ? std::max(backoff, *retry_after) : backoff;
    return std::min<std::chrono::milliseconds>(delay, std::chrono::hours(1));
}

}  // namespace citygate::exports
