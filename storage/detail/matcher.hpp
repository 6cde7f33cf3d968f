// Selector matchers compiled once per query: regexes anchored as in PromQL (`=~"pud.*"` must
// match the whole value), and a missing label treated as the empty string. Regexes are RE2
// (Prometheus' syntax), which matches in time linear in the value: a hostile pattern such as
// `(a+)+$` cannot backtrack for ever while a reader holds the series index.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "storage/selector.hpp"

namespace re2 {
class RE2;
}

namespace citygate::storage::detail {

class CompiledMatcher {
  public:
    // Throws std::invalid_argument for a bad pattern; Selector::parse has already rejected those.
    explicit CompiledMatcher(const Matcher& m);

    const std::string& name() const { return name_; }
    Matcher::Op op() const { return op_; }
    const std::string& value() const { return value_; }
    bool matches(std::string_view v) const;

  private:
    std::string name_;
    Matcher::Op op_;
    std::string value_;
    std::shared_ptr<const re2::RE2> regex_;  // shared: matchers are copied into shard reads
};

// Why `pattern` is not a valid regex (RE2 syntax); empty when it is.
std::string regex_error(std::string_view pattern);

// Limits on a selector from a query: invalid_argument beyond them.
inline constexpr std::size_t kMaxMatchers = 64;
inline constexpr std::size_t kMaxRegexBytes = 1024;

[[nodiscard]] Result<std::vector<CompiledMatcher>> compile(const Selector& selector);

}  // namespace citygate::storage::detail
