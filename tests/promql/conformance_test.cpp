// Runs Prometheus' own PromQL test scripts (tests/promql/testdata/*.test, copied from Prometheus
// v2.42.0) against this engine over an in-memory Queryable: `load <interval>` blocks of series
// in Prometheus' series notation, `clear`, and `eval[_fail|_ordered] instant at <time> <expr>`
// with the expected samples. Like Prometheus' promql/test.go, every eval also runs as a range
// query from time-1m to time+1m by 1m and its middle step must give the same answer. Cases this
// engine deliberately does not support are listed in `skipped` below with the reason; nothing is
// skipped silently. Prints "conformance <file>: <passed>/<run> passed, <skipped> skipped".
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <iostream>
#include <sstream>

#include "promql/engine.hpp"
#include "tests/promql/memory_queryable.hpp"
#include "tests/support/temp_dir.hpp"

using namespace citygate::promql;

namespace {

struct Skip {
    std::string_view file;
    int line;  // of the eval command, as the file in testdata/ numbers it
    std::string_view reason;
};

// Deliberately unsupported cases.
const Skip skipped[] = {
    {"", 0, ""},
};

std::string trim(std::string_view s) {
    const auto b = s.find_first_not_of(" \t\r");
    if (b == std::string_view::npos) return {};
    const auto e = s.find_last_not_of(" \t\r");
    return std::string(s.substr(b, e - b + 1));
}

struct Expected {
    Labels labels;
    double value = 0;
    int position = 0;  // 1-based
};

struct Eval {
    int line = 0;
    std::string expr;
    std::int64_t time_ms = 0;
    bool fail = false;
    bool ordered = false;
    bool scalar = false;  // expects one scalar value
    double scalar_value = 0;
    std::vector<Expected> expected;
};

// Splits `metric{a="b"} values...` into its labels and the rest.
std::pair<Labels, std::string> parse_metric(const std::string& line) {
    std::size_t i = 0;
    while (i < line.size() &&
           (std::isalnum(static_cast<unsigned char>(line[i])) || line[i] == '_' || line[i] == ':'))
        ++i;
    if (i < line.size() && line[i] == '{') {
        bool quoted = false;
        char quote = 0;
        for (; i < line.size(); ++i) {
            const char c = line[i];
            if (quoted) {
                if (c == '\\') {
                    ++i;
                } else if (c == quote) {
                    quoted = false;
                }
            } else if (c == '"' || c == '\'' || c == '`') {
                quoted = true;
                quote = c;
            } else if (c == '}') {
                ++i;
                break;
            }
        }
    }
    const std::string metric = line.substr(0, i);
    const std::string rest = trim(line.substr(i));
    if (metric == "{}") return {Labels{}, rest};
    auto parsed = parse(metric);
    if (!parsed.is_ok())
        throw std::runtime_error("bad metric " + metric + ": " + parsed.error().message);
    const auto* vs = parsed.expr()->as<VectorSelector>();
    if (!vs) throw std::runtime_error("bad metric " + metric);
    std::vector<Label> labels;
    for (const auto& m : vs->matchers)
        labels.push_back(Label{m.name(), m.value()});
    return {Labels(std::move(labels)), rest};
}

double number(const std::string& s) {
    auto v = parse_number(s);
    if (!v) throw std::runtime_error("bad number " + s);
    return *v;
}

// Series notation: `1 2 _ stale 3x4 1+2x3 -1-1x2 _x3`. nullopt: an omitted sample.
std::vector<std::optional<double>> parse_values(const std::string& text) {
    std::vector<std::optional<double>> out;
    std::istringstream in(text);
    std::string item;
    while (in >> item) {
        if (item == "_") {
            out.push_back(std::nullopt);
            continue;
        }
        if (item == "stale") {
            out.push_back(stale_nan());
            continue;
        }
        const auto x = item.find('x');
        if (x == std::string::npos) {
            out.push_back(number(item));
            continue;
        }
        const std::string head = item.substr(0, x);
        const int times = std::stoi(item.substr(x + 1));
        if (head == "_") {
            for (int k = 0; k < times; ++k)
                out.push_back(std::nullopt);
            continue;
        }
        std::size_t split = std::string::npos;
        for (std::size_t k = 1; k < head.size(); ++k) {
            if ((head[k] == '+' || head[k] == '-') && head[k - 1] != 'e' && head[k - 1] != 'E') {
                split = k;
                break;
            }
        }
        double value = number(head.substr(0, split));
        const double delta = split == std::string::npos ? 0 : number(head.substr(split));
        for (int k = 0; k <= times; ++k) {
            out.push_back(value);
            value += delta;
        }
    }
    return out;
}

bool almost_equal(double a, double b) {
    constexpr double epsilon = 0.000001;
    constexpr double min_normal = 2.2250738585072014e-308;
    if (std::isnan(a) && std::isnan(b)) return true;
    if (a == b) return true;
    const double diff = std::abs(a - b);
    if (a == 0 || b == 0 || diff < min_normal) return diff < epsilon * min_normal;
    return diff / (std::abs(a) + std::abs(b)) < epsilon;
}

std::string compare_vector(const Eval& e, const Vector& got) {
    std::vector<bool> seen(e.expected.size(), false);
    for (std::size_t pos = 0; pos < got.size(); ++pos) {
        const auto& s = got[pos];
        auto it = std::find_if(e.expected.begin(), e.expected.end(),
                               [&](const Expected& x) { return x.labels == s.labels; });
        if (it == e.expected.end())
            return "unexpected metric " + s.labels.to_string() + " in result";
        if (e.ordered && it->position != static_cast<int>(pos) + 1) {
            return "expected metric " + s.labels.to_string() + " at position " +
                   std::to_string(it->position) + " but was at " + std::to_string(pos + 1);
        }
        if (!almost_equal(it->value, s.v)) {
            std::ostringstream m;
            m.precision(17);
            m << "expected " << it->value << " for " << s.labels.to_string() << " but got " << s.v;
            return m.str();
        }
        seen[static_cast<std::size_t>(it - e.expected.begin())] = true;
    }
    for (std::size_t i = 0; i < seen.size(); ++i) {
        if (!seen[i]) return "expected metric " + e.expected[i].labels.to_string() + " not found";
    }
    return {};
}

std::string compare(const Eval& e, const Value& v) {
    if (std::holds_alternative<Matrix>(v)) return "received range result on instant evaluation";
    if (const auto* s = std::get_if<Scalar>(&v)) {
        if (!e.scalar) return "got a scalar, expected a vector";
        if (!almost_equal(e.scalar_value, s->v)) {
            std::ostringstream m;
            m << "expected scalar " << e.scalar_value << " but got " << s->v;
            return m.str();
        }
        return {};
    }
    if (const auto* vec = std::get_if<Vector>(&v)) {
        if (e.scalar) return "got a vector, expected a scalar";
        return compare_vector(e, *vec);
    }
    return "unexpected result type";
}

// Runs one eval; "" when it passes, otherwise why not.
std::string run(const Engine& engine, test::MemoryQueryable& data, const Eval& e) {
    auto instant = engine.instant_query(data, e.expr, e.time_ms);
    if (e.fail) return instant.is_ok() ? "expected an error, got none" : "";
    if (!instant.is_ok()) return "error: " + instant.error().message;
    if (auto why = compare(e, instant.value()); !why.empty()) return why;
    auto range = engine.range_query(data, e.expr, e.time_ms - 60000, e.time_ms + 60000, 60000);
    if (!range.is_ok()) return "range mode error: " + range.error().message;
    if (e.ordered) return {};
    const auto* m = std::get_if<Matrix>(&range.value());
    if (!m) return "range mode: not a matrix";
    Vector middle;
    for (const auto& s : *m) {
        for (const auto& p : s.points) {
            if (p.t == e.time_ms) middle.push_back(Sample{s.labels, p.t, p.v});
        }
    }
    Value as_instant =
        e.scalar ? Value(Scalar{e.time_ms, middle.empty() ? NAN : middle[0].v}) : Value(middle);
    if (auto why = compare(e, as_instant); !why.empty()) return "range mode: " + why;
    return {};
}

struct Counts {
    int run = 0;
    int passed = 0;
    int skipped = 0;
    std::vector<std::string> failures;
};

Counts run_script(const std::string& name, const std::string& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path);
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);) {
        l = trim(l);
        if (!l.empty() && l[0] == '#') l.clear();
        lines.push_back(l);
    }
    Engine engine;
    test::MemoryQueryable data;
    Counts counts;
    for (std::size_t i = 0; i < lines.size(); ++i) {
        const std::string& l = lines[i];
        if (l.empty()) continue;
        const int line_no = static_cast<int>(i) + 1;
        if (l == "clear") {
            data.clear();
        } else if (l.rfind("load ", 0) == 0) {
            auto gap = parse_duration(trim(l.substr(5)));
            if (!gap)
                throw std::runtime_error(name + ":" + std::to_string(line_no) +
                                         ": bad load interval");
            while (i + 1 < lines.size() && !lines[i + 1].empty()) {
                auto [labels, rest] = parse_metric(lines[++i]);
                std::vector<Point> points;
                std::int64_t t = 0;
                for (const auto& v : parse_values(rest)) {
                    if (v) points.push_back({t, *v});
                    t += *gap;
                }
                data.add(labels, points);
            }
        } else if (l.rfind("eval", 0) == 0) {
            Eval e;
            e.line = line_no;
            std::istringstream words(l);
            std::string command, instant, at, time;
            words >> command >> instant >> at >> time;
            e.fail = command == "eval_fail";
            e.ordered = command == "eval_ordered";
            auto t = parse_duration(time);
            if (instant != "instant" || at != "at" || !t) {
                throw std::runtime_error(name + ":" + std::to_string(line_no) + ": bad eval line");
            }
            e.time_ms = *t;
            e.expr = trim(l.substr(l.find(time, l.find(" at ") + 4) + time.size()));
            for (int pos = 1; i + 1 < lines.size() && !lines[i + 1].empty(); ++pos) {
                const std::string& x = lines[++i];
                if (auto n = parse_number(x)) {
                    e.scalar = true;
                    e.scalar_value = *n;
                    break;
                }
                auto [labels, rest] = parse_metric(x);
                auto values = parse_values(rest);
                if (values.size() != 1 || !values[0])
                    throw std::runtime_error(name + ": bad expected line " + x);
                e.expected.push_back(Expected{labels, *values[0], pos});
            }
            auto skip = std::find_if(std::begin(skipped), std::end(skipped), [&](const Skip& s) {
                return s.file == name && s.line == e.line;
            });
            if (skip != std::end(skipped)) {
                counts.skipped++;
                continue;
            }
            counts.run++;
            const std::string why = run(engine, data, e);
            if (why.empty()) {
                counts.passed++;
            } else {
                counts.failures.push_back(name + ":" + std::to_string(e.line) + ": " + e.expr +
                                          ": " + why);
            }
        } else {
            throw std::runtime_error(name + ":" + std::to_string(line_no) + ": invalid command " +
                                     l);
        }
    }
    return counts;
}

Counts run_file(const std::string& name) {
    return run_script(name, std::string(CITYGATE_PROMQL_TESTDATA) + "/" + name);
}

void check_file(const std::string& name) {
    const Counts c = run_file(name);
    std::cout << "conformance " << name << ": " << c.passed << "/" << c.run << " passed, "
              << c.skipped << " skipped\n";
    for (const auto& f : c.failures)
        UNSCOPED_INFO(f);
    CHECK(c.failures.empty());
    CHECK(c.run > 0);
}

}  // namespace

TEST_CASE("conformance: aggregators.test") {
    check_file("aggregators.test");
}
TEST_CASE("conformance: at_modifier.test") {
    check_file("at_modifier.test");
}
TEST_CASE("conformance: collision.test") {
    check_file("collision.test");
}
TEST_CASE("conformance: functions.test") {
    check_file("functions.test");
}
TEST_CASE("conformance: histograms.test") {
    check_file("histograms.test");
}
TEST_CASE("conformance: literals.test") {
    check_file("literals.test");
}
TEST_CASE("conformance: operators.test") {
    check_file("operators.test");
}
TEST_CASE("conformance: selectors.test") {
    check_file("selectors.test");
}
TEST_CASE("conformance: staleness.test") {
    check_file("staleness.test");
}
TEST_CASE("conformance: subquery.test") {
    check_file("subquery.test");
}
TEST_CASE("conformance: trig_functions.test") {
    check_file("trig_functions.test");
}

TEST_CASE("conformance runner: a wrong expectation, a missing error and an unexpected one fail") {
    citygate::test::TempDir dir("promql-runner");
    const auto path = (dir.path() / "bad.test").string();
    std::ofstream(path) << "load 1m\n"
                           "  up{job=\"a\"} 1+1x10\n"
                           "\n"
                           "eval instant at 5m up\n"
                           "  up{job=\"a\"} 7\n"
                           "\n"
                           "eval instant at 5m up\n"
                           "  up{job=\"a\"} 6\n"
                           "\n"
                           "eval_fail instant at 5m up\n"
                           "\n"
                           "eval instant at 5m label_replace(up, \"x\", \"$1\", \"job\", \"(\")\n"
                           "\n"
                           "eval instant at 5m up{job=\"b\"}\n";
    const Counts c = run_script("bad.test", path);
    CHECK(c.run == 5);
    CHECK(c.passed == 2);
    REQUIRE(c.failures.size() == 3);
    CHECK(c.failures[0].find("expected 7") != std::string::npos);
    CHECK(c.failures[1].find("expected an error") != std::string::npos);
    CHECK(c.failures[2].find("error:") != std::string::npos);
}
