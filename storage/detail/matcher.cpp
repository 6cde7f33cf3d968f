// Compiled selector matchers.
#include "storage/detail/matcher.hpp"

#include <stdexcept>

#include <re2/re2.h>

namespace citygate::storage::detail {

namespace {

const RE2::Options& regex_options() {
    static const RE2::Options options = [] {
        RE2::Options o;
        o.set_log_errors(false);
        // Bounds the compiled program of one pattern (RE2's default is 8 MiB).
        o.set_max_mem(2 << 20);
        return o;
    }();
    return options;
}

}  // namespace

std::string regex_error(std::string_view pattern) {
    RE2 re(re2::StringPiece(pattern.data(), pattern.size()), regex_options());
    return re.ok() ? std::string() : re.error();
}

CompiledMatcher::CompiledMatcher(const Matcher& m) : name_(m.name), op_(m.op), value_(m.value) {
    if (op_ == Matcher::Op::regex || op_ == Matcher::Op::not_regex) {
        auto re = std::make_shared<const RE2>(value_, regex_options());
        if (!re->ok()) throw std::invalid_argument(re->error());
        regex_ = std::move(re);
    }
}

bool CompiledMatcher::matches(std::string_view v) const {
    switch (op_) {
        case Matcher::Op::equal:
            return v == value_;
        case Matcher::Op::not_equal:
            return v != value_;
        case Matcher::Op::regex:
            return RE2::FullMatch(re2::StringPiece(v.data(), v.size()), *regex_);
        case Matcher::Op::not_regex:
            return !RE2::FullMatch(re2::StringPiece(v.data(), v.size()), *regex_);
    }
    return false;
}

Result<std::vector<CompiledMatcher>> compile(const Selector& selector) {
    // A huge selector from a query is refused before it costs memory or time.
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
    } catch (const std::invalid_argument& e) {
        return Status::error(Status::Code::invalid_argument,
                             std::string("selector: bad regex: ") + e.what());
    }
    return out;
}

}  // namespace citygate::storage::detail
