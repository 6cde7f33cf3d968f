// The HTTP API's route table: method + path pattern -> handler. A new endpoint is one add() and
// one handler. Patterns are literal paths or have `{name}` segments, each matching one non-empty
// path segment (percent-encoded as sent) that reaches the handler in `params`, in order.
#pragma once

#include <functional>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <optional>

#include <boost/asio/ip/address.hpp>

#include "gateway/http/http_server.hpp"
#include "gateway/http/tokens.hpp"

namespace citygate::gateway {

// One request as a handler sees it.
struct HttpCall {
    const HttpRequest& request;
    std::string_view path;                     // without the query
    std::string_view query;                    // after '?', still encoded
    std::span<const std::string_view> params;  // `{name}` segments of the pattern
    boost::asio::ip::address peer;             // the client's address (unspecified in tests)
};
using RouteHandler = std::function<HttpResponse(const HttpCall&)>;

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

    // Answers with the route's handler; 404 when no pattern matches the path, 405 with an Allow
    // header when one does but not for this method. Errors are JSON ({"status":"error",...}).
    // Thread safe once routes are added.
    HttpResponse dispatch(const HttpRequest& request,
                          const boost::asio::ip::address& peer = {}) const;

  private:
    struct Route {
        std::vector<boost::beast::http::verb> methods;
        std::vector<std::string> segments;  // "{}" for a parameter
        RouteHandler handler;
        RouteScope scope = Scope::open;
    };
    // Whether `path` matches `route`; fills `params` when it does.
    static bool match(const Route& route, std::string_view path,
                      std::vector<std::string_view>& params);

    std::vector<Route> routes_;
    RouteAuthorizer authorizer_;
};

// A JSON response with `body`, and the API's error shape {"status":"error","error":"..."}.
HttpResponse json_response(boost::beast::http::status status, std::string body);
HttpResponse json_error(boost::beast::http::status status, std::string_view message);

}  // namespace citygate::gateway
