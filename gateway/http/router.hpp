// The HTTP API's route table: method + path pattern -> handler. A new endpoint is one add() and
// one handler. Patterns are literal paths or have `{name}` segments, each matching one non-empty
// path segment (percent-encoded as sent) that reaches the handler in `params`, in order.
#pragma once

#include <chrono>
#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <optional>

#include <boost/asio/ip/address.hpp>

#include "gateway/http/http_server.hpp"
#include "gateway/http/query_pool.hpp"
#include "gateway/http/tokens.hpp"

namespace citygate::gateway {

// One request as a handler sees it.
struct HttpCall {
    const HttpRequest& request;
    std::string_view path;                     // without the query
    std::string_view query;                    // after '?', still encoded
    std::span<const std::string_view> params;  // `{name}` segments of the pattern
    boost::asio::ip::address peer;             // the client's address (unspecified in tests)
    // When the request was read: a query's deadline counts from here, its wait for the query
    // pool included.
    std::chrono::steady_clock::time_point received = std::chrono::steady_clock::now();
    // Where a handler may put what must live until its answer is written (a query's budget, which
    // counts the answer's memory); null when the caller keeps nothing.
    std::shared_ptr<void>* keep = nullptr;
};

// A route's handler, and where it runs: on the HTTP I/O thread (cheap, bounded work: health,
// metrics), or on the query pool when made with on_query_pool() (storage reads, checkpoints).
class RouteHandler {
  public:
    using Function = std::function<HttpResponse(const HttpCall&)>;
    // Answers through `respond` (from any thread, once), maybe after returning: see deferred().
    using Deferred = std::function<void(const HttpCall&, HttpRespond respond)>;
    RouteHandler() = default;
    template <typename F,
              typename = std::enable_if_t<!std::is_same_v<std::decay_t<F>, RouteHandler> &&
                                          std::is_invocable_r_v<HttpResponse, F&, const HttpCall&>>>
    RouteHandler(F function) : function_(std::move(function)) {}  // NOLINT: any callable

    // A deferred handler waits here for its answer (the synchronous dispatch, for tests).
    HttpResponse operator()(const HttpCall& call) const;
    bool on_query_pool() const { return on_query_pool_; }
    bool is_deferred() const { return static_cast<bool>(deferred_); }
    const Deferred& deferred_function() const { return deferred_; }

  private:
    friend RouteHandler on_query_pool(RouteHandler handler);
    friend RouteHandler deferred(Deferred handler);
    Function function_;
    Deferred deferred_;
    bool on_query_pool_ = false;
};

// A handler that answers later: it runs on the HTTP thread, must not block, and calls `respond`
// once, from any thread (say, a storage writer's completion: samples answered once durable).
// The request (and so the call's views into it) lives until `respond` is called.
RouteHandler deferred(RouteHandler::Deferred handler);

// `handler`, run on the query pool (see Router::set_query_pool).
RouteHandler on_query_pool(RouteHandler handler);

// The scope a route needs: one for every method, or one for GET/HEAD and another for the methods
// that change something (`{Scope::read, Scope::admin}`).
struct RouteScope {
    RouteScope(Scope all) : reading(all), changing(all) {}  // NOLINT: a Scope reads as one
    RouteScope(Scope reading, Scope changing) : reading(reading), changing(changing) {}
    Scope reading;
    Scope changing;
};

// Decides whether a call may reach a route that needs `scope`: nothing to go ahead, else the
// answer to send instead (401, 403).
using RouteAuthorizer = std::function<std::optional<HttpResponse>(const HttpCall&, Scope scope)>;

class Router {
  public:
    // Routes `methods` on `pattern` to `handler`; GET routes answer HEAD as well. The first
    // route whose pattern matches the path decides; a path may be routed once only.
    void add(std::initializer_list<boost::beast::http::verb> methods, std::string_view pattern,
             RouteHandler handler);
    // The same with the scope the route needs (add() without one: Scope::open).
    void add(std::initializer_list<boost::beast::http::verb> methods, std::string_view pattern,
             RouteScope scope, RouteHandler handler);

    // Asks `authorizer` before every routed call whose scope is not open; without one every
    // call goes ahead. Call before the first request.
    void set_authorizer(RouteAuthorizer authorizer) { authorizer_ = std::move(authorizer); }

    // Runs on_query_pool() routes on `pool` (without one they run on the caller's thread). The
    // pool must outlive every dispatch. Call before the first request.
    void set_query_pool(QueryPool* pool) { pool_ = pool; }

    // Answers with the route's handler; 404 when no pattern matches the path, 405 with an Allow
    // header when one does but not for this method. Errors are JSON ({"status":"error",...}).
    // Thread safe once routes are added. Runs every handler on the calling thread.
    HttpResponse dispatch(const HttpRequest& request,
                          const boost::asio::ip::address& peer = {}) const;
    // The same, answering through `respond`: at once on this thread, except for on_query_pool()
    // routes, which answer from a pool thread once the pool ran them (503 at once when its queue
    // is full). Errors, 404, 405 and refusals are decided here, before anything is queued.
    void dispatch(
        std::shared_ptr<const HttpRequest> request, const boost::asio::ip::address& peer,
        HttpRespond respond,
        std::chrono::steady_clock::time_point received = std::chrono::steady_clock::now()) const;

  private:
    struct Route {
        std::vector<boost::beast::http::verb> methods;
        std::vector<std::string> segments;  // "{}" for a parameter
        RouteHandler handler;
        RouteScope scope = Scope::open;
    };
    // What a request reached: its route and the call's parts, or the answer instead (404, 405,
    // the authorizer's refusal). Views into the request.
    struct Resolved {
        const Route* route = nullptr;
        std::string_view path, query;
        std::vector<std::string_view> params;
        std::optional<HttpResponse> answer;
    };
    Resolved resolve(const HttpRequest& request, const boost::asio::ip::address& peer) const;
    // Whether `path` matches `route`; fills `params` when it does.
    static bool match(const Route& route, std::string_view path,
                      std::vector<std::string_view>& params);

    std::vector<Route> routes_;
    RouteAuthorizer authorizer_;
    QueryPool* pool_ = nullptr;
};

// A JSON response with `body`, and the API's error shape {"status":"error","error":"..."}.
HttpResponse json_response(boost::beast::http::status status, std::string body);
HttpResponse json_error(boost::beast::http::status status, std::string_view message);

}  // namespace citygate::gateway
