// The hashed timer wheel of one I/O thread.
#include "gateway/mqtt/timer_wheel.hpp"

#include <algorithm>
#include <limits>

namespace citygate::gateway {

void TimerWheel::Hook::unlink() {
    if (!prev_) return;
    *prev_ = next_;
    if (next_) next_->prev_ = prev_;
    next_ = nullptr;
    prev_ = nullptr;
}

TimerWheel::TimerWheel(boost::asio::io_context& io, Expired expired, std::chrono::milliseconds tick)
    : expired_(expired), tick_(tick), timer_(io) {}

TimerWheel::~TimerWheel() {
    for (Hook*& head : slot_) {
        while (head)
            head->unlink();
    }
}

std::uint32_t TimerWheel::ticks_since_origin(std::chrono::steady_clock::time_point t) const {
    return static_cast<std::uint32_t>((t - origin_) / tick_);
}

bool TimerWheel::empty() const {
    return std::all_of(slot_.begin(), slot_.end(), [](const Hook* head) { return !head; });
}

void TimerWheel::arm(Hook& hook, std::chrono::milliseconds after) {
    hook.unlink();
    after = std::clamp(after, std::chrono::milliseconds(0),
                       std::chrono::milliseconds(std::numeric_limits<std::uint32_t>::max()));
    hook.period_ms_ = static_cast<std::uint32_t>(after.count());
    auto now = std::chrono::steady_clock::now();
    if (!ticking_) processed_ = ticks_since_origin(now);  // nothing is armed: no tick is owed
    // Rounded up: a tick fires when its time has come, so the hook never expires early. Never
    // in a tick already processed, which would wait a whole turn.
    auto due_in = (now - origin_) + std::chrono::duration_cast<std::chrono::nanoseconds>(after);
    auto due = static_cast<std::uint32_t>((due_in + tick_ - std::chrono::nanoseconds(1)) / tick_);
    hook.due_ = std::max(due, processed_ + 1);
    Hook*& head = slot_[hook.due_ % slots];
    hook.next_ = head;
    if (head) head->prev_ = &hook.next_;
    hook.prev_ = &head;
    head = &hook;
    if (!ticking_) schedule_tick();
}

void TimerWheel::schedule_tick() {
    ticking_ = true;
    timer_.expires_at(origin_ + tick_ * (processed_ + 1));
    timer_.async_wait([this](const boost::system::error_code& ec) {
        if (ec) return;  // the wheel is going away
        on_tick();
    });
}

void TimerWheel::on_tick() {
    ticking_ = false;
    std::uint32_t now = ticks_since_origin(std::chrono::steady_clock::now());
    if (now <= processed_) return schedule_tick();  // woken early
    // Every slot from the last tick processed to now (all of them after a long stall); the
    // expired hooks go to a list of their own first, so expiry callbacks that arm again never
    // meet a slot being walked.
    Hook* expired = nullptr;
    std::uint32_t from = now - processed_ >= slots ? now - slots + 1 : processed_ + 1;
    for (std::uint32_t t = from; t <= now; ++t) {
        Hook* hook = slot_[t % slots];
        while (hook) {
            Hook* next = hook->next_;
            if (hook->due_ <= now) {
                hook->unlink();
                hook->next_ = expired;
                if (expired) expired->prev_ = &hook->next_;
                hook->prev_ = &expired;
                expired = hook;
            }
            hook = next;
        }
    }
    processed_ = now;
    ticking_ = true;  // arming from a callback must not schedule a second tick
    while (expired) {
        Hook& hook = *expired;
        hook.unlink();
        expired_(hook);
    }
    ticking_ = false;
    if (!empty()) schedule_tick();
}

}  // namespace citygate::gateway
