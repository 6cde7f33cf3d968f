// A small leveled logger to stderr, one line per event, safe from any thread. Lines are text
// (`2026-11-22T14:36:00.123Z info message key=value`) or JSON objects
// (`{"ts":"...","level":"info","msg":"message","key":"value"}`), chosen at start-up; the level can
// change at any time.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace citygate::log {

enum class Level { debug, info, warn, error };
enum class Format { text, json };

// Parses "debug", "info", "warn" or "error".
bool parse_level(std::string_view text, Level& level);
const char* level_name(Level level);
// Parses "text" or "json".
bool parse_format(std::string_view text, Format& format);

// Thread safe; take effect for the next line.
void set_level(Level level);
Level level();
void set_format(Format format);
Format format();
bool enabled(Level level);

// A structured field of one line. `quoted` is false for numbers and booleans, which JSON output
// writes bare.
struct Field {
    std::string key;
    std::string value;
    bool quoted = true;
};
void write(Level level, std::string_view message, const std::vector<Field>& fields = {});

// Holds back a condition that repeats: at most one line per `interval`, counting the lines held
// back in between. One object per condition (a static or a member); thread safe.
class RateLimit {
  public:
    explicit RateLimit(std::chrono::steady_clock::duration interval = std::chrono::seconds(10))
        : interval_(interval) {}

    // Nothing when this line is held back; else how many were held back since the last one let
    // through.
    std::optional<std::uint64_t> admit(
        std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now());

  private:
    std::chrono::steady_clock::duration interval_;
    std::mutex mutex_;
    std::optional<std::chrono::steady_clock::time_point> last_;
    std::uint64_t held_back_ = 0;
};

// One line as write() prints it, without the newline, at the given timestamp (for tests).
std::string format_line(Format format, std::string_view timestamp, Level level,
                        std::string_view message, const std::vector<Field>& fields);

}  // namespace citygate::log

// Streams a message only when its level is enabled, with optional fields:
//   CG_LOG(info).with("port", port) << "listening on " << port;
#define CG_LOG(level)                                                                       \
    for (bool cg_once_ = ::citygate::log::enabled(::citygate::log::Level::level); cg_once_; \
         cg_once_ = false)                                                                  \
    ::citygate::log::detail::Line(::citygate::log::Level::level)

// CG_LOG through a RateLimit: the line is written at most once per interval, with a
// `suppressed=N` field when N similar lines were held back since the last one:
//   static log::RateLimit accept_errors;
//   CG_LOG_LIMITED(accept_errors, warn) << "http accept: " << ec.message();
#define CG_LOG_LIMITED(limit, level)                                                   \
    for (std::optional<std::uint64_t> cg_admitted_ =                                   \
             ::citygate::log::enabled(::citygate::log::Level::level) ? (limit).admit() \
                                                                     : std::nullopt;   \
         cg_admitted_; cg_admitted_.reset())                                           \
    ::citygate::log::detail::Line(::citygate::log::Level::level).suppressed(*cg_admitted_)

namespace citygate::log::detail {

class Line {
  public:
    explicit Line(Level level) : level_(level) {}
    ~Line() { write(level_, stream_.str(), fields_); }
    Line(const Line&) = delete;
    Line& operator=(const Line&) = delete;

    template <typename T>
    Line& operator<<(const T& value) {
        stream_ << value;
        return *this;
    }
    Line& operator<<(std::ostream& (*manipulator)(std::ostream&)) {
        stream_ << manipulator;
        return *this;
    }

    // Adds a field; numbers stay numbers in JSON output.
    template <typename T>
    Line& with(std::string_view key, const T& value) {
        std::ostringstream text;
        if constexpr (std::is_same_v<T, bool>) {
            text << (value ? "true" : "false");
        } else {
            text << value;
        }
        fields_.push_back({std::string(key), std::move(text).str(),
                           !std::is_arithmetic_v<T> || std::is_same_v<T, char>});
        return *this;
    }

    // The `suppressed` field of a rate-limited line, when any were held back.
    Line& suppressed(std::uint64_t count) {
        if (count > 0) with("suppressed", count);
        return *this;
    }

  private:
    Level level_;
    std::ostringstream stream_;
    std::vector<Field> fields_;
};

}  // namespace citygate::log::detail
