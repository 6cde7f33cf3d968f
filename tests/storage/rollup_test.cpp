// Rollups and aggregated queries against a naive reference computed here from the raw points,
// including late samples and duplicates that must correct persisted buckets.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <random>

#include "tests/storage/helpers.hpp"
#include "tests/support/temp_dir.hpp"

using namespace citygate::storage;
using namespace citygate::storage::test;
using citygate::test::TempDir;

namespace {

constexpr std::int64_t kT0 = 1'718'409'600'000;  // a day start
constexpr std::int64_t kMin = 60'000;
constexpr std::int64_t kHour = 3'600'000;

// series key -> ts -> value (last write wins), the reference model.
using Model = std::map<std::string, std::map<std::int64_t, double>>;

double reference(const std::map<std::int64_t, double>& pts, std::int64_t from, std::int64_t to,
                 Aggregation f, bool& any) {
    double sum = 0, mn = INFINITY, mx = -INFINITY, first = 0, last = 0;
    std::size_t n = 0;
    for (auto it = pts.lower_bound(from); it != pts.end() && it->first < to; ++it) {
        if (n == 0) first = it->second;
        last = it->second;
        sum += it->second;
        mn = std::min(mn, it->second);
        mx = std::max(mx, it->second);
        ++n;
    }
    any = n > 0;
    switch (f) {
        case Aggregation::avg:
            return n ? sum / n : 0;
        case Aggregation::min:
            return mn;
        case Aggregation::max:
            return mx;
        case Aggregation::sum:
            return sum;
        case Aggregation::count:
            return static_cast<double>(n);
        case Aggregation::first:
            return first;
        case Aggregation::last:
            return last;
        case Aggregation::rate:
            break;
    }
    return 0;
}

void check_against_model(Engine& engine, const Model& model, std::int64_t start, std::int64_t end,
                         std::int64_t step) {
    for (auto f : {Aggregation::avg, Aggregation::min, Aggregation::max, Aggregation::sum,
                   Aggregation::count, Aggregation::first, Aggregation::last, Aggregation::rate}) {
        for (auto source : {AggregateQuery::Source::automatic, AggregateQuery::Source::raw}) {
            AggregateQuery q;
            q.selector = sel("pm25");
            q.start_ms = start;
            q.end_ms = end;
            q.step_ms = step;
            q.function = f;
            q.source = source;
            auto r = engine.query_aggregate(q);
            REQUIRE(r.is_ok());
            REQUIRE(r.value().size() == model.size());
            for (const auto& s : r.value()) {
                const auto& pts = model.at(s.key);
                std::size_t idx = 0;
                for (std::int64_t t = start; t < end; t += step) {
                    bool any = false, prev_any = false;
                    const std::int64_t to =
                        std::min(t + step, end);  // the range end cuts the last step
                    double v = reference(pts, t, to, f, any);
                    if (f == Aggregation::rate) {
                        double prev = reference(pts, t - step, t, Aggregation::last, prev_any);
                        double cur = reference(pts, t, to, Aggregation::last, any);
                        if (!any || !prev_any) continue;
                        v = (cur - prev) / (step / 1000.0);
                    }
                    if (!any) continue;
                    INFO("series " << s.key << " step " << t << " fn " << static_cast<int>(f)
                                   << " source " << static_cast<int>(source));
                    REQUIRE(idx < s.timestamps_ms.size());
                    CHECK(s.timestamps_ms[idx] == t);
                    CHECK(s.values[idx] == Approx(v).epsilon(1e-9).margin(1e-9));
                    ++idx;
                }
                CHECK(idx == s.timestamps_ms.size());
            }
        }
    }
}

}  // namespace

TEST_CASE("rollups match a naive reference, before and after flushes, with late data") {
    TempDir dir;
    EngineOptions o;
    o.directory = dir.path();
    o.shards = 2;
    o.retention = std::chrono::milliseconds(0);
    o.out_of_order_window = std::chrono::hours(2);
    o.target_chunk_points = 50;  // several chunks per series, so late data rewrites some
    auto engine = Engine::open(o);
    REQUIRE(engine.is_ok());
    auto& e = *engine.value();

    Model model;
    std::mt19937 rng(42);
    std::uniform_real_distribution<double> noise(-3, 3);
    auto write = [&](std::vector<Point> pts) {
        for (auto& p : pts)
            model[p.series][p.timestamp_ms] = p.value;
        REQUIRE(all_accepted(write_sync(e, std::move(pts))));
    };
    // Three hours of 10 s readings from 4 devices, in four slices with flushes between.
    for (int slice = 0; slice < 4; ++slice) {
        std::vector<Point> pts;
        for (int d = 0; d < 4; ++d) {
            for (std::int64_t t = kT0 + slice * 45 * kMin; t < kT0 + (slice + 1) * 45 * kMin;
                 t += 10'000) {
                double v = std::round((30 + d + noise(rng)) * 10) / 10;
                pts.push_back({key("pm25", "r-" + std::to_string(d)), t, v});
            }
        }
        write(std::move(pts));
        if (slice % 2 == 1) REQUIRE(e.flush().is_ok());
    }
    check_against_model(e, model, kT0, kT0 + 3 * kHour, kMin);
    check_against_model(e, model, kT0, kT0 + 3 * kHour, kHour);

    // Late samples and duplicates into flushed minutes and hours: still in the head first...
    std::vector<Point> late;
    for (int d = 0; d < 4; ++d) {
        auto k = key("pm25", "r-" + std::to_string(d));
        late.push_back({k, kT0 + 2 * kHour + 5'000, 99.5});    // new point inside a minute
        late.push_back({k, kT0 + 2 * kHour + 10'000, -7.25});  // overwrites a point
        late.push_back({k, kT0 + 90 * kMin + 1, 1000});        // new max for an hour
    }
    write(late);
    check_against_model(e, model, kT0, kT0 + 3 * kHour, kMin);
    check_against_model(e, model, kT0, kT0 + 3 * kHour, kHour);
    // ...then persisted: buckets rewritten from merged raw points.
    REQUIRE(e.flush().is_ok());
    check_against_model(e, model, kT0, kT0 + 3 * kHour, kMin);
    check_against_model(e, model, kT0, kT0 + 3 * kHour, kHour);
    check_against_model(e, model, kT0 + 7 * kMin, kT0 + 170 * kMin, 5 * kMin);
    check_against_model(e, model, kT0 + 7'000, kT0 + 170 * kMin, 45'000);  // unaligned: raw

    // And consistent after reopening.
    engine.value().reset();
    auto reopened = Engine::open(o);
    REQUIRE(reopened.is_ok());
    check_against_model(*reopened.value(), model, kT0, kT0 + 3 * kHour, kHour);
    check_against_model(*reopened.value(), model, kT0, kT0 + 3 * kHour, kMin);
}

TEST_CASE("group by tags combines series per step") {
    TempDir dir;
    EngineOptions o;
    o.directory = dir.path();
    o.shards = 3;
    o.retention = std::chrono::milliseconds(0);
    auto engine = Engine::open(o);
    REQUIRE(engine.is_ok());
    auto& e = *engine.value();
    std::vector<Point> pts;
    for (int d = 0; d < 6; ++d) {
        std::string district = d % 2 ? "pudong" : "xuhui";
        for (int i = 0; i < 60; ++i) {
            pts.push_back({key("pm25", "g-" + std::to_string(d), district), kT0 + i * 60'000,
                           static_cast<double>(d)});
        }
    }
    REQUIRE(all_accepted(write_sync(e, pts)));
    REQUIRE(e.flush().is_ok());
    AggregateQuery q;
    q.selector = sel("pm25");
    q.start_ms = kT0;
    q.end_ms = kT0 + kHour;
    q.step_ms = kHour;
    q.function = Aggregation::avg;
    q.group_by = std::vector<std::string>{"district"};
    auto r = e.query_aggregate(q);
    REQUIRE(r.is_ok());
    REQUIRE(r.value().size() == 2);
    CHECK(r.value()[0].key == R"({district="pudong"})");
    CHECK(r.value()[0].values == std::vector<double>{3});  // devices 1, 3, 5
    CHECK(r.value()[1].values == std::vector<double>{2});  // devices 0, 2, 4
    q.function = Aggregation::count;
    q.group_by = std::vector<std::string>{};
    r = e.query_aggregate(q);
    REQUIRE(r.is_ok());
    REQUIRE(r.value().size() == 1);
    CHECK(r.value()[0].values == std::vector<double>{360});
    q.function = Aggregation::max;
    q.group_by.reset();
    r = e.query_aggregate(q);
    REQUIRE(r.is_ok());
    CHECK(r.value().size() == 6);
}

TEST_CASE("parse_aggregation knows the functions") {
    CHECK(parse_aggregation("rate") == Aggregation::rate);
    CHECK(parse_aggregation("avg") == Aggregation::avg);
    CHECK_FALSE(parse_aggregation("median").has_value());
}

TEST_CASE("rollup reads give each bucket's summary and the raw points of the spans asked for") {
    TempDir dir;
    EngineOptions o;
    o.directory = dir.path();
    o.shards = 2;
    o.retention = std::chrono::milliseconds(0);
    o.out_of_order_window = std::chrono::hours(3);
    o.target_chunk_points = 50;
    auto engine = Engine::open(o);
    REQUIRE(engine.is_ok());
    auto& e = *engine.value();

    Model model;
    auto write = [&](std::vector<Point> pts) {
        for (auto& p : pts)
            model[p.series][p.timestamp_ms] = p.value;
        REQUIRE(all_accepted(write_sync(e, std::move(pts))));
    };
    auto readings = [&](std::int64_t from, std::int64_t to, int salt) {
        std::vector<Point> pts;
        for (int d = 0; d < 3; ++d) {
            for (std::int64_t t = from; t < to; t += 10'000) {
                // Jittered, and every fifth reading exactly on a minute.
                std::int64_t at = (t / 10'000) % 5 == 0 ? t - t % kMin : t + (t * 7 + d) % 41 - 20;
                pts.push_back({key("pm25", "d" + std::to_string(d)), at,
                               std::round(std::sin(static_cast<double>(at + salt)) * 1000) / 100});
            }
        }
        return pts;
    };
    write(readings(kT0, kT0 + 2 * kHour, 0));
    REQUIRE(e.flush().is_ok());
    write(readings(kT0 + 2 * kHour, kT0 + 3 * kHour, 1));  // in the head
    // Late readings rewrite flushed buckets: the head holds them until the next flush.
    write(readings(kT0 + 30 * kMin, kT0 + 31 * kMin, 2));

    auto check = [&](std::int64_t width, std::int64_t start, std::int64_t end,
                     std::vector<TimeSpan> spans) {
        QueryBudget budget{QueryLimits{}};
        auto r = e.query_rollups(sel("pm25"), width, start, end, spans, budget);
        REQUIRE(r.is_ok());
        REQUIRE(r.value().size() == model.size());
        for (const auto& s : r.value()) {
            const auto& pts = model.at(s.series);
            std::vector<BucketSummary> want;
            for (auto it = pts.lower_bound(start); it != pts.end() && it->first < end; ++it) {
                const std::int64_t b = it->first - (it->first - start) % width;
                if (want.empty() || want.back().start != b) {
                    want.push_back({b, 0, 0, it->second, it->second, 0});
                }
                auto& w = want.back();
                ++w.count;
                w.sum += it->second;
                w.min = std::min(w.min, it->second);
                w.max = std::max(w.max, it->second);
                w.last = it->second;
            }
            INFO(s.series << " width " << width);
            REQUIRE(s.buckets.size() == want.size());
            for (std::size_t i = 0; i < want.size(); ++i) {
                CHECK(s.buckets[i].start == want[i].start);
                CHECK(s.buckets[i].count == want[i].count);
                CHECK(s.buckets[i].sum == Approx(want[i].sum).margin(1e-9));
                CHECK(s.buckets[i].min == want[i].min);
                CHECK(s.buckets[i].max == want[i].max);
                CHECK(s.buckets[i].last == want[i].last);
            }
            std::vector<std::int64_t> edge_ts;
            std::vector<double> edge_values;
            for (const auto& [ts, v] : pts) {
                for (const auto& span : spans) {
                    if (ts >= span.start_ms && ts < span.end_ms) {
                        edge_ts.push_back(ts);
                        edge_values.push_back(v);
                        break;
                    }
                }
            }
            CHECK(s.edge_timestamps_ms == edge_ts);
            CHECK(s.edge_values == edge_values);
        }
    };
    // Overlapping, unsorted and empty spans are merged; edges from chunks and from the head.
    check(kMin, kT0 + 10 * kMin, kT0 + 170 * kMin,
          {{kT0 + 170 * kMin, kT0 + 170 * kMin + 33'333},
           {kT0 + 9 * kMin + 1, kT0 + 10 * kMin},
           {kT0 + 30 * kMin, kT0 + 30 * kMin + 1},
           {kT0 + 30 * kMin, kT0 + 30 * kMin + 20'000},
           {kT0 + 50 * kMin, kT0 + 50 * kMin}});
    check(kHour, kT0, kT0 + 3 * kHour, {});
    check(kMin, kT0 + kHour, kT0 + kHour, {{kT0, kT0 + 3 * kHour}});  // edges only
    REQUIRE(e.flush().is_ok());
    check(kMin, kT0, kT0 + 3 * kHour, {{kT0 + 150 * kMin + 1, kT0 + 150 * kMin + 40'000}});

    QueryBudget budget{QueryLimits{}};
    CHECK(!e.query_rollups(sel("pm25"), 30'000, kT0, kT0 + kHour, {}, budget).is_ok());
    CHECK(!e.query_rollups(sel("pm25"), kMin, kT0 + 1, kT0 + kHour, {}, budget).is_ok());
}
