// A small leveled logger to stderr, one line per event, safe from any thread.
#pragma once

#include <sstream>
#include <string>
#include <string_view>

namespace citygate::log {

enum class Level { debug, info, warn, error };

// Parses "debug", "info", "warn" or "error".
bool parse_level(std::string_view text, Level& level);
void set_level(Level level);
bool enabled(Level level);
void write(Level level, std::string_view message);

}  // namespace citygate::log

// Streams a message only when its level is enabled: CG_LOG(info) << "listening on " << port;
#define CG_LOG(level)                                                                       \
    for (bool cg_once_ = ::citygate::log::enabled(::citygate::log::Level::level); cg_once_; \
         cg_once_ = false)                                                                  \
    ::citygate::log::detail::Line(::citygate::log::Level::level).stream()

namespace citygate::log::detail {

class Line {
  public:
    explicit Line(Level level) : level_(level) {}
    ~Line() { write(level_, stream_.str()); }
    std::ostringstream& stream() { return stream_; }

  private:
    Level level_;
    std::ostringstream stream_;
};

}  // namespace citygate::log::detail
