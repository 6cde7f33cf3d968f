// libFuzzer target for the PromQL engine: the input is a query. It is parsed with the engine's
// limits and, when it parses, evaluated as an instant and a short range query over a few series
// with tight sample and time limits. Checks: no crash, leak or undefined behaviour (ASan, UBSan);
// a parse error names a position inside the input; evaluation ends with a value or an error.
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "promql/engine.hpp"
#include "tests/promql/memory_queryable.hpp"

using namespace citygate::promql;

namespace {

test::MemoryQueryable& data() {
    static test::MemoryQueryable queryable = [] {
        test::MemoryQueryable q;
        for (int s = 0; s < 3; ++s) {
            std::vector<Point> points;
            for (int i = 0; i < 40; ++i)
                points.push_back({i * 15'000LL, i * (s + 1.0)});
            if (s == 2) points.push_back({40 * 15'000LL, stale_nan()});
            q.add(
                Labels{{"__name__", "m"}, {"i", std::to_string(s)}, {"le", s == 2 ? "+Inf" : "1"}},
                points);
        }
        return q;
    }();
    return queryable;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
    const std::string_view query(reinterpret_cast<const char*>(bytes), size);
    ParseLimits parse_limits;
    parse_limits.max_length = 4096;
    auto parsed = parse(query, parse_limits);
    if (!parsed.is_ok()) {
        if (parsed.error().position.start > size) std::abort();
        return 0;
    }
    Engine engine;
    QueryLimits limits;
    limits.max_samples = 100'000;
    limits.deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
    auto instant = engine.evaluate(data(), *parsed.expr(), 300'000, 300'000, 0, limits);
    (void)instant.is_ok();
    const ValueType type = parsed.expr()->type();
    if (type == ValueType::scalar || type == ValueType::vector) {
        auto range = engine.evaluate(data(), *parsed.expr(), 0, 600'000, 60'000, limits);
        if (range.is_ok() && !std::holds_alternative<Matrix>(range.value())) std::abort();
    }
    return 0;
}
