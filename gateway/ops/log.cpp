// Log lines in text or JSON, written with one write() so lines from different threads never
// interleave.
#include "gateway/ops/log.hpp"

#include "gateway/json_text.hpp"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>

namespace citygate::log {
namespace {

std::atomic<Level> current_level{Level::info};
std::atomic<Format> current_format{Format::text};

using gateway::append_json_string;

// Text values with spaces, quotes or '=' are quoted so fields stay parseable.
void append_text_value(std::string& out, std::string_view value) {
    if (!value.empty() && value.find_first_of(" \"=\n") == std::string_view::npos) {
        out += value;
    } else {
        append_json_string(out, value);
    }
}

}  // namespace

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

bool parse_level(std::string_view text, Level& level) {
    for (Level candidate : {Level::debug, Level::info, Level::warn, Level::error}) {
        if (text == level_name(candidate)) {
            level = candidate;
            return true;
        }
    }
    return false;
}

bool parse_format(std::string_view text, Format& format) {
    if (text == "text") {
        format = Format::text;
    } else if (text == "json") {
        format = Format::json;
    } else {
        return false;
    }
    return true;
}

void set_level(Level level) {
    current_level.store(level, std::memory_order_relaxed);
}

Level level() {
    return current_level.load(std::memory_order_relaxed);
}

void set_format(Format format) {
    current_format.store(format, std::memory_order_relaxed);
}

Format format() {
    return current_format.load(std::memory_order_relaxed);
}

bool enabled(Level level) {
    return level >= current_level.load(std::memory_order_relaxed);
}

std::string format_line(Format format, std::string_view timestamp, Level level,
                        std::string_view message, const std::vector<Field>& fields) {
    std::string line;
    line.reserve(message.size() + 64);
    if (format == Format::json) {
        line += "{\"ts\":";
        append_json_string(line, timestamp);
        line += ",\"level\":\"";
        line += level_name(level);
        line += "\",\"msg\":";
        append_json_string(line, message);
        for (const Field& field : fields) {
            // Fields never overwrite the three fixed keys.
            if (field.key == "ts" || field.key == "level" || field.key == "msg") continue;
            line += ',';
            append_json_string(line, field.key);
            line += ':';
            if (field.quoted) {
                append_json_string(line, field.value);
            } else {
                line += field.value;
            }
        }
        line += '}';
        return line;
    }
    line += timestamp;
    line += ' ';
    line += level_name(level);
    line += ' ';
    line += message;
    for (const Field& field : fields) {
        line += ' ';
        line += field.key;
        line += '=';
        append_text_value(line, field.value);
    }
    return line;
}

void write(Level level, std::string_view message, const std::vector<Field>& fields) {
    auto now = std::chrono::system_clock::now();
    std::time_t seconds = std::chrono::system_clock::to_time_t(now);
    auto millis =
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
    std::tm utc{};
    ::gmtime_r(&seconds, &utc);
    char stamp[40];
    std::size_t n = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
    std::snprintf(stamp + n, sizeof stamp - n, ".%03dZ", static_cast<int>(millis.count()));

    std::string line = format_line(format(), stamp, level, message, fields);
    line += '\n';
    // A failed write to stderr has nowhere better to be reported.
    [[maybe_unused]] auto written = ::write(STDERR_FILENO, line.data(), line.size());
}

std::optional<std::uint64_t> RateLimit::admit(std::chrono::steady_clock::time_point now) {
    std::lock_guard lock(mutex_);
    if (last_ && now - *last_ < interval_) {
        ++held_back_;
        return std::nullopt;
    }
    last_ = now;
    return std::exchange(held_back_, 0);
}

}  // namespace citygate::log
