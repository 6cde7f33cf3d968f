// Load scenarios: the knobs of a run, and the named presets operators start from. Command-line
// flags override whatever a preset sets.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace citygate::loadgen {

struct Scenario {
    std::string name = "custom";
    std::uint64_t clients = 10;
    std::uint64_t messages = 100;  // per sensor; the run's bound in count
    unsigned qos = 1;
    std::uint32_t inflight = 16;        // max-throughput shape: window per connection
    std::uint64_t interval_ms = 0;      // rate shape: one reading per sensor per interval; 0: max
    std::uint32_t connect_rate = 1000;  // new connections per second; 0: all at once
    std::uint32_t keep_alive_s = 60;
    bool hold = false;              // stay connected after the last reading until the end
    std::uint64_t duration_s = 60;  // the run's bound in time: publishing stops then
    std::uint64_t drain_s = 10;     // then this long for acks in flight, then connections close
    bool reconnect = false;         // reconnect dropped connections with back-off
    std::string bind;               // source addresses, see parse_source_addresses()
};

// smoke: 10 sensors x 20 readings, QoS 1, for a quick check that a gateway works.
// peak-hour: 20 000 sensors, one reading every 10 s each, QoS 1, ramped at 2 000/s, 60 s.
// million-idle: 1 000 000 connections from 127.0.0.1-127.0.0.32 that only keep alive, 120 s.
// connect-storm: 50 000 sensors connecting at once from 127.0.0.1-127.0.0.4, one reading each,
//   reconnecting with back-off when refused.
std::optional<Scenario> scenario_preset(std::string_view name);
std::span<const std::string_view> scenario_names();

}  // namespace citygate::loadgen
