// A hashed timer wheel: one Asio timer per I/O thread serves the connect and keep-alive timeouts
// of all its connections, so that an idle connection carries a 24-byte hook instead of a
// steady_timer and a pending wait operation (about 250 bytes).
//
// Times are coarse: a timeout fires at the first tick at or after it is due, never before, and
// at most one tick (plus scheduling) late. Not thread safe: one wheel, one thread.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

namespace citygate::gateway {

class TimerWheel {
  public:
    // MQTT timeouts are seconds (keep-alive) or configured in hundreds of milliseconds.
    static constexpr std::chrono::milliseconds default_tick{100};
    // Slots of one turn of the wheel (102.4 s at the default tick): a longer timeout waits in
    // its slot for as many turns as it needs.
    static constexpr std::size_t slots = 1024;

    // What a timed object embeds (as a base class): linked into a slot while armed. Destroying
    // an armed hook disarms it.
    class Hook {
      public:
        Hook() = default;
        Hook(const Hook&) = delete;
        Hook& operator=(const Hook&) = delete;
        ~Hook() { unlink(); }

        bool armed() const { return prev_ != nullptr; }
        // What it was last armed with (in milliseconds, at most 49 days), to arm it again.
        std::chrono::milliseconds period() const { return std::chrono::milliseconds(period_ms_); }

      private:
        friend class TimerWheel;
        void unlink();

        Hook* next_ = nullptr;
        Hook** prev_ = nullptr;  // what points to this hook; null while disarmed
        std::uint32_t due_ = 0;  // the tick it expires at
        std::uint32_t period_ms_ = 0;
    };

    // `expired` is called on the wheel's thread with each hook whose time came, already
    // disarmed; it may arm that hook or any other again.
    using Expired = void (*)(Hook&);

    TimerWheel(boost::asio::io_context& io, Expired expired,
               std::chrono::milliseconds tick = default_tick);
    // Disarms every hook still armed (their owners may outlive the wheel).
    ~TimerWheel();
    TimerWheel(const TimerWheel&) = delete;
    TimerWheel& operator=(const TimerWheel&) = delete;

    // (Re)arms `hook` to expire `after` from now (at most 2^32 - 1 ms: longer is as good as
    // never for a connection timeout).
    void arm(Hook& hook, std::chrono::milliseconds after);
    static void cancel(Hook& hook) { hook.unlink(); }

  private:
    std::uint32_t ticks_since_origin(std::chrono::steady_clock::time_point t) const;
    void schedule_tick();
    void on_tick();
    bool empty() const;

    Expired expired_;
    std::chrono::steady_clock::duration tick_;
    std::chrono::steady_clock::time_point origin_ = std::chrono::steady_clock::now();
    std::uint32_t processed_ = 0;  // every hook due at or before this tick has expired
    bool ticking_ = false;         // timer_ waits for the next tick
    boost::asio::steady_timer timer_;
    std::array<Hook*, slots> slot_{};
};

}  // namespace citygate::gateway
