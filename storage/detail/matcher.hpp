// Selector matchers compiled once per query: regexes anchored as in PromQL (`=~"pud.*"` must
// match the whole value), and a missing label treated as the empty string.
#pragma once

#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "storage/selector.hpp"

namespace citygate::storage::detail {

class CompiledMatcher {
  public:
    // Throws std::regex_error for a bad pattern; Selector::parse has already rejected those.
    explicit CompiledMatcher(const Matcher& m);

    const std::string& name() const { return name_; }
    Matcher::Op op() const { return op_; }
    const std::string& value() const { return value_; }
    bool matches(std::string_view v) const;

  private:
    std::string name_;
    Matcher::Op op_;
    std::string value_;
    std::optional<std::regex> regex_;
};

// Limits on a selector from a query: invalid_argument beyond them.
inline constexpr std::size_t kMaxMatchers = 64;
inline constexpr std::size_t kMaxRegexBytes = 1024;

[[nodiscard]] Result<std::vector<CompiledMatcher>> compile(const Selector& selector);

}  // namespace citygate::storage::detail
