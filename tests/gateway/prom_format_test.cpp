// Prometheus' HTTP API wire format: numbers, times, envelopes, parameters.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "gateway/http/prom_format.hpp"
#include "gateway/http/promql_queryable.hpp"

using namespace citygate::gateway;
namespace promql = citygate::promql;
namespace http = boost::beast::http;

namespace {
std::string number(double v) {
    std::string out;
    append_prom_float(out, v);
    return out;
}
std::string seconds(std::int64_t ms) {
    std::string out;
    append_prom_time(out, ms);
    return out;
}
}  // namespace

TEST_CASE("values are written as Go's FormatFloat(v, 'f', -1, 64)") {
    CHECK(number(1) == "1");
    CHECK(number(0.1) == "0.1");
    CHECK(number(-2.5) == "-2.5");
    CHECK(number(35.2) == "35.2");
    CHECK(number(1e21) == "1000000000000000000000");
    CHECK(number(1e-7) == "0.0000001");
    CHECK(number(0.30000000000000004) == "0.30000000000000004");
    CHECK(number(std::nan("")) == "NaN");
    CHECK(number(std::numeric_limits<double>::infinity()) == "+Inf");
    CHECK(number(-std::numeric_limits<double>::infinity()) == "-Inf");
}

TEST_CASE("timestamps are seconds with up to three decimals") {
    CHECK(seconds(1435781451781) == "1435781451.781");
    CHECK(seconds(1435781451500) == "1435781451.5");
    CHECK(seconds(1435781451000) == "1435781451");
    CHECK(seconds(12) == "0.012");
    CHECK(seconds(-1500) == "-1.5");
}

TEST_CASE("times parse as seconds with a fraction or RFC 3339") {
    CHECK(parse_prom_time("1700000000") == 1700000000000);
    CHECK(parse_prom_time("1700000000.5") == 1700000000500);
    CHECK(parse_prom_time("1700000000.123") == 1700000000123);
    CHECK(parse_prom_time("2023-11-14T22:13:20Z") == 1700000000000);
    CHECK(parse_prom_time("2023-11-14T22:13:20.25Z") == 1700000000250);
    CHECK(parse_prom_time("2023-11-14T23:13:20+01:00") == 1700000000000);
    CHECK_FALSE(parse_prom_time(""));
    CHECK_FALSE(parse_prom_time("yesterday"));
    CHECK_FALSE(parse_prom_time("2023-11-14 22:13:20"));
    CHECK_FALSE(parse_prom_time("2023-13-14T22:13:20Z"));
    CHECK_FALSE(parse_prom_time("1e300"));
}

TEST_CASE("durations parse as seconds or PromQL durations") {
    CHECK(parse_prom_duration("30") == 30'000);
    CHECK(parse_prom_duration("0.5") == 500);
    CHECK(parse_prom_duration("5m") == 300'000);
    CHECK(parse_prom_duration("1h30m") == 5'400'000);
    CHECK_FALSE(parse_prom_duration("-1"));
    CHECK_FALSE(parse_prom_duration("5 minutes"));
}

TEST_CASE("values come in Prometheus' result shapes") {
    std::string out;
    append_prom_value(out, promql::Scalar{1500, 2});
    CHECK(out == R"({"resultType":"scalar","result":[1.5,"2"]})");
    out.clear();
    append_prom_value(out, promql::String{1000, "hi"});
    CHECK(out == R"({"resultType":"string","result":[1,"hi"]})");
    out.clear();
    promql::Vector v{{promql::Labels{{"__name__", "up"}, {"job", "a"}}, 2000, 1}};
    append_prom_value(out, v);
    CHECK(out == R"({"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a"},)"
                 R"("value":[2,"1"]}]})");
    out.clear();
    promql::Matrix m{{promql::Labels{{"d", "x"}}, {{1000, 1}, {2000, std::nan("")}}}};
    append_prom_value(out, m);
    CHECK(out == R"({"resultType":"matrix","result":[{"metric":{"d":"x"},)"
                 R"("values":[[1,"1"],[2,"NaN"]]}]})");
    CHECK(prom_value_json_bytes(m) >= out.size());
}

TEST_CASE("errors have Prometheus' envelope and status codes") {
    auto r = prom_failure(PromError::execution, "too many series (http.max_query_series)");
    CHECK(r.result() == http::status::unprocessable_entity);
    CHECK(r.body() ==
          "{\"status\":\"error\",\"errorType\":\"execution\","
          "\"error\":\"too many series (http.max_query_series)\"}");
    CHECK(prom_failure(PromError::bad_data, "x").result() == http::status::bad_request);
    CHECK(prom_failure(PromError::timeout, "x").result() == http::status::service_unavailable);
    auto ok = prom_success("[]", {"results truncated due to limit"});
    CHECK(ok.body() ==
          R"({"status":"success","data":[],"warnings":["results truncated due to limit"]})");
}

TEST_CASE("parameters come from the query string and a form-encoded POST body") {
    HttpRequest post{http::verb::post, "/api/v1/series?match[]=a", 11};
    post.set(http::field::content_type, "application/x-www-form-urlencoded; charset=utf-8");
    post.body() = "match%5B%5D=b%7Bx%3D%22y%22%7D&start=1&query=a+b";
    std::string error;
    auto params = PromParams::parse(post, "match[]=a", error);
    REQUIRE(params);
    CHECK(params->all("match[]") == std::vector<std::string>{"a", "b{x=\"y\"}"});
    CHECK(params->get("query") == "a b");
    CHECK_FALSE(params->has("end"));
    HttpRequest bad{http::verb::get, "/api/v1/query?query=%zz", 11};
    CHECK_FALSE(PromParams::parse(bad, "query=%zz", error));
    CHECK_FALSE(error.empty());
}

TEST_CASE("a request is Prometheus' by its method or parameters") {
    HttpRequest get{http::verb::get, "/", 11};
    HttpRequest post{http::verb::post, "/", 11};
    CHECK(is_prometheus_request(get, "query=up&start=1"));
    CHECK(is_prometheus_request(get, "match[]=up"));
    CHECK(is_prometheus_request(get, "match%5B%5D=up"));
    CHECK_FALSE(is_prometheus_request(get, "series=up&start=1&end=2"));
    CHECK_FALSE(is_prometheus_request(get, "match=up"));
    CHECK(is_prometheus_request(post, ""));
}

TEST_CASE("series keys become PromQL labels and matchers storage selectors") {
    auto labels = labels_of_key("pm25{device=\"a-1\",district=\"pudong\"}");
    CHECK(labels ==
          promql::Labels{{"__name__", "pm25"}, {"device", "a-1"}, {"district", "pudong"}});
    std::vector<promql::Matcher> ms{{promql::Matcher::Type::regex, "district", "pu.*"},
                                    {promql::Matcher::Type::not_equal, "__name__", "x"}};
    auto selector = to_storage_selector(ms);
    REQUIRE(selector.matchers.size() == 2);
    CHECK(selector.matchers[0].op == citygate::storage::Matcher::Op::regex);
    CHECK(selector.matchers[0].value == "pu.*");
    CHECK(selector.matchers[1].op == citygate::storage::Matcher::Op::not_equal);
}
