// Log lines: `2026-11-22T14:36:00.123Z info message`, written with one write() so lines from
// different threads never interleave.
#include "gateway/log.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>

namespace citygate::log {
namespace {

std::atomic<Level> current_level{Level::info};

const char* level_name(Level level) {
    switch (level) {
        case Level::debug:
            return "debug";
        case Level::info:
            return "info";
        case Level::warn:
            return "warn";
        case Level::error:
            return "error";
    }
    return "?";
}

}  // namespace

bool parse_level(std::string_view text, Level& level) {
    for (Level candidate : {Level::debug, Level::info, Level::warn, Level::error}) {
        if (text == level_name(candidate)) {
            level = candidate;
            return true;
        }
    }
    return false;
}

void set_level(Level level) {
    current_level.store(level, std::memory_order_relaxed);
}

bool enabled(Level level) {
    return level >= current_level.load(std::memory_order_relaxed);
}

void write(Level level, std::string_view message) {
    auto now = std::chrono::system_clock::now();
    std::time_t seconds = std::chrono::system_clock::to_time_t(now);
    auto millis =
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
    std::tm utc{};
    ::gmtime_r(&seconds, &utc);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);

    std::string line;
    line.reserve(message.size() + 48);
    line += stamp;
    line += '.';
    line += static_cast<char>('0' + millis.count() / 100);
    line += static_cast<char>('0' + millis.count() / 10 % 10);
    line += static_cast<char>('0' + millis.count() % 10);
    line += "Z ";
    line += level_name(level);
    line += ' ';
    line += message;
    line += '\n';
    // A failed write to stderr has nowhere better to be reported.
    [[maybe_unused]] auto written = ::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace citygate::log
