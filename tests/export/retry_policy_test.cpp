// Which answers are retried, and how long the sender waits.
#include <catch2/catch.hpp>

#include "export/retry_policy.hpp"

using namespace citygate::exports;
using std::chrono::milliseconds;

TEST_CASE("2xx is acknowledged, 429 5xx and no answer are retried, other 4xx dropped") {
    CHECK(classify_status(200) == Outcome::acknowledged);
    CHECK(classify_status(204) == Outcome::acknowledged);
    CHECK(classify_status(0) == Outcome::retry);
    CHECK(classify_status(429) == Outcome::retry);
    CHECK(classify_status(500) == Outcome::retry);
    CHECK(classify_status(503) == Outcome::retry);
    CHECK(classify_status(400) == Outcome::drop);
    CHECK(classify_status(401) == Outcome::drop);
    CHECK(classify_status(413) == Outcome::drop);
    CHECK(classify_status(302) == Outcome::drop);
}

TEST_CASE("back-off doubles up to its cap, each delay jittered within [step/2, step]") {
    Backoff backoff(milliseconds(100), milliseconds(1000), 42);
    std::int64_t steps[] = {100, 200, 400, 800, 1000, 1000, 1000};
    for (std::int64_t step : steps) {
        auto delay = backoff.next().count();
        CHECK(delay >= step / 2);
        CHECK(delay <= step);
    }
    backoff.reset();
    CHECK(backoff.next().count() <= 100);
}

TEST_CASE("jitter spreads senders that failed together") {
    Backoff a(milliseconds(1000), milliseconds(60000), 1);
    Backoff b(milliseconds(1000), milliseconds(60000), 2);
    int same = 0;
    for (int i = 0; i < 6; ++i)
        same += a.next() == b.next();
    CHECK(same < 6);
}

TEST_CASE("Retry-After: seconds or an HTTP date, nothing for anything else") {
    CHECK(parse_retry_after("120", 0) == milliseconds(120'000));
    CHECK(parse_retry_after(" 3 ", 0) == milliseconds(3000));
    // 784111777 s = Sun, 06 Nov 1994 08:49:37 GMT
    CHECK(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784'111'767'000) ==
          milliseconds(10'000));
    CHECK(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784'111'787'000) == milliseconds(0));
    CHECK(!parse_retry_after("", 0));
    CHECK(!parse_retry_after("soon", 0));
    CHECK(!parse_retry_after("-5", 0));
    CHECK(!parse_retry_after("Sun, 06 Nov 1994 08:49:37 PST", 0));
}

TEST_CASE("the wait is the back-off, or Retry-After when longer, at most an hour") {
    CHECK(retry_delay(milliseconds(500), std::nullopt) == milliseconds(500));
    CHECK(retry_delay(milliseconds(500), milliseconds(3000)) == milliseconds(3000));
    CHECK(retry_delay(milliseconds(5000), milliseconds(3000)) == milliseconds(5000));
    CHECK(retry_delay(milliseconds(500), std::chrono::hours(5)) == std::chrono::hours(1));
}
