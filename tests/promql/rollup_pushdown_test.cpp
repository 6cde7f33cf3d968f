// Windowed aggregates read from rollups (whole buckets plus raw points at the window edges) give
// the answers raw points give: every function, range, offset, @ and step alignment, with
// jittered timestamps, samples exactly on bucket boundaries, gaps, negative values, staleness
// markers and NaN (which send the query back to raw points).
#include <catch2/catch.hpp>

#include <cmath>
#include <string>

#include "promql/engine.hpp"
#include "tests/promql/memory_queryable.hpp"

using namespace citygate::promql;

namespace {

constexpr std::int64_t second = 1'000;
constexpr std::int64_t minute = 60 * second;
constexpr std::int64_t hour = 60 * minute;

// Deterministic jitter in [-20, 20] ms.
std::int64_t jitter(std::uint64_t n) {
    n = (n ^ (n >> 31)) * 0x9E3779B97F4A7C15ull;
    return static_cast<std::int64_t>((n >> 33) % 41) - 20;
}

// Four sensors every 10 s over `hours`: one with a 40-minute gap, one negative, one whose
// readings often fall exactly on a minute, one counter.
test::MemoryQueryable city(int hours) {
    test::MemoryQueryable data;
    const std::int64_t end = hours * hour;
    for (int s = 0; s < 4; ++s) {
        std::vector<Point> pts;
        std::uint64_t n = 0;
        double counter = 0;
        for (std::int64_t t = 0; t < end; t += 10 * second, ++n) {
            if (s == 0 && t >= 2 * hour && t < 2 * hour + 40 * minute) continue;
            std::int64_t at = t + jitter(n * 7 + static_cast<std::uint64_t>(s));
            if (s == 2 && n % 3 == 0) at = t - t % minute;
            if (at < 0) at = 0;
            if (!pts.empty() && at <= pts.back().t) continue;
            double v = std::round((20 + 5 * std::sin(static_cast<double>(t) / 3.6e6) +
                                   static_cast<double>(jitter(n)) / 10) *
                                  100) /
                       100;
            if (s == 1) v = -v;
            if (s == 3) v = counter += static_cast<double>(n % 5);
            pts.push_back({at, v});
        }
        data.add(Labels({{"__name__", "m"}, {"sensor", std::to_string(s)}}), pts);
    }
    data.set_rollup_widths({minute, hour});
    return data;
}

bool close(double a, double b) {
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
    return std::abs(a - b) <= 1e-9 * std::max({1.0, std::abs(a), std::abs(b)});
}

// Both answers hold the same series with the same points.
void require_same(const Value& a, const Value& b, const std::string& query) {
    INFO(query);
    if (const auto* va = std::get_if<Vector>(&a)) {
        const auto& vb = std::get<Vector>(b);
        REQUIRE(va->size() == vb.size());
        for (std::size_t i = 0; i < va->size(); ++i) {
            CHECK((*va)[i].labels.key() == vb[i].labels.key());
            INFO((*va)[i].v << " vs " << vb[i].v);
            CHECK(close((*va)[i].v, vb[i].v));
        }
        return;
    }
    const auto& ma = std::get<Matrix>(a);
    const auto& mb = std::get<Matrix>(b);
    REQUIRE(ma.size() == mb.size());
    for (std::size_t i = 0; i < ma.size(); ++i) {
        CHECK(ma[i].labels.key() == mb[i].labels.key());
        REQUIRE(ma[i].points.size() == mb[i].points.size());
        for (std::size_t j = 0; j < ma[i].points.size(); ++j) {
            CHECK(ma[i].points[j].t == mb[i].points[j].t);
            INFO("t=" << ma[i].points[j].t << ": " << ma[i].points[j].v << " vs "
                      << mb[i].points[j].v);
            CHECK(close(ma[i].points[j].v, mb[i].points[j].v));
        }
    }
}

EngineOptions raw_only() {
    EngineOptions options;
    options.rollup_min_buckets = 0;
    return options;
}

}  // namespace

TEST_CASE("windowed aggregates from rollups equal those from raw points") {
    auto data = city(40);
    EngineOptions always;  // every eligible window from rollups, whatever the edges cost
    always.rollup_edge_share = 0;
    const Engine rollups(always);
    const Engine raw(raw_only());
    const std::vector<std::string> functions = {
        "sum_over_time", "count_over_time", "avg_over_time",    "min_over_time",
        "max_over_time", "last_over_time",  "present_over_time"};
    const std::vector<std::string> ranges = {"30m", "1h", "95m", "3h", "30h", "36h"};
    const std::vector<std::string> modifiers = {"", " offset 7m", " offset 1h", " @ 100000.5"};
    std::size_t queries = 0;
    for (const auto& f : functions) {
        for (const auto& r : ranges) {
            for (const auto& mod : modifiers) {
                const std::string q = f + "(m[" + r + "]" + mod + ")";
                for (std::int64_t t : {36 * hour, 36 * hour + 1, 38 * hour + 30 * minute + 17,
                                       39 * hour + 59 * minute + 59 * second + 999}) {
                    auto a = rollups.instant_query(data, q, t);
                    auto b = raw.instant_query(data, q, t);
                    REQUIRE(a.is_ok());
                    REQUIRE(b.is_ok());
                    require_same(a.value(), b.value(), q + " at " + std::to_string(t));
                    ++queries;
                }
                for (std::int64_t step : {minute, 5 * minute, 17 * minute + 30 * second, hour}) {
                    for (std::int64_t start : {32 * hour, 32 * hour + 12 * second + 345}) {
                        auto a = rollups.range_query(data, q, start, start + 6 * hour, step);
                        auto b = raw.range_query(data, q, start, start + 6 * hour, step);
                        REQUIRE(a.is_ok());
                        REQUIRE(b.is_ok());
                        require_same(
                            a.value(), b.value(),
                            q + " from " + std::to_string(start) + " step " + std::to_string(step));
                        ++queries;
                    }
                }
            }
        }
    }
    CHECK(queries == 7 * 6 * 4 * 12);
    CHECK(data.rollup_selects() > 0);
}

TEST_CASE("rollups are read only where they save work") {
    auto data = city(6);
    const Engine engine;
    auto before = data.rollup_selects();
    // A short window, steps narrower than a bucket, or steps whose edges tile the range:
    // raw points are cheaper.
    REQUIRE(engine.instant_query(data, "avg_over_time(m[5m])", 5 * hour).is_ok());
    REQUIRE(
        engine.range_query(data, "avg_over_time(m[1h])", 2 * hour, 5 * hour, 30 * second).is_ok());
    REQUIRE(
        engine.range_query(data, "avg_over_time(m[1h])", 2 * hour + 7, 5 * hour, minute).is_ok());
    // A subquery and functions buckets cannot answer always read raw points.
    REQUIRE(engine.instant_query(data, "avg_over_time(m[2h:1m])", 5 * hour).is_ok());
    REQUIRE(engine.instant_query(data, "quantile_over_time(0.5, m[2h])", 5 * hour).is_ok());
    REQUIRE(engine.instant_query(data, "rate(m[2h])", 5 * hour).is_ok());
    CHECK(data.rollup_selects() == before);

    // A long window reads a bucket per minute, not a point per 10 s.
    const auto read_before = data.points_read();
    REQUIRE(engine.instant_query(data, "avg_over_time(m[4h])", 5 * hour + 17).is_ok());
    CHECK(data.rollup_selects() == before + 1);
    const auto from_rollups = data.points_read() - read_before;
    REQUIRE(Engine(raw_only()).instant_query(data, "avg_over_time(m[4h])", 5 * hour + 17).is_ok());
    const auto from_raw = data.points_read() - read_before - from_rollups;
    CHECK(from_rollups * 5 < from_raw);
    // Steps far apart: edges are a small share of the range.
    REQUIRE(engine.range_query(data, "max_over_time(m[1h])", 2 * hour + 7, 5 * hour, 20 * minute)
                .is_ok());
    CHECK(data.rollup_selects() == before + 2);
}

TEST_CASE("staleness markers and NaN in a window send it back to raw points") {
    test::MemoryQueryable data;
    std::vector<Point> stale, with_nan;
    for (std::int64_t t = 0; t < 3 * hour; t += 10 * second) {
        stale.push_back({t, t == hour ? stale_nan() : static_cast<double>(t % 7)});
        with_nan.push_back({t, t == 2 * hour ? std::nan("") : static_cast<double>(t % 5)});
    }
    data.add(Labels({{"__name__", "s"}}), stale);
    data.add(Labels({{"__name__", "n"}}), with_nan);
    data.set_rollup_widths({minute, hour});
    const Engine rollups;
    const Engine raw(raw_only());
    for (const std::string q :
         {"count_over_time(s[2h])", "sum_over_time(s[2h])", "max_over_time(n[2h])",
          "min_over_time(n[2h])", "avg_over_time(n[2h])", "last_over_time(s[2h])"}) {
        auto a = rollups.instant_query(data, q, 3 * hour - 1);
        auto b = raw.instant_query(data, q, 3 * hour - 1);
        REQUIRE(a.is_ok());
        REQUIRE(b.is_ok());
        require_same(a.value(), b.value(), q);
    }
    // The marker is not a sample: 720 readings in two hours, one of them the marker.
    auto c = rollups.instant_query(data, "count_over_time(s[2h])", 2 * hour);
    REQUIRE(c.is_ok());
    CHECK(std::get<Vector>(c.value())[0].v == 720);
}
