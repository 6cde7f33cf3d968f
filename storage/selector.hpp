// Series keys and Prometheus-style selectors: `pm25{district="pudong",type!="air",device=~"a-.*"}`.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "storage/status.hpp"

namespace citygate::storage {

using Tag = std::pair<std::string, std::string>;

// Canonical series key: measurement then tags sorted by name, values quoted and escaped.
// `tags` need not be sorted. Example: pm25{device="a-1",district="pudong",type="air"}.
std::string format_series_key(std::string_view measurement, std::vector<Tag> tags);

// Whether `name` may be a measurement or tag name in a series key: [A-Za-z_:][A-Za-z0-9_:.-]*.
bool is_valid_name(std::string_view name);

// Splits a canonical key back into measurement and sorted tags.
Result<std::pair<std::string, std::vector<Tag>>> parse_series_key(std::string_view key);

struct Matcher {
    enum class Op { equal, not_equal, regex, not_regex };
    std::string name;  // "__name__" matches the measurement
    Op op = Op::equal;
    std::string value;
};

struct Selector {
    std::vector<Matcher> matchers;

    // Parses `measurement{name="v",...}`, `{__name__="m",...}` or a bare measurement.
    // Errors name the offending position.
    static Result<Selector> parse(std::string_view text);
};

}  // namespace citygate::storage
