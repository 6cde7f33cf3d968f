// Per-second latency slots: each sample lands in the second of the run it completed in, threads
// merge slot by slot, and memory stays bounded however long the run.
#include <catch2/catch.hpp>

#include "loadgen/latency_timeline.hpp"
#include "loadgen/run_report.hpp"

using namespace citygate::loadgen;
using namespace std::chrono_literals;

namespace {

const auto origin = LatencyTimeline::clock::time_point{} + 1000s;

}  // namespace

TEST_CASE("a latency sample lands in the slot of the second it completed in") {
    LatencyTimeline timeline;
    timeline.start(origin);
    timeline.record(origin + 200ms, 1ms);
    timeline.record(origin + 2999ms, 3ms);
    timeline.record(origin + 3s, 4ms);
    REQUIRE(timeline.slots() == 4);
    CHECK(timeline.merged(0, 1).count() == 1);
    CHECK(timeline.merged(1, 2).count() == 0);
    CHECK(timeline.merged(2, 3).max() == 3ms);
    CHECK(timeline.merged(3, 4).max() == 4ms);
    CHECK(timeline.merged(0, 100).count() == 3);  // slots past the end are empty
}

TEST_CASE("a latency sample from before the origin counts in the first slot") {
    LatencyTimeline timeline;
    timeline.start(origin);
    timeline.record(origin - 5s, 1ms);
    CHECK(timeline.slots() == 1);
    CHECK(timeline.merged(0, 1).count() == 1);
}

TEST_CASE("latency samples after the last slot land in it, so memory stays bounded") {
    LatencyTimeline timeline;
    timeline.start(origin);
    timeline.record(origin + std::chrono::hours(100), 1ms);
    CHECK(timeline.slots() == LatencyTimeline::max_slots);
    CHECK(timeline.merged(LatencyTimeline::max_slots - 1, LatencyTimeline::max_slots).count() == 1);
}

TEST_CASE("latency timelines of several threads merge slot by slot") {
    LatencyTimeline a, b;
    a.start(origin);
    b.start(origin);
    a.record(origin + 100ms, 1ms);
    b.record(origin + 100ms, 2ms);
    b.record(origin + 4500ms, 9ms);
    a.merge(b);
    REQUIRE(a.slots() == 5);
    CHECK(a.merged(0, 1).count() == 2);
    CHECK(a.merged(0, 1).max() == 2ms);
    CHECK(a.merged(4, 5).max() == 9ms);
}

TEST_CASE("timeline samples taken late or close together still count each latency slot once") {
    StatsTotals totals;
    totals.ack_by_second.start(origin);
    for (int second = 0; second < 5; ++second)
        totals.ack_by_second.record(origin + std::chrono::seconds(second) + 500ms, 1ms);
    // Samples at 1.02 s, then 2.6 s (the sampler stalled), 2.61 s (catching up), and the final
    // one at 3.7 s, which also takes slot 4: a reading acknowledged after the last tick.
    std::vector<TimelineSample> timeline(5);
    double times[] = {0, 1.02, 2.6, 2.61, 3.7};
    for (std::size_t i = 0; i < 5; ++i)
        timeline[i].t_s = times[i];
    add_latency_over_time(timeline, totals);
    CHECK(timeline[1].ack_count == 1);  // slot 0
    CHECK(timeline[2].ack_count == 1);  // slot 1
    CHECK(timeline[3].ack_count == 0);  // nothing new
    CHECK(timeline[4].ack_count == 3);  // slots 2, 3, 4
}
