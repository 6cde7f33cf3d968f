// HTTP API access: token file parsing, salted hashes, scope checks per route, the admin network
// rule without tokens, and the admin call gate.
#include <catch2/catch.hpp>

#include <fstream>
#include <future>
#include <thread>

#include "gateway/http/http_auth.hpp"
#include "gateway/http/router.hpp"
#include "gateway/http/tokens.hpp"
#include "tests/support/temp_dir.hpp"

using namespace citygate::gateway;
namespace http = boost::beast::http;
using boost::asio::ip::make_address;

namespace {

HttpRequest request(http::verb method, std::string target, std::string bearer = {}) {
    HttpRequest r(method, target, 11);
    if (!bearer.empty()) r.set(http::field::authorization, "Bearer " + bearer);
    return r;
}

std::string entry(const std::string& name, const std::string& token, const std::string& scopes) {
    return "[[token]]\nname = \"" + name + "\"\nhash = \"" + hash_token(token) +
           "\"\nscopes = " + scopes + "\n";
}

}  // namespace

TEST_CASE("a token file lists named tokens with salted hashes and scopes") {
    auto tokens =
        parse_token_file(entry("grafana", "reader-token-0123456789", "[\"read\"]") +
                             entry("ops", "admin-token-0123456789", "[\"read\", \"admin\"]"),
                         "tokens.toml");
    REQUIRE(tokens.size() == 2);
    CHECK(tokens[0].name == "grafana");
    CHECK(tokens[0].scopes == static_cast<unsigned>(Scope::read));
    CHECK(tokens[1].scopes ==
          (static_cast<unsigned>(Scope::read) | static_cast<unsigned>(Scope::admin)));
    CHECK(tokens[0].salt.size() == 16);
    CHECK(tokens[0].hash.size() == 32);
    CHECK(parse_token_file("", "empty.toml").empty());
}

TEST_CASE("the same token hashes differently each time (a fresh salt)") {
    std::string a = hash_token("same-token-0123456789"), b = hash_token("same-token-0123456789");
    CHECK(a.starts_with("sha256$"));
    CHECK(a != b);
    CHECK(a.size() == 7 + 32 + 1 + 64);
}

TEST_CASE("a token file with a mistake is refused, naming the entry and the problem") {
    auto refused = [](const std::string& text, const std::string& words) {
        INFO(text);
        try {
            parse_token_file(text, "tokens.toml");
            FAIL("accepted");
        } catch (const std::runtime_error& e) {
            CHECK_THAT(e.what(), Catch::Contains(words));
        }
    };
    refused("[[token]]\nhash = \"sha256$00$00\"\nscopes = [\"read\"]\n", "needs name");
    refused("[[token]]\nname = \"a\"\nhash = \"plain-text\"\nscopes = [\"read\"]\n",
            "citygate --hash-token");
    refused(entry("a", "token-0123456789abcdef", "[\"root\"]"), "scopes are");
    refused(entry("a", "token-0123456789abcdef", "[]"), "needs scopes");
    refused(entry("a", "token-0123456789abcdef", "[\"read\"]") +
                entry("a", "token-0123456789abcdeg", "[\"read\"]"),
            "used twice");
    refused(entry("a", "token-0123456789abcdef", "[\"read\"]") + "extra = 1\n", "unknown key");
    refused("[[token]]\nname = \"a\"\nhash = \"sha256$00$00\"\nscopes = [\"read\"]\nsecret = 1\n",
            "unknown key \"secret\"");
    refused("token = [", "tokens.toml");
}

TEST_CASE("networks: CIDR blocks and single addresses, IPv4-mapped peers as IPv4") {
    auto loopback = *Network::parse("127.0.0.0/8");
    CHECK(loopback.contains(make_address("127.0.0.2")));
    CHECK_FALSE(loopback.contains(make_address("10.0.0.1")));
    CHECK(loopback.contains(make_address("::ffff:127.0.0.1")));
    auto one = *Network::parse("127.0.0.1");
    CHECK(one.contains(make_address("127.0.0.1")));
    CHECK_FALSE(one.contains(make_address("127.0.0.2")));
    CHECK(Network::parse("10.1.0.0/20")->contains(make_address("10.1.15.255")));
    CHECK_FALSE(Network::parse("10.1.0.0/20")->contains(make_address("10.1.16.0")));
    CHECK(Network::parse("::1/128")->contains(make_address("::1")));
    CHECK_FALSE(Network::parse("::1/128")->contains(make_address("127.0.0.1")));
    CHECK_FALSE(Network::parse("10.0.0.0/33"));
    CHECK_FALSE(Network::parse("localhost"));
    CHECK_FALSE(Network::parse("10.0.0.0/"));
}

TEST_CASE("with tokens: 401 without a known token, 403 without the scope, else the route runs") {
    citygate::test::TempDir dir("citygate-tokens");
    auto file = dir.path() / "tokens.toml";
    std::ofstream(file) << entry("reader", "reader-token-0123456789", "[\"read\"]")
                        << entry("ops", "admin-token-0123456789", "[\"admin\"]");
    HttpAuth auth({file, {}});
    REQUIRE(auth.has_tokens());
    auto peer = make_address("10.9.8.7");  // tokens work from anywhere

    Router router;
    auto ok = [](const HttpCall&) { return json_response(http::status::ok, "{}"); };
    router.add({http::verb::get}, "/healthz", ok);
    router.add({http::verb::get}, "/api/v1/series", Scope::read, ok);
    router.add({http::verb::get, http::verb::put}, "/api/v1/log_level", {Scope::read, Scope::admin},
               ok);
    router.set_authorizer([&](const HttpCall& call, Scope scope) {
        return auth.check(call.request, call.peer, scope);
    });
    auto status = [&](HttpRequest r) { return router.dispatch(r, peer).result_int(); };

    CHECK(status(request(http::verb::get, "/healthz")) == 200);  // open
    auto missing = router.dispatch(request(http::verb::get, "/api/v1/series?match=x"), peer);
    CHECK(missing.result_int() == 401);
    CHECK(missing[http::field::www_authenticate] == "Bearer realm=\"citygate\"");
    auto wrong =
        router.dispatch(request(http::verb::get, "/api/v1/series", "guess-0123456789"), peer);
    CHECK(wrong.result_int() == 401);
    CHECK_THAT(std::string(wrong[http::field::www_authenticate]), Catch::Contains("invalid_token"));
    CHECK(status(request(http::verb::get, "/api/v1/series", "reader-token-0123456789")) == 200);
    CHECK(status(request(http::verb::get, "/api/v1/series", "admin-token-0123456789")) == 403);
    // GET needs read, PUT needs admin on the same path.
    CHECK(status(request(http::verb::get, "/api/v1/log_level", "reader-token-0123456789")) == 200);
    auto denied = router.dispatch(
        request(http::verb::put, "/api/v1/log_level", "reader-token-0123456789"), peer);
    CHECK(denied.result_int() == 403);
    CHECK_THAT(denied.body(), Catch::Contains("lacks the admin scope"));
    CHECK(status(request(http::verb::put, "/api/v1/log_level", "admin-token-0123456789")) == 200);
    // A prefix of a token, or the scheme alone, is no token.
    CHECK(status(request(http::verb::get, "/api/v1/series", "reader-token-012345678")) == 401);
    auto bare = request(http::verb::get, "/api/v1/series");
    bare.set(http::field::authorization, "Bearer ");
    CHECK(status(bare) == 401);
    auto basic = request(http::verb::get, "/api/v1/series");
    basic.set(http::field::authorization, "Basic cmVhZGVyOng=");
    CHECK(status(basic) == 401);
    // InfluxDB 2 clients (Telegraf's outputs.influxdb_v2) send "Token <token>".
    auto influx = request(http::verb::get, "/api/v1/series");
    influx.set(http::field::authorization, "Token reader-token-0123456789");
    CHECK(status(influx) == 200);
    influx.set(http::field::authorization, "Token ");
    CHECK(status(influx) == 401);
}

TEST_CASE("a token file reloads, and a broken one keeps the tokens there were") {
    citygate::test::TempDir dir("citygate-tokens");
    auto file = dir.path() / "tokens.toml";
    std::ofstream(file) << entry("a", "first-token-0123456789", "[\"read\"]");
    HttpAuth auth({file, {}});
    auto get = request(http::verb::get, "/x", "second-token-0123456789");
    CHECK(auth.check(get, {}, Scope::read)->result_int() == 401);

    std::ofstream(file) << entry("a", "first-token-0123456789", "[\"read\"]")
                        << entry("b", "second-token-0123456789", "[\"read\"]");
    CHECK_FALSE(auth.reload());
    CHECK_FALSE(auth.check(get, {}, Scope::read));

    std::ofstream(file) << "[[token]]\nname = \"broken\"\n";
    auto error = auth.reload();
    REQUIRE(error);
    CHECK_THAT(*error, Catch::Contains("needs hash"));
    CHECK_FALSE(auth.check(get, {}, Scope::read));  // still the two from before
    CHECK(auth.token_count() == 2);
}

TEST_CASE("without tokens: reads are open, admin only from admin_from") {
    HttpAuth auth({{}, {*Network::parse("127.0.0.1/32")}});
    CHECK_FALSE(auth.has_tokens());
    auto post = request(http::verb::post, "/api/v1/admin/checkpoint");
    CHECK_FALSE(auth.check(post, make_address("10.0.0.1"), Scope::read));
    CHECK_FALSE(auth.check(post, make_address("127.0.0.1"), Scope::admin));
    auto refused = auth.check(post, make_address("127.0.0.2"), Scope::admin);
    REQUIRE(refused);
    CHECK(refused->result_int() == 403);
    CHECK_THAT(refused->body(), Catch::Contains("http.admin_from"));
    CHECK(auth.check(post, make_address("127.0.0.2"), Scope::write)->result_int() == 403);
}

TEST_CASE(
    "a call gate runs one call per interval, 429 with Retry-After between, 409 while one runs") {
    int refused = 0;
    CallGate gate(std::chrono::hours(1), [&] { ++refused; });
    int runs = 0;
    auto call = [&] {
        ++runs;
        return json_response(http::status::ok, "{}");
    };
    CHECK(gate.run(call).result_int() == 200);
    auto again = gate.run(call);
    CHECK(again.result_int() == 429);
    CHECK(std::stoi(std::string(again[http::field::retry_after])) > 3500);
    CHECK(runs == 1);
    CHECK(refused == 1);

    // No interval: still one at a time.
    CallGate serial(std::chrono::milliseconds(0));
    HttpResponse inner;
    auto outer = serial.run([&] {
        inner = serial.run(call);
        return json_response(http::status::ok, "{}");
    });
    CHECK(outer.result_int() == 200);
    CHECK(inner.result_int() == 409);
    CHECK_THAT(inner.body(), Catch::Contains("already running"));
    CHECK(serial.run(call).result_int() == 200);

    // From another thread while the first call is still running.
    std::promise<void> started, release;
    auto released = release.get_future().share();
    std::thread first([&] {
        (void)serial.run([&] {
            started.set_value();
            released.wait();
            return json_response(http::status::ok, "{}");
        });
    });
    started.get_future().wait();
    auto concurrent = serial.run(call);
    release.set_value();
    first.join();
    CHECK(concurrent.result_int() == 409);
    CHECK(serial.run(call).result_int() == 200);
}
