// The HTTP route table: literal and parameter patterns, 404 for unknown paths, 405 with Allow.
#include <catch2/catch.hpp>

#include "gateway/http/router.hpp"

using namespace citygate::gateway;
namespace http = boost::beast::http;

namespace {

HttpRequest request(http::verb method, std::string target) {
    HttpRequest r(method, target, 11);
    return r;
}

HttpResponse echo(const HttpCall& call) {
    std::string body(call.path);
    body += '|';
    body += call.query;
    for (auto param : call.params) {
        body += '|';
        body += param;
    }
    return json_response(http::status::ok, body);
}

}  // namespace

TEST_CASE("a literal route answers its path and passes the query through") {
    Router router;
    router.add({http::verb::get}, "/api/v1/series", echo);
    auto response = router.dispatch(request(http::verb::get, "/api/v1/series?match=up&x=1"));
    CHECK(response.result() == http::status::ok);
    CHECK(response.body() == "/api/v1/series|match=up&x=1");
    // GET routes answer HEAD too.
    CHECK(router.dispatch(request(http::verb::head, "/api/v1/series")).result() ==
          http::status::ok);
}

TEST_CASE("a parameter segment matches one non-empty segment") {
    Router router;
    router.add({http::verb::get}, "/api/v1/labels/{name}/values", echo);
    CHECK(router.dispatch(request(http::verb::get, "/api/v1/labels/district/values")).body() ==
          "/api/v1/labels/district/values||district");
    CHECK(router.dispatch(request(http::verb::get, "/api/v1/labels//values")).result() ==
          http::status::not_found);
    CHECK(router.dispatch(request(http::verb::get, "/api/v1/labels/a/b/values")).result() ==
          http::status::not_found);
}

TEST_CASE("unknown paths are 404 with a JSON error naming the path") {
    Router router;
    router.add({http::verb::get}, "/healthz", echo);
    auto response = router.dispatch(request(http::verb::post, "/nowhere?x"));
    CHECK(response.result() == http::status::not_found);
    CHECK(response.body() == R"({"status":"error","error":"no such endpoint: /nowhere"})");
    CHECK(router.dispatch(request(http::verb::get, "/healthz/")).result() ==
          http::status::not_found);
}

TEST_CASE("a routed path with the wrong method is 405 with an Allow header") {
    Router router;
    router.add({http::verb::get, http::verb::put, http::verb::post}, "/api/v1/log_level", echo);
    router.add({http::verb::post}, "/api/v1/admin/checkpoint", echo);

    auto response = router.dispatch(request(http::verb::delete_, "/api/v1/log_level"));
    CHECK(response.result() == http::status::method_not_allowed);
    CHECK(response[http::field::allow] == "GET, HEAD, PUT, POST");
    CHECK(response.body() == R"({"status":"error","error":"use GET, PUT or POST"})");

    response = router.dispatch(request(http::verb::get, "/api/v1/admin/checkpoint"));
    CHECK(response.result() == http::status::method_not_allowed);
    CHECK(response[http::field::allow] == "POST");
    CHECK(response.body() == R"({"status":"error","error":"use POST"})");
}

TEST_CASE("a path can be routed once only") {
    Router router;
    router.add({http::verb::get}, "/a/{x}", echo);
    CHECK_THROWS_AS(router.add({http::verb::post}, "/a/{y}", echo), std::logic_error);
}
