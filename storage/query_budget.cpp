// Query budgets: per-query memory, points and deadline, and the memory all queries share.
#include "storage/query_budget.hpp"

#include <algorithm>

namespace citygate::storage {
namespace {

std::string time_limit_message(std::chrono::milliseconds timeout) {
    return "query: ran longer than its time limit of " + std::to_string(timeout.count()) +
           " ms; narrow the selector or the time range";
}

Status shared_memory_busy(std::size_t capacity) {
    return Status::error(Status::Code::busy, "server busy: query memory budget of " +
                                                 std::to_string(capacity) +
                                                 " bytes is held by running queries; try again "
                                                 "later");
}

}  // namespace

QueryMemory::QueryMemory(std::size_t capacity_bytes, std::chrono::milliseconds wait)
    : capacity_(capacity_bytes),
      grant_(
          std::min(capacity_bytes, std::clamp<std::size_t>(capacity_bytes / 64, 4 << 10, 4 << 20))),
      wait_(wait) {}

std::size_t QueryMemory::in_use() const {
    std::lock_guard lock(mutex_);
    return in_use_;
}

bool QueryMemory::take(std::size_t bytes, std::chrono::steady_clock::time_point until) {
    std::unique_lock lock(mutex_);
    auto fits = [&] { return bytes <= capacity_ - in_use_; };
    if (!fits() &&
        (until <= std::chrono::steady_clock::now() || !room_.wait_until(lock, until, fits))) {
        return false;
    }
    in_use_ += bytes;
    return true;
}

void QueryMemory::give_back(std::size_t bytes) {
    {
        std::lock_guard lock(mutex_);
        in_use_ -= std::min(bytes, in_use_);
    }
    room_.notify_all();
}

QueryBudget::QueryBudget(QueryLimits limits, QueryMemory* shared, Clock::time_point started,
                         const std::atomic<bool>* cancelled)
    : limits_(limits),
      shared_(shared),
      deadline_(limits.timeout.count() > 0 ? started + limits.timeout : Clock::time_point::max()),
      cancelled_(cancelled) {}

QueryBudget::~QueryBudget() {
    if (shared_ && reserved_ > 0) shared_->give_back(reserved_);
}

Status QueryBudget::fail_locked(Limit limit, Status status) {
    if (limit_ == Limit::none) {
        limit_ = limit;
        failure_ = std::move(status);
        failed_.store(true, std::memory_order_release);
    }
    return failure_;
}

Status QueryBudget::check_locked(Clock::time_point now) {
    if (limit_ != Limit::none) return failure_;
    if (cancelled_ && cancelled_->load(std::memory_order_relaxed)) {
        return fail_locked(
            Limit::cancelled,
            Status::error(Status::Code::busy, "query cancelled: the server is shutting down"));
    }
    if (now > deadline_) {
        return fail_locked(Limit::timeout,
                           Status::error(Status::Code::busy, time_limit_message(limits_.timeout)));
    }
    return Status::ok();
}

Status QueryBudget::check() {
    bool cancelled = cancelled_ && cancelled_->load(std::memory_order_relaxed);
    if (!failed_.load(std::memory_order_acquire) && !cancelled &&
        (deadline_ == Clock::time_point::max() || Clock::now() <= deadline_)) {
        return Status::ok();
    }
    std::lock_guard lock(mutex_);
    return check_locked(Clock::now());
}

Status QueryBudget::admit() {
    std::unique_lock lock(mutex_);
    if (auto status = check_locked(Clock::now()); !status.is_ok()) return status;
    if (admitted_ || !shared_) {
        admitted_ = true;
        return Status::ok();
    }
    // The wait happens under this budget's own lock only: nothing else of the query runs yet.
    std::size_t grant = shared_->grant_;
    auto until = std::min(deadline_, Clock::now() + shared_->wait_);
    if (!shared_->take(grant, until)) {
        return fail_locked(Limit::shared_bytes, shared_memory_busy(shared_->capacity()));
    }
    reserved_ = grant;
    admitted_ = true;
    return Status::ok();
}

Status QueryBudget::charge(std::size_t bytes) {
    std::lock_guard lock(mutex_);
    if (auto status = check_locked(Clock::now()); !status.is_ok()) return status;
    if (bytes > limits_.max_bytes - held_) {
        return fail_locked(
            Limit::bytes,
            Status::error(Status::Code::limit_exceeded,
                          "query: needs more than " + std::to_string(limits_.max_bytes) +
                              " bytes, the memory limit of one query; narrow the selector or the "
                              "time range, or widen the step"));
    }
    if (shared_ && held_ + bytes > reserved_) {
        std::size_t need = held_ + bytes - reserved_;
        std::size_t grant = shared_->grant_;
        std::size_t take = need > SIZE_MAX - grant ? need : (need + grant - 1) / grant * grant;
        // Growth never waits: a query waiting while it holds memory could wait on another that
        // waits on it. A whole grant first, else just what is needed.
        const auto no_wait = Clock::time_point::min();
        if (!shared_->take(take, no_wait)) {
            if (take == need || !shared_->take(need, no_wait)) {
                return fail_locked(Limit::shared_bytes, shared_memory_busy(shared_->capacity()));
            }
            take = need;
        }
        reserved_ += take;
    }
    held_ += bytes;
    peak_ = std::max(peak_, held_);
    return Status::ok();
}

void QueryBudget::release(std::size_t bytes) {
    std::lock_guard lock(mutex_);
    held_ -= std::min(bytes, held_);
}

Status QueryBudget::count_points(std::size_t points) {
    std::size_t total = points_.fetch_add(points, std::memory_order_relaxed) + points;
    if (total <= limits_.max_points) return check();
    std::lock_guard lock(mutex_);
    return fail_locked(
        Limit::points,
        Status::error(Status::Code::limit_exceeded,
                      "query: reads more than the limit of " + std::to_string(limits_.max_points) +
                          " points; narrow the selector or the time range"));
}

Status QueryBudget::count_series(std::size_t series) {
    if (series <= limits_.max_series) return check();
    std::lock_guard lock(mutex_);
    return fail_locked(
        Limit::series,
        Status::error(Status::Code::limit_exceeded,
                      "query: the selector matches " + std::to_string(series) +
                          " series, more than the limit of " + std::to_string(limits_.max_series)));
}

QueryBudget::Limit QueryBudget::exceeded() const {
    std::lock_guard lock(mutex_);
    return limit_;
}

std::size_t QueryBudget::held() const {
    std::lock_guard lock(mutex_);
    return held_;
}

std::size_t QueryBudget::peak() const {
    std::lock_guard lock(mutex_);
    return peak_;
}

}  // namespace citygate::storage
