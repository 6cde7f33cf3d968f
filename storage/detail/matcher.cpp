// Compiled selector matchers.
#include "storage/detail/matcher.hpp"

namespace citygate::storage::detail {

CompiledMatcher::CompiledMatcher(const Matcher& m) : name_(m.name), op_(m.op), value_(m.value) {
    if (op_ == Matcher::Op::regex || op_ == Matcher::Op::not_regex) {
        regex_.emplace(value_, std::regex::ECMAScript | std::regex::optimize);
    }
}

bool CompiledMatcher::matches(std::string_view v) const {
    switch (op_) {
        case Matcher::Op::equal:
            return v == value_;
        case Matcher::Op::not_equal:
            return v != value_;
        case Matcher::Op::regex:
            return std::regex_match(v.begin(), v.end(), *regex_);
        case Matcher::Op::not_regex:
            return !std::regex_match(v.begin(), v.end(), *regex_);
    }
    return false;
}

Result<std::vector<CompiledMatcher>> compile(const Selector& selector) {
    // std::regex compiles patterns into NFAs without bound and runs them recursively: a huge
    // pattern from a query must be refused before it costs memory or stack.
    if (selector.matchers.size() > kMaxMatchers) {
        return Status::error(Status::Code::invalid_argument,
                             "selector: more than " + std::to_string(kMaxMatchers) + " matchers");
    }
    for (const auto& m : selector.matchers) {
        if ((m.op == Matcher::Op::regex || m.op == Matcher::Op::not_regex) &&
            m.value.size() > kMaxRegexBytes) {
            return Status::error(Status::Code::invalid_argument,
                                 "selector: regex for " + m.name + " longer than " +
                                     std::to_string(kMaxRegexBytes) + " bytes");
        }
    }
    std::vector<CompiledMatcher> out;
    try {
        for (const auto& m : selector.matchers)
            out.emplace_back(m);
    } catch (const std::regex_error& e) {
        return Status::error(Status::Code::invalid_argument,
                             std::string("selector: bad regex: ") + e.what());
    }
    return out;
}

}  // namespace citygate::storage::detail
