// The PromQL parser: precedence, modifiers, selectors, literals and its error messages.
#include <catch2/catch.hpp>

#include <cmath>

#include "promql/parser.hpp"

using namespace citygate::promql;

namespace {

ExprPtr ok(std::string_view query) {
    auto result = parse(query);
    INFO(query << ": " << (result.is_ok() ? "" : result.error().message));
    REQUIRE(result.is_ok());
    return std::move(result.expr());
}

std::string error(std::string_view query) {
    auto result = parse(query);
    INFO(query);
    REQUIRE_FALSE(result.is_ok());
    return result.error().message;
}

double number(std::string_view query) {
    auto e = ok(query);
    REQUIRE(e->as<NumberLiteral>());
    return e->as<NumberLiteral>()->value;
}

}  // namespace

TEST_CASE("number literals: decimal, hex, octal, exponent, Inf and NaN") {
    CHECK(number("12.34e6") == 12340000);
    CHECK(number(".2") == 0.2);
    CHECK(number("2.") == 2);
    CHECK(number("0x1f") == 31);
    CHECK(number("010") == 8);
    CHECK(number("-0.2e-6") == -0.2e-6);
    CHECK(number("+Inf") == INFINITY);
    CHECK(number("-inf") == -INFINITY);
    CHECK(std::isnan(number("NaN")));
}

TEST_CASE("durations in ranges, subqueries and offsets") {
    CHECK(parse_duration("1h30m") == 5400000);
    CHECK(parse_duration("500ms") == 500);
    CHECK(parse_duration("1y2w") == (365 + 14) * 86400000LL);
    CHECK_FALSE(parse_duration("30m1h").has_value());
    CHECK_FALSE(parse_duration("1.5h").has_value());
    auto m = ok("foo[1h30m]");
    REQUIRE(m->as<MatrixSelector>());
    CHECK(m->as<MatrixSelector>()->range_ms == 5400000);
    auto s = ok("rate(foo[5m])[30m:1m] offset -5m");
    REQUIRE(s->as<Subquery>());
    CHECK(s->as<Subquery>()->range_ms == 1800000);
    CHECK(s->as<Subquery>()->step_ms == 60000);
    CHECK(s->as<Subquery>()->offset_ms == -300000);
    auto d = ok("foo[30m:]");
    CHECK(d->as<Subquery>()->step_ms == 0);
}

TEST_CASE("string literals: quotes and escapes") {
    auto s = ok(R"("a\"b\n\x41\u00e9")");
    CHECK(s->as<StringLiteral>()->value == "a\"b\nA\xc3\xa9");
    CHECK(ok("'it\\'s'")->as<StringLiteral>()->value == "it's");
    CHECK(ok("`raw\\n`")->as<StringLiteral>()->value == "raw\\n");
    CHECK(error("\"unterminated").find("unterminated quoted string") != std::string::npos);
    CHECK(error(R"("\q")").find("unknown escape sequence") != std::string::npos);
}

TEST_CASE("selectors: matchers, metric name, @ and offset") {
    auto e = ok(R"(foo{a="b", c!="d", e=~"f.*", g!~"h",})");
    const auto* v = e->as<VectorSelector>();
    REQUIRE(v);
    CHECK(v->name == "foo");
    REQUIRE(v->matchers.size() == 5);
    CHECK(v->matchers[4].name() == "__name__");
    CHECK(v->matchers[2].matches("fxyz"));
    CHECK_FALSE(v->matchers[2].matches("xfxyz"));  // anchored
    auto n = ok(R"({__name__="x"})");
    CHECK(n->as<VectorSelector>()->name.empty());
    auto a = ok("foo @ 100.5 offset 5m");
    CHECK(a->as<VectorSelector>()->at.timestamp_ms == 100500);
    CHECK(a->as<VectorSelector>()->offset_ms == 300000);
    CHECK(ok("foo @ start()")->as<VectorSelector>()->at.kind == AtModifier::Kind::start);
    CHECK(ok("foo[5m] @ end()")->as<MatrixSelector>()->selector.at.kind == AtModifier::Kind::end);
    CHECK(ok("sum")->as<VectorSelector>()->name == "sum");
    CHECK(ok("{on=\"x\"}")->as<VectorSelector>()->matchers[0].name() == "on");
    CHECK(error("{}").find("at least one non-empty matcher") != std::string::npos);
    CHECK(error(R"({a=""})").find("at least one non-empty matcher") != std::string::npos);
    CHECK(error(R"(foo{__name__="bar"})").find("metric name must not be set twice") !=
          std::string::npos);
    CHECK(error(R"(foo{a=~"("})").find("error parsing regexp") != std::string::npos);
    CHECK(error("foo offset 5m [5m]").find("no offset modifiers allowed before range") !=
          std::string::npos);
    CHECK(error("foo offset 1m offset 2m").find("offset may not be set multiple times") !=
          std::string::npos);
    CHECK(error("sum(foo) offset 1m").find("offset modifier must be preceded") !=
          std::string::npos);
    CHECK(error("(foo)[5m]").find("ranges only allowed for vector selectors") != std::string::npos);
}

TEST_CASE("operator precedence and associativity") {
    // 1 + 2 * 3 ^ 2 ^ 2 = 1 + 2 * (3 ^ (2 ^ 2))
    auto e = ok("1 + 2 * 3 ^ 2 ^ 2");
    const auto* add = e->as<Binary>();
    REQUIRE(add);
    CHECK(add->op == BinaryOp::add);
    const auto* mul = add->rhs->as<Binary>();
    REQUIRE(mul);
    CHECK(mul->op == BinaryOp::mul);
    const auto* pow = mul->rhs->as<Binary>();
    REQUIRE(pow);
    CHECK(pow->op == BinaryOp::pow);
    CHECK(pow->rhs->as<Binary>()->op == BinaryOp::pow);
    // -a ^ b is -(a ^ b); -a * b is (-a) * b.
    CHECK(ok("-foo ^ 2")->as<Unary>());
    CHECK(ok("-foo * 2")->as<Binary>());
    // Set operators bind loosest: a or b and c is a or (b and c).
    auto s = ok("a or b and c");
    CHECK(s->as<Binary>()->op == BinaryOp::lor);
    CHECK(s->as<Binary>()->rhs->as<Binary>()->op == BinaryOp::land);
    CHECK(ok("1 - 2 - 3")->as<Binary>()->lhs->as<Binary>());
}

TEST_CASE("vector matching modifiers and bool") {
    auto e = ok("a > bool on(x, y) group_left(z) b");
    const auto* b = e->as<Binary>();
    REQUIRE(b);
    CHECK(b->return_bool);
    CHECK(b->matching->on);
    CHECK(b->matching->labels == std::vector<std::string>{"x", "y"});
    CHECK(b->matching->card == VectorMatching::Card::many_to_one);
    CHECK(b->matching->include == std::vector<std::string>{"z"});
    CHECK(ok("a * ignoring(x) group_right b")->as<Binary>()->matching->card ==
          VectorMatching::Card::one_to_many);
    CHECK(error("1 > 2").find("comparisons between scalars must use BOOL modifier") !=
          std::string::npos);
    CHECK(error("a + bool b").find("bool modifier can only be used on comparison operators") !=
          std::string::npos);
    CHECK(error("a and 1").find("set operator \"and\" not allowed in binary scalar expression") !=
          std::string::npos);
    CHECK(error("a and on(x) group_left b").find("no grouping allowed") != std::string::npos);
    CHECK(error("a + on(x) group_left(x) b").find("must not occur in ON and GROUP clause") !=
          std::string::npos);
}

TEST_CASE("aggregations: modifiers before or after, parameters") {
    auto a = ok("sum by (a, b) (foo)");
    CHECK(a->as<Aggregate>()->grouping == std::vector<std::string>{"a", "b"});
    auto b = ok("sum(foo) without (a)");
    CHECK(b->as<Aggregate>()->without);
    auto t = ok("topk(3, foo)");
    CHECK(t->as<Aggregate>()->param->as<NumberLiteral>()->value == 3);
    CHECK(ok("count_values(\"v\", foo)")->as<Aggregate>()->param->as<StringLiteral>());
    CHECK(ok("sum by (on, group_left) (foo)"));
    CHECK(error("topk(foo)").find("wrong number of arguments") != std::string::npos);
    CHECK(error("sum()").find("no arguments for aggregate expression") != std::string::npos);
    CHECK(error("count_values(1, foo)").find("expected type string in aggregation parameter") !=
          std::string::npos);
    CHECK(error("sum(foo[5m])")
              .find("expected type instant vector in aggregation expression, got range vector") !=
          std::string::npos);
}

TEST_CASE("function calls: arity and argument types") {
    CHECK(ok("rate(foo[5m])")->as<Call>()->function->name == "rate");
    CHECK(ok("round(foo, 0.5)"));
    CHECK(ok("label_join(foo, \"a\", \",\", \"b\", \"c\", \"d\")"));
    CHECK(ok("time()")->type() == ValueType::scalar);
    CHECK(
        error("rate(foo)")
            .find("expected type range vector in call to function \"rate\", got instant vector") !=
        std::string::npos);
    CHECK(error("abs(foo, bar)").find("expected 1 argument(s) in call to \"abs\", got 2") !=
          std::string::npos);
    CHECK(error("nosuch(foo)").find("unknown function with name \"nosuch\"") != std::string::npos);
    CHECK(error("round(foo, 1, 2)").find("expected at most 2 argument(s)") != std::string::npos);
    CHECK(error("abs(foo,)").find("trailing commas") != std::string::npos);
}

TEST_CASE("errors carry line and column") {
    CHECK(error("foo +") == "1:6: parse error: unexpected end of input");
    CHECK(error("foo\n  bar").rfind("2:3: parse error: unexpected identifier \"bar\"", 0) == 0);
    CHECK(error("").find("no expression found in input") != std::string::npos);
    CHECK(error("5m").find("unexpected duration") != std::string::npos);
    CHECK(error("foo[5m:1m").find("expected \"]\"") != std::string::npos);
}

TEST_CASE("hostile input is bounded") {
    std::string deep(10000, '(');
    deep += "1";
    deep += std::string(10000, ')');
    CHECK(error(deep).find("nesting is deeper than") != std::string::npos);
    std::string minus(10000, '-');
    minus += "1";
    CHECK(error(minus).find("nesting is deeper than") != std::string::npos);
    ParseLimits small;
    small.max_length = 10;
    auto r = parse("foo + bar + baz", small);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.error().message.find("longer than 10 bytes") != std::string::npos);
}
