// Route matching by path segments, and the 404/405 answers for paths and methods not routed.
#include "gateway/http/router.hpp"

#include <algorithm>
#include <atomic>
#include <future>
#include <stdexcept>

#include "gateway/json_text.hpp"

namespace citygate::gateway {
namespace {

namespace http = boost::beast::http;

std::string_view method_name(http::verb method) {
    auto name = http::to_string(method);
    return {name.data(), name.size()};
}

// Splits "/a/b/c" into "a", "b", "c"; "/" gives no segments.
std::vector<std::string_view> split_path(std::string_view path) {
    std::vector<std::string_view> segments;
    if (!path.empty() && path.front() == '/') path.remove_prefix(1);
    while (!path.empty()) {
        std::size_t slash = path.find('/');
        segments.push_back(path.substr(0, slash));
        if (slash == std::string_view::npos) break;
        path.remove_prefix(slash + 1);
        if (path.empty()) segments.emplace_back();  // a trailing slash is an empty segment
    }
    return segments;
}

// "use GET", "use POST", "use GET, PUT or POST" (HEAD goes without saying).
std::string use_message(const std::vector<http::verb>& methods) {
    std::vector<std::string_view> names;
    for (http::verb method : methods) {
        if (method != http::verb::head) names.push_back(method_name(method));
    }
    std::string text = "use ";
    for (std::size_t i = 0; i < names.size(); ++i) {
        if (i) text += i + 1 == names.size() ? " or " : ", ";
        text += names[i];
    }
    return text;
}

}  // namespace

RouteHandler on_query_pool(RouteHandler handler) {
    handler.on_query_pool_ = true;
    return handler;
}

RouteHandler deferred(RouteHandler::Deferred handler) {
    RouteHandler route;
    route.deferred_ = std::move(handler);
    return route;
}

HttpResponse RouteHandler::operator()(const HttpCall& call) const {
    if (!deferred_) return function_(call);
    auto answer = std::make_shared<std::promise<HttpResponse>>();
    auto once = std::make_shared<std::atomic<bool>>(false);
    deferred_(call, [answer, once](HttpResponse response, std::shared_ptr<void>) {
        if (!once->exchange(true)) answer->set_value(std::move(response));
    });
    return answer->get_future().get();
}

HttpResponse json_response(http::status status, std::string body) {
    HttpResponse response(status, 11);
    response.set(http::field::content_type, "application/json");
    response.body() = std::move(body);
    return response;
}

HttpResponse json_error(http::status status, std::string_view message) {
    std::string body = "{\"status\":\"error\",\"error\":";
    append_json_string(body, message);
    body += '}';
    return json_response(status, std::move(body));
}

void Router::add(std::initializer_list<http::verb> methods, std::string_view pattern,
                 RouteHandler handler) {
    add(methods, pattern, Scope::open, std::move(handler));
}

void Router::add(std::initializer_list<http::verb> methods, std::string_view pattern,
                 RouteScope scope, RouteHandler handler) {
    Route route;
    route.scope = scope;
    for (http::verb method : methods) {
        route.methods.push_back(method);
        if (method == http::verb::get) route.methods.push_back(http::verb::head);
    }
    for (std::string_view segment : split_path(pattern)) {
        bool parameter = segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
        route.segments.emplace_back(parameter ? "{}" : segment);
    }
    for (const Route& existing : routes_) {
        if (existing.segments == route.segments) {
            throw std::logic_error("route added twice: " + std::string(pattern));
        }
    }
    route.handler = std::move(handler);
    routes_.push_back(std::move(route));
}

bool Router::match(const Route& route, std::string_view path,
                   std::vector<std::string_view>& params) {
    std::vector<std::string_view> segments = split_path(path);
    if (segments.size() != route.segments.size()) return false;
    params.clear();
    for (std::size_t i = 0; i < segments.size(); ++i) {
        if (route.segments[i] == "{}") {
            if (segments[i].empty()) return false;
            params.push_back(segments[i]);
        } else if (route.segments[i] != segments[i]) {
            return false;
        }
    }
    return true;
}

Router::Resolved Router::resolve(const HttpRequest& request,
                                 const boost::asio::ip::address& peer) const {
    Resolved resolved;
    std::string_view target(request.target().data(), request.target().size());
    std::size_t question = target.find('?');
    std::string_view path = target.substr(0, question);
    std::string_view query =
        question == std::string_view::npos ? std::string_view{} : target.substr(question + 1);

    std::vector<std::string_view>& params = resolved.params;
    resolved.path = path;
    resolved.query = query;
    for (const Route& route : routes_) {
        if (!match(route, path, params)) continue;
        if (std::find(route.methods.begin(), route.methods.end(), request.method()) ==
            route.methods.end()) {
            HttpResponse response =
                json_error(http::status::method_not_allowed, use_message(route.methods));
            std::string allow;
            for (http::verb method : route.methods) {
                if (!allow.empty()) allow += ", ";
                allow += method_name(method);
            }
            response.set(http::field::allow, allow);
            resolved.answer = std::move(response);
            return resolved;
        }
        HttpCall call{request, path, query, params, peer};
        bool reading = request.method() == http::verb::get || request.method() == http::verb::head;
        Scope scope = reading ? route.scope.reading : route.scope.changing;
        if (authorizer_ && scope != Scope::open) {
            if (auto refusal = authorizer_(call, scope)) {
                resolved.answer = std::move(*refusal);
                return resolved;
            }
        }
        resolved.route = &route;
        return resolved;
    }
    resolved.answer = json_error(http::status::not_found, "no such endpoint: " + std::string(path));
    return resolved;
}

HttpResponse Router::dispatch(const HttpRequest& request,
                              const boost::asio::ip::address& peer) const {
    Resolved resolved = resolve(request, peer);
    if (resolved.answer) return std::move(*resolved.answer);
    return resolved.route->handler(
        HttpCall{request, resolved.path, resolved.query, resolved.params, peer});
}

void Router::dispatch(std::shared_ptr<const HttpRequest> request,
                      const boost::asio::ip::address& peer, HttpRespond respond,
                      std::chrono::steady_clock::time_point received) const {
    Resolved resolved = resolve(*request, peer);
    if (resolved.answer) return respond(std::move(*resolved.answer), nullptr);
    if (resolved.route->handler.is_deferred()) {
        // The request stays alive until the answer: the handler may keep views into it.
        HttpRespond answer = [request, respond](HttpResponse response, std::shared_ptr<void> keep) {
            respond(std::move(response), std::move(keep));
        };
        return resolved.route->handler.deferred_function()(
            HttpCall{*request, resolved.path, resolved.query, resolved.params, peer, received},
            std::move(answer));
    }
    auto run = [request, peer, received](const Resolved& found, HttpRespond& answer) {
        std::shared_ptr<void> keep;
        HttpResponse response = found.route->handler(
            HttpCall{*request, found.path, found.query, found.params, peer, received, &keep});
        answer(std::move(response), std::move(keep));
    };
    if (!pool_ || !resolved.route->handler.on_query_pool()) return run(resolved, respond);
    bool queued = pool_->try_post([run, resolved = std::move(resolved), respond]() mutable {
        try {
            run(resolved, respond);
        } catch (const std::exception& e) {
            respond(json_error(http::status::internal_server_error, e.what()), nullptr);
        }
    });
    if (!queued) {
        respond(json_error(http::status::service_unavailable,
                           "server busy: every query thread is busy and the query queue is full "
                           "(http.query_threads, http.query_queue); try again later"),
                nullptr);
    }
}

}  // namespace citygate::gateway
