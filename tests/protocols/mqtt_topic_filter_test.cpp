// Topic filter matching (MQTT 3.1.1 and 5.0, section 4.7).
#include <catch2/catch.hpp>

#include "protocols/mqtt/topic_filter.hpp"

using citygate::mqtt::topic_matches;

TEST_CASE("MQTT topic filters match as the specification says") {
    CHECK(topic_matches("city/+/air/#", "city/pudong/air/a-1"));
    CHECK(topic_matches("city/+/air/#", "city/pudong/air"));
    CHECK(topic_matches("#", "anything/at/all"));
    CHECK(topic_matches("a/b", "a/b"));
    CHECK_FALSE(topic_matches("a/b", "a"));
    CHECK_FALSE(topic_matches("a", "a/b"));
    CHECK_FALSE(topic_matches("a/+", "a/b/c"));
    CHECK_FALSE(topic_matches("city/+/air/#", "city/pudong/water/w-1"));
    CHECK_FALSE(topic_matches("#", "$SYS/uptime"));  // MQTT-4.7.2-1
    CHECK(topic_matches("$SYS/#", "$SYS/uptime"));
}
