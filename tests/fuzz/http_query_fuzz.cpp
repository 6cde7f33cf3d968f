// libFuzzer target for what the query endpoints do with a request before they read storage: the
// input is a request target (path?query), split as the router splits it, its query_range
// parameters parsed (selector, times, step, function, group_by, source), the `match` selector of
// /api/v1/series and the label name of /api/v1/labels/{name}/values decoded, and every selector
// compiled into matchers (RE2, with its limits). Checks: no crash, leak or undefined behaviour
// (ASan, UBSan); a request that parses has start <= end, a positive step, no more steps than
// asked, and a selector that compiles or is refused with invalid_argument.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "gateway/http/http_api.hpp"
#include "storage/detail/matcher.hpp"

using namespace citygate;

namespace {

constexpr std::size_t max_steps = 5'000'000;

void compile(const storage::Selector& selector) {
    auto matchers = storage::detail::compile(selector);
    if (!matchers.is_ok() && matchers.status().code() != storage::Status::Code::invalid_argument) {
        std::abort();
    }
    // A compiled matcher answers for any value, the empty one (an absent label) included.
    if (matchers.is_ok()) {
        for (const auto& m : matchers.value()) {
            (void)m.matches("");
            (void)m.matches(selector.matchers.empty() ? "" : selector.matchers[0].value);
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view target(reinterpret_cast<const char*>(data), size);
    std::size_t question = target.find('?');
    std::string_view path = target.substr(0, question);
    std::string_view query =
        question == std::string_view::npos ? std::string_view{} : target.substr(question + 1);

    std::string error;
    if (auto request = gateway::parse_range_request(query, max_steps, error)) {
        if (request->start_ms > request->end_ms) std::abort();
        compile(request->selector);
        if (const auto& aggregate = request->aggregate) {
            if (aggregate->step_ms <= 0 || aggregate->end_ms <= aggregate->start_ms) std::abort();
            std::uint64_t span = static_cast<std::uint64_t>(aggregate->end_ms) -
                                 static_cast<std::uint64_t>(aggregate->start_ms);
            if (span / static_cast<std::uint64_t>(aggregate->step_ms) > max_steps) std::abort();
        }
    } else if (error.empty()) {
        std::abort();  // a refusal says why
    }

    std::string match;
    if (gateway::query_parameter(query, "match", match)) {
        auto selector = storage::Selector::parse(match);
        if (selector.is_ok()) compile(selector.value());
    }
    std::string label;
    std::size_t slash = path.rfind('/');
    (void)gateway::url_decode(slash == std::string_view::npos ? path : path.substr(slash + 1),
                              label);
    return 0;
}
