// What the remote-write sender does with an answer, and how long it waits before trying again:
// exponential back-off with jitter, and the receiver's Retry-After. Pure code: the clock and the
// random source are the caller's.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

namespace citygate::exports {

// Remote write 1.0: 2xx is acknowledged; 5xx and 429 (and no answer at all: status 0) are
// retried; any other status is a refusal of the batch itself, which a retry cannot fix.
enum class Outcome { acknowledged, retry, drop };
Outcome classify_status(unsigned status);

// Delays min, 2 min, 4 min, ... capped at max, each drawn uniformly from [d/2, d] ("equal
// jitter": senders that failed together do not retry together, and a wait is never below half
// of its step). reset() after a success. Not thread safe.
class Backoff {
  public:
    Backoff(std::chrono::milliseconds min, std::chrono::milliseconds max, std::uint64_t seed);
    // The next delay; each call doubles the step until max.
    std::chrono::milliseconds next();
    void reset() { step_ = min_; }
    std::chrono::milliseconds step() const { return step_; }

  private:
    std::chrono::milliseconds min_, max_, step_;
    std::uint64_t state_;
};

// A Retry-After header value: delay-seconds ("120") or an HTTP-date
// ("Fri, 31 Dec 1999 23:59:59 GMT", taken against `now_unix_ms`). Nothing when it is neither;
// a date in the past is 0.
std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value,
                                                           std::int64_t now_unix_ms);

// How long to wait before the next try: the back-off delay, or the receiver's Retry-After when
// it asks for longer; never beyond an hour, whatever the header says.
std::chrono::milliseconds retry_delay(std::chrono::milliseconds backoff,
                                      std::optional<std::chrono::milliseconds> retry_after);

}  // namespace citygate::exports
