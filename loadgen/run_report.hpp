// What a run measured, as the JSON report (one object, one line) and as a self-contained HTML
// page with charts that needs no network: throughput, latency percentiles, connections.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "loadgen/client_stats.hpp"
#include "loadgen/scenario.hpp"
#include "loadgen/store_verifier.hpp"

namespace citygate::loadgen {

// Cumulative counters sampled once a second, with the latency of what completed since the
// previous sample (percentiles of that stretch's one-second histogram slots).
struct TimelineSample {
    double t_s = 0;  // since the run started
    std::uint64_t open = 0, connected = 0, sent = 0, acknowledged = 0, drops = 0, reconnected = 0;
    std::uint64_t ack_count = 0, connack_count = 0;
    double ack_p50_ms = 0, ack_p99_ms = 0, connack_p50_ms = 0, connack_p99_ms = 0;
};

// Fills each sample's latency fields from the per-second slots of `totals`: sample i covers the
// whole slots from floor(t[i-1]) to floor(t[i]); the last sample also takes every later slot, so
// each slot counts once.
void add_latency_over_time(std::vector<TimelineSample>& timeline, const StatsTotals& totals);

struct RunReport {
    Scenario scenario;
    std::string broker;    // "127.0.0.1:1883"
    std::string protocol;  // "3.1.1" or "5"
    std::string format;    // payload format
    bool tls = false;
    unsigned threads = 1;
    std::size_t source_addresses = 0;
    double seconds = 0;
    double connect_seconds = 0;               // from start until the last first CONNACK
    double cpu_user_s = 0, cpu_system_s = 0;  // the generator's own CPU time
    StatsTotals totals;
    std::vector<TimelineSample> timeline;
    std::optional<VerifyResult> verify;
    bool complete = false;  // every client connected, every reading acknowledged, verified
};

// One line of JSON, no trailing newline.
std::string to_json(const RunReport& report);
// A complete HTML document; charts are drawn by inline script from the embedded JSON.
std::string to_html(const RunReport& report);

}  // namespace citygate::loadgen
