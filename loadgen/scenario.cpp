// The scenario presets.
#include "loadgen/scenario.hpp"

#include <array>

namespace citygate::loadgen {
namespace {

constexpr std::array<std::string_view, 4> kNames = {"smoke", "peak-hour", "million-idle",
                                                    "connect-storm"};

}  // namespace

std::span<const std::string_view> scenario_names() {
    return kNames;
}

std::optional<Scenario> scenario_preset(std::string_view name) {
    Scenario s;
    s.name = std::string(name);
    if (name == "smoke") {
        s.clients = 10;
        s.messages = 20;
        s.inflight = 4;
        s.connect_rate = 100;
        s.duration_s = 30;
        return s;
    }
    if (name == "peak-hour") {
        s.clients = 20'000;
        s.messages = 6;  // 60 s at one reading every 10 s
        s.interval_ms = 10'000;
        s.connect_rate = 2'000;
        s.duration_s = 70;
        s.reconnect = true;
        return s;
    }
    if (name == "million-idle") {
        s.clients = 1'000'000;
        s.messages = 0;
        s.hold = true;
        s.keep_alive_s = 60;
        s.connect_rate = 20'000;
        s.duration_s = 120;
        s.drain_s = 5;
        s.reconnect = true;
        s.bind = "127.0.0.1-127.0.0.32";
        return s;
    }
    if (name == "connect-storm") {
        s.clients = 50'000;
        s.messages = 1;
        s.connect_rate = 0;
        s.duration_s = 60;
        s.reconnect = true;
        s.bind = "127.0.0.1-127.0.0.4";
        return s;
    }
    return std::nullopt;
}

}  // namespace citygate::loadgen
