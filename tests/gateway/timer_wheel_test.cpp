// The per-thread timer wheel behind MQTT connect and keep-alive timeouts: never early, at most a
// tick late, cancellable, re-armable from its own expiry, and safe to destroy in either order.
#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "gateway/mqtt/timer_wheel.hpp"

using namespace citygate::gateway;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// A timed object as the wheel sees one: a hook, and what happened to it.
struct Probe : TimerWheel::Hook {
    std::vector<Clock::time_point> expiries;
    int rearm = 0;  // arm again this many times from the expiry itself
    std::chrono::milliseconds period{0};
    TimerWheel* wheel = nullptr;
};

void on_expired(TimerWheel::Hook& hook) {
    auto& probe = static_cast<Probe&>(hook);
    probe.expiries.push_back(Clock::now());
    if (probe.rearm > 0) {
        --probe.rearm;
        probe.wheel->arm(probe, probe.period);
    }
}

// Runs `io` until it has nothing left to do (the wheel stops ticking once no hook is armed) or
// `limit` passes.
void run_for(boost::asio::io_context& io, std::chrono::milliseconds limit) {
    io.restart();
    io.run_for(limit);
}

}  // namespace

TEST_CASE("a timer wheel hook expires once, no earlier than asked and about a tick later") {
    boost::asio::io_context io;
    TimerWheel wheel(io, on_expired, 10ms);
    Probe probe;
    auto armed = Clock::now();
    wheel.arm(probe, 120ms);
    CHECK(probe.armed());
    run_for(io, 2s);
    REQUIRE(probe.expiries.size() == 1);
    CHECK(probe.expiries[0] - armed >= 120ms);
    CHECK(probe.expiries[0] - armed < 120ms + 10ms + 100ms);  // a tick, and a loaded machine
    CHECK_FALSE(probe.armed());
}

TEST_CASE("a cancelled hook does not expire, and re-arming moves its expiry") {
    boost::asio::io_context io;
    TimerWheel wheel(io, on_expired, 10ms);
    Probe cancelled, moved, other;
    wheel.arm(cancelled, 50ms);
    wheel.arm(moved, 50ms);
    wheel.arm(other, 60ms);
    TimerWheel::cancel(cancelled);
    CHECK_FALSE(cancelled.armed());
    auto rearmed = Clock::now();
    wheel.arm(moved, 300ms);  // a packet arrived: another keep-alive period
    run_for(io, 2s);
    CHECK(cancelled.expiries.empty());
    REQUIRE(other.expiries.size() == 1);
    REQUIRE(moved.expiries.size() == 1);
    CHECK(moved.expiries[0] - rearmed >= 300ms);
}

TEST_CASE("a hook re-armed from its own expiry gets another period") {
    boost::asio::io_context io;
    TimerWheel wheel(io, on_expired, 10ms);
    Probe probe;
    probe.wheel = &wheel;
    probe.rearm = 2;
    probe.period = 50ms;
    auto armed = Clock::now();
    wheel.arm(probe, probe.period);
    run_for(io, 2s);
    REQUIRE(probe.expiries.size() == 3);
    CHECK(probe.expiries[2] - armed >= 150ms);
}

TEST_CASE("a timeout longer than a turn of the wheel waits its turns") {
    boost::asio::io_context io;
    // 1 ms ticks: a turn is 1,024 ms, so 1,500 ms shares a slot with 476 ms.
    TimerWheel wheel(io, on_expired, 1ms);
    Probe long_one, short_one;
    auto armed = Clock::now();
    wheel.arm(long_one, 1500ms);
    wheel.arm(short_one, 476ms);
    run_for(io, 5s);
    REQUIRE(short_one.expiries.size() == 1);
    REQUIRE(long_one.expiries.size() == 1);
    CHECK(short_one.expiries[0] - armed < 1000ms);
    CHECK(long_one.expiries[0] - armed >= 1500ms);
}

TEST_CASE("hooks and their wheel may be destroyed in either order while armed") {
    boost::asio::io_context io;
    auto wheel = std::make_unique<TimerWheel>(io, on_expired, 10ms);
    auto outlives_wheel = std::make_unique<Probe>();
    {
        Probe destroyed_armed;
        wheel->arm(destroyed_armed, 20ms);
        wheel->arm(*outlives_wheel, 20ms);
    }  // disarmed by its destructor: the wheel must not call it
    run_for(io, 200ms);
    CHECK(outlives_wheel->expiries.size() == 1);
    wheel->arm(*outlives_wheel, 1s);
    wheel.reset();  // disarms what is still armed
    CHECK_FALSE(outlives_wheel->armed());
    outlives_wheel.reset();
    run_for(io, 50ms);
}
