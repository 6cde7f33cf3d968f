// The HTTP route table: literal and parameter patterns, 404 for unknown paths, 405 with Allow;
// routes on the query pool, answered from it, and the pool's bounded queue.
#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <thread>

#include "gateway/http/query_pool.hpp"
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

namespace {

// What an asynchronous dispatch answered, and on which thread; waits for it.
struct Answer {
    std::promise<std::pair<HttpResponse, std::shared_ptr<void>>> promise;
    std::thread::id thread;
    HttpRespond respond() {
        return [this](HttpResponse response, std::shared_ptr<void> keep) {
            thread = std::this_thread::get_id();
            promise.set_value({std::move(response), std::move(keep)});
        };
    }
    std::pair<HttpResponse, std::shared_ptr<void>> get() { return promise.get_future().get(); }
};

std::shared_ptr<const HttpRequest> shared(http::verb method, std::string target) {
    return std::make_shared<const HttpRequest>(request(method, std::move(target)));
}

}  // namespace

TEST_CASE("on_query_pool routes answer from the pool, the others at once on the caller") {
    QueryPool pool(1, 4);
    Router router;
    router.set_query_pool(&pool);
    router.add({http::verb::get}, "/healthz", echo);
    router.add({http::verb::get}, "/api/v1/series", on_query_pool([](const HttpCall& call) {
                   *call.keep = std::make_shared<int>(7);  // held until the answer is written
                   return echo(call);
               }));

    Answer inline_answer;
    router.dispatch(shared(http::verb::get, "/healthz"), {}, inline_answer.respond());
    CHECK(inline_answer.thread == std::this_thread::get_id());
    CHECK(inline_answer.get().first.body() == "/healthz|");

    Answer pooled;
    router.dispatch(shared(http::verb::get, "/api/v1/series?match=up"), {}, pooled.respond());
    auto [response, keep] = pooled.get();
    CHECK(pooled.thread != std::this_thread::get_id());
    CHECK(response.body() == "/api/v1/series|match=up");
    REQUIRE(keep);
    CHECK(*std::static_pointer_cast<int>(keep) == 7);

    // 404 and 405 are decided on the caller's thread, before anything is queued.
    Answer missing;
    router.dispatch(shared(http::verb::get, "/api/v1/nothing"), {}, missing.respond());
    CHECK(missing.thread == std::this_thread::get_id());
    CHECK(missing.get().first.result() == http::status::not_found);
}

TEST_CASE("a query finding the pool's threads busy and its queue full is answered 503 at once") {
    QueryPool pool(1, 1);
    std::promise<void> release;
    std::shared_future<void> released = release.get_future().share();
    Router router;
    router.set_query_pool(&pool);
    router.add({http::verb::get}, "/q", on_query_pool([released](const HttpCall& call) {
                   released.wait();
                   return echo(call);
               }));
    Answer running, queued, refused;
    router.dispatch(shared(http::verb::get, "/q?n=1"), {}, running.respond());
    // Until the pool's one thread has taken the first job, the second one may be refused too.
    while (pool.queued() > 0)
        std::this_thread::yield();
    router.dispatch(shared(http::verb::get, "/q?n=2"), {}, queued.respond());
    router.dispatch(shared(http::verb::get, "/q?n=3"), {}, refused.respond());
    auto answer = refused.get().first;
    CHECK(refused.thread == std::this_thread::get_id());
    CHECK(answer.result() == http::status::service_unavailable);
    CHECK(answer.body().find("query queue is full") != std::string::npos);
    release.set_value();
    CHECK(running.get().first.body() == "/q|n=1");
    CHECK(queued.get().first.body() == "/q|n=2");
}

TEST_CASE("stopping the query pool runs what is queued and raises its cancellation flag") {
    auto pool = std::make_unique<QueryPool>(1, 8);
    std::atomic<int> ran{0};
    std::atomic<bool> saw_stopping{false};
    std::promise<void> started;
    CHECK(pool->try_post([&] {
        started.set_value();
        while (!pool->stopping())
            std::this_thread::yield();  // a query polling its budget
        saw_stopping = true;
        ++ran;
    }));
    started.get_future().wait();
    for (int i = 0; i < 3; ++i)
        CHECK(pool->try_post([&] { ++ran; }));
    pool->stop();
    CHECK(saw_stopping);
    CHECK(ran == 4);
    CHECK_FALSE(pool->try_post([] {}));
}

TEST_CASE("a deferred route answers later from another thread, and its request lives until then") {
    Router router;
    std::thread later;
    router.add({http::verb::post}, "/api/v1/write",
               deferred([&later](const HttpCall& call, HttpRespond respond) {
                   std::string_view body = call.request.body();  // a view, used after return
                   later = std::thread([body, respond] {
                       std::this_thread::sleep_for(std::chrono::milliseconds(20));
                       respond(json_response(http::status::ok, std::string(body)), nullptr);
                   });
               }));
    auto post = std::make_shared<HttpRequest>(http::verb::post, "/api/v1/write", 11);
    post->body() = "samples";
    Answer answer;
    router.dispatch(std::shared_ptr<const HttpRequest>(post), {}, answer.respond());
    post.reset();  // the router keeps the request until the answer
    auto [response, keep] = answer.get();
    later.join();
    CHECK(answer.thread != std::this_thread::get_id());
    CHECK(response.body() == "samples");

    // The synchronous dispatch waits for the answer.
    HttpRequest again(http::verb::post, "/api/v1/write", 11);
    again.body() = "again";
    CHECK(router.dispatch(again).body() == "again");
    later.join();
}
