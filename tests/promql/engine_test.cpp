// The engine's contract beyond Prometheus' scripts: limits, cancellation, storage errors, the
// lookback option, result shapes and order, and the error kinds the HTTP layer maps to codes.
#include <catch2/catch.hpp>

#include <cmath>

#include "promql/engine.hpp"
#include "tests/promql/memory_queryable.hpp"

using namespace citygate::promql;

namespace {

constexpr std::int64_t minute = 60'000;

test::MemoryQueryable gauges(int series, int points, std::int64_t every = 15'000) {
    test::MemoryQueryable data;
    for (int s = 0; s < series; ++s) {
        std::vector<Point> pts;
        for (int i = 0; i < points; ++i)
            pts.push_back({i * every, static_cast<double>(s * 1000 + i)});
        data.add(Labels({{"__name__", "g"}, {"sensor", std::to_string(s)}}), pts);
    }
    return data;
}

class FailingQueryable final : public Queryable {
  public:
    explicit FailingQueryable(SelectError::Kind kind) : kind_(kind) {}
    SelectResult select(const std::vector<Matcher>&, std::int64_t, std::int64_t) override {
        return SelectError{kind_, "series limit 10 reached"};
    }

  private:
    SelectError::Kind kind_;
};

}  // namespace

TEST_CASE("an instant query of a selector gives the latest sample within the lookback delta") {
    test::MemoryQueryable data;
    data.add(Labels({{"__name__", "t"}}), {{0, 1}, {60'000, 2}});
    Engine engine;
    auto at = [&](const Engine& e, std::int64_t t) {
        auto r = e.instant_query(data, "t", t);
        REQUIRE(r.is_ok());
        return std::get<Vector>(r.value());
    };
    CHECK(at(engine, 60'000 + 5 * minute).size() == 1);  // exactly the lookback: included
    CHECK(at(engine, 60'000 + 5 * minute + 1).empty());  // just past it
    CHECK(at(engine, 90'000)[0].v == 2);
    CHECK(at(engine, 90'000)[0].t == 90'000);  // the evaluation time, not the sample's
    EngineOptions options;
    options.lookback_delta_ms = 10 * minute;
    CHECK(at(Engine(options), 60'000 + 9 * minute).size() == 1);
}

TEST_CASE("a staleness marker ends a series at once") {
    test::MemoryQueryable data;
    data.add(Labels({{"__name__", "t"}}), {{0, 1}, {60'000, stale_nan()}});
    Engine engine;
    auto r = engine.instant_query(data, "t", 90'000);
    REQUIRE(r.is_ok());
    CHECK(std::get<Vector>(r.value()).empty());
    auto c = engine.instant_query(data, "count_over_time(t[5m])", 90'000);
    REQUIRE(c.is_ok());
    CHECK(std::get<Vector>(c.value())[0].v == 1);  // the marker itself is not a sample
}

TEST_CASE("range queries answer a matrix sorted by labels, and scalars as one unlabelled series") {
    auto data = gauges(3, 100);
    Engine engine;
    auto r = engine.range_query(data, "sort_desc(g)", 0, 10 * minute, minute);
    REQUIRE(r.is_ok());
    const auto& m = std::get<Matrix>(r.value());
    REQUIRE(m.size() == 3);
    CHECK(m[0].labels.get("sensor") == "0");
    CHECK(m[2].labels.get("sensor") == "2");
    CHECK(m[0].points.size() == 11);
    auto s = engine.range_query(data, "time()", 0, 2 * minute, minute);
    REQUIRE(s.is_ok());
    const auto& sm = std::get<Matrix>(s.value());
    REQUIRE(sm.size() == 1);
    CHECK(sm[0].labels.empty());
    CHECK(sm[0].points[2].v == 120);
    auto one = engine.range_query(data, "g", minute, minute, minute);
    REQUIRE(one.is_ok());
    CHECK(std::get<Matrix>(one.value()).size() == 3);
    CHECK(std::get<Matrix>(one.value())[0].points.size() == 1);
}

TEST_CASE("an instant query of a range selector gives its raw points") {
    auto data = gauges(1, 100);
    Engine engine;
    auto r = engine.instant_query(data, "g[1m]", 2 * minute);
    REQUIRE(r.is_ok());
    const auto& m = std::get<Matrix>(r.value());
    REQUIRE(m.size() == 1);
    CHECK(m[0].points.size() == 5);  // 60s, 75s, 90s, 105s, 120s: both ends included (2.x)
    CHECK(m[0].labels.get("__name__") == "g");
}

TEST_CASE("bad queries are bad_data, with Prometheus' messages") {
    auto data = gauges(1, 10);
    Engine engine;
    auto parse_error = engine.instant_query(data, "sum(", 0);
    REQUIRE_FALSE(parse_error.is_ok());
    CHECK(parse_error.error().kind == QueryError::Kind::bad_data);
    CHECK(parse_error.error().message.find("parse error") != std::string::npos);
    auto step = engine.range_query(data, "g", 0, minute, 0);
    REQUIRE_FALSE(step.is_ok());
    CHECK(step.error().kind == QueryError::Kind::bad_data);
    auto matrix = engine.range_query(data, "g[5m]", 0, minute, 1000);
    REQUIRE_FALSE(matrix.is_ok());
    CHECK(matrix.error().message ==
          "invalid expression type \"range vector\" for range query, must be Scalar or instant "
          "Vector");
}

TEST_CASE("what cannot be executed is an execution error") {
    test::MemoryQueryable data;
    data.add(Labels({{"__name__", "a"}, {"x", "1"}, {"y", "1"}}), {{0, 1}});
    data.add(Labels({{"__name__", "a"}, {"x", "1"}, {"y", "2"}}), {{0, 1}});
    data.add(Labels({{"__name__", "b"}, {"x", "1"}}), {{0, 1}});
    Engine engine;
    auto many = engine.instant_query(data, "b + on(x) a", 0);
    REQUIRE_FALSE(many.is_ok());
    CHECK(many.error().kind == QueryError::Kind::execution);
    CHECK(many.error().message.find("many-to-many matching not allowed") != std::string::npos);
    auto multiple = engine.instant_query(data, "a + on(x) b", 0);
    REQUIRE_FALSE(multiple.is_ok());
    CHECK(multiple.error().message.find("multiple matches for labels") != std::string::npos);
    auto ok = engine.instant_query(data, "a + on(x) group_left b", 0);
    REQUIRE(ok.is_ok());
    CHECK(std::get<Vector>(ok.value()).size() == 2);
    auto regex = engine.instant_query(data, "label_replace(a, \"z\", \"$1\", \"x\", \"(\")", 0);
    REQUIRE_FALSE(regex.is_ok());
    CHECK(regex.error().message.find("invalid regular expression in label_replace()") !=
          std::string::npos);
}

TEST_CASE("max_samples bounds what a query holds, naming the limit") {
    auto data = gauges(100, 400);
    Engine engine;
    QueryLimits limits;
    limits.max_samples = 1000;
    auto small = engine.instant_query(data, "sum(g)", 10 * minute, limits);
    CHECK(small.is_ok());
    auto big = engine.range_query(data, "g", 0, 100 * minute, 15'000, limits);  // 100 x 401 points
    REQUIRE_FALSE(big.is_ok());
    CHECK(big.error().kind == QueryError::Kind::too_many_samples);
    CHECK(big.error().message ==
          "query processing would load too many samples into memory in query execution");
    auto window = engine.instant_query(data, "sum(count_over_time(g[100m]))", 100 * minute, limits);
    REQUIRE(window.is_ok());  // one window of 400 points at a time
    limits.max_samples = 300;
    auto too_wide =
        engine.instant_query(data, "sum(count_over_time(g[100m]))", 100 * minute, limits);
    REQUIRE_FALSE(too_wide.is_ok());
    CHECK(too_wide.error().kind == QueryError::Kind::too_many_samples);
}

TEST_CASE("the deadline and the cancellation flag end a query") {
    auto data = gauges(10, 100);
    Engine engine;
    QueryLimits limits;
    limits.deadline = std::chrono::steady_clock::now() - std::chrono::seconds(1);
    auto late = engine.range_query(data, "rate(g[5m])", 0, 100 * minute, 1000, limits);
    REQUIRE_FALSE(late.is_ok());
    CHECK(late.error().kind == QueryError::Kind::timeout);
    std::atomic<bool> cancelled{true};
    QueryLimits cancel;
    cancel.cancelled = &cancelled;
    auto stopped = engine.instant_query(data, "g", 0, cancel);
    REQUIRE_FALSE(stopped.is_ok());
    CHECK(stopped.error().kind == QueryError::Kind::cancelled);
}

TEST_CASE("a failing select ends the query with its kind and message") {
    FailingQueryable limited(SelectError::Kind::limit);
    Engine engine;
    auto r = engine.instant_query(limited, "sum(rate(x[5m]))", 0);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.error().kind == QueryError::Kind::storage);
    CHECK(r.error().select_kind == SelectError::Kind::limit);
    CHECK(r.error().message == "series limit 10 reached");
}

TEST_CASE("each selector is read once per query, over the range its steps need") {
    auto data = gauges(2, 100);
    Engine engine;
    auto r = engine.range_query(data, "rate(g[5m]) / g", 10 * minute, 20 * minute, 15'000);
    REQUIRE(r.is_ok());
    CHECK(data.selects() == 2);
}

TEST_CASE("subqueries step on multiples of their step") {
    auto data = gauges(1, 200);
    Engine engine;
    // At 10m05s a [3m:1m] subquery evaluates at 8m, 9m and 10m.
    auto r = engine.instant_query(data, "g[3m:1m]", 10 * minute + 5000);
    REQUIRE(r.is_ok());
    const auto& m = std::get<Matrix>(r.value());
    REQUIRE(m.size() == 1);
    REQUIRE(m[0].points.size() == 3);
    CHECK(m[0].points[0].t == 8 * minute);
    CHECK(m[0].points[2].t == 10 * minute);
    CHECK(m[0].points[2].v == 40);  // the sample at 10m, 40 samples of 15 s in
}

TEST_CASE("label sets share their list between copies, and a change copies it first") {
    Labels a{{"__name__", "pm25"}, {"district", "pudong"}};
    Labels b = a;
    b.set("district", "xuhui");
    b.set("device", "a-1");
    CHECK(a.get("district") == "pudong");
    CHECK_FALSE(a.has("device"));
    CHECK(b.to_string() == R"({__name__="pm25", device="a-1", district="xuhui"})");
    Labels c = a;
    c.erase("__name__");
    c.erase("district");
    CHECK(c.empty());
    CHECK(c == Labels{});
    CHECK(a.size() == 2);
    CHECK(a == Labels{{"district", "pudong"}, {"__name__", "pm25"}});
    CHECK(b < a);  // by the first label that differs: device < district
    CHECK(a.without_name() == Labels{{"district", "pudong"}});
}

TEST_CASE("topk keeps what Prometheus' heap keeps among equal values") {
    // Values in input (label) order, as met at one step of the harness against Prometheus 2.42:
    // it kept a-11 and dropped a-02, both 133 (a heap of 3: pop the top, push the newcomer).
    const std::vector<std::pair<std::string, double>> values = {
        {"a-00", 94}, {"a-01", 81}, {"a-02", 133}, {"a-10", 144}, {"a-11", 133}, {"a-12", 127},
        {"a-20", 10}, {"a-21", 74}, {"a-22", 96},  {"a-30", 142}, {"a-31", 47},  {"a-32", 24}};
    test::MemoryQueryable data;
    for (const auto& [device, v] : values)
        data.add(Labels({{"__name__", "pm25"}, {"device", device}}), {{0, v}});
    Engine engine;
    auto r = engine.instant_query(data, "topk(3, pm25)", 0);
    REQUIRE(r.is_ok());
    std::vector<std::string> kept;
    for (const auto& s : std::get<Vector>(r.value()))
        kept.emplace_back(s.labels.get("device"));
    CHECK(kept == std::vector<std::string>{"a-10", "a-30", "a-11"});  // best first
    auto bottom = engine.instant_query(data, "bottomk(1, pm25)", 0);
    REQUIRE(bottom.is_ok());
    CHECK(std::get<Vector>(bottom.value())[0].labels.get("device") == "a-20");
}
