// A small HTTP/1.1 server on Boost.Beast: listener and session, keep-alive, optional TLS, limits
// at the edge (request body limit; a deadline for a request's whole header, for its body and for
// an idle keep-alive connection; open connections in total and per source address; back-off
// when accept fails). Each connection runs on a strand, so any number of threads may run the
// io_context. Requests are answered by a handler on the I/O thread, or handed to an asynchronous
// one that answers later (queries answer from the query pool).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string_view>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/http.hpp>

namespace prometheus {
class Registry;
}

namespace citygate::gateway {

using HttpRequest = boost::beast::http::request<boost::beast::http::string_body>;
using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;
// Called with each request and the address of the client that sent it.
using HttpHandler =
    std::function<HttpResponse(const HttpRequest&, const boost::asio::ip::address& peer)>;
// Answers one request, from any thread, exactly once (later calls are ignored); the response is
// written on the connection's strand. `keep` (may be null) is held until the response is written
// or the connection closes: a query's budget, so an answer waiting for a slow reader stays
// counted.
using HttpRespond = std::function<void(HttpResponse response, std::shared_ptr<void> keep)>;
// Takes a request and answers it through `respond`, at once or later (from a query pool, say).
// The connection reads nothing more until it has answered.
using AsyncHttpHandler = std::function<void(
    HttpRequest request, const boost::asio::ip::address& peer, HttpRespond respond)>;

struct HttpServerOptions {
    // From accept (or, on a keep-alive connection, from the first byte of the next request) to
    // the end of the request's header, however slowly it dribbles in; also the TLS handshake's.
    std::chrono::milliseconds header_timeout = std::chrono::seconds(5);
    std::chrono::milliseconds body_timeout = std::chrono::seconds(30);
    // How long a keep-alive connection may wait for its next request.
    std::chrono::milliseconds idle_timeout = std::chrono::seconds(60);
    std::size_t max_connections = 256;
    std::size_t max_connections_per_source = 32;
    boost::asio::ssl::context* tls = nullptr;  // HTTPS when set; must outlive the server
    // The largest request body taken for a target (path and query, as sent); empty: 64 KiB for
    // every target. Called on the I/O thread once a request's header is in; a body declared or
    // grown beyond it is answered 413 and the connection closed.
    std::function<std::size_t(std::string_view target)> body_limit;
    // Gets citygate_http_connections_refused_total{reason}, _timed_out_total{phase} and
    // citygate_http_accept_errors_total when set; must outlive the server.
    prometheus::Registry* registry = nullptr;
};

class HttpServer {
  public:
    // Binds and listens; throws boost::system::system_error when the endpoint is unusable.
    HttpServer(boost::asio::io_context& io, const boost::asio::ip::tcp::endpoint& endpoint,
               HttpHandler handler, HttpServerOptions options = {});
    // The same with a handler that may answer later, from another thread.
    HttpServer(boost::asio::io_context& io, const boost::asio::ip::tcp::endpoint& endpoint,
               AsyncHttpHandler handler, HttpServerOptions options = {});
    ~HttpServer();

    void start();
    void stop();
    boost::asio::ip::tcp::endpoint local_endpoint() const;

  private:
    class Listener;
    std::shared_ptr<Listener> listener_;
};

}  // namespace citygate::gateway
