// A small HTTP/1.1 server on Boost.Beast: listener and session, keep-alive, limits at the edge
// (request body limit, read timeout). Requests are answered by a handler on the I/O thread.
#pragma once

#include <functional>
#include <memory>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http.hpp>

namespace citygate::gateway {

using HttpRequest = boost::beast::http::request<boost::beast::http::string_body>;
using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;
using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

class HttpServer {
  public:
    // Binds and listens; throws boost::system::system_error when the endpoint is unusable.
    HttpServer(boost::asio::io_context& io, const boost::asio::ip::tcp::endpoint& endpoint,
               HttpHandler handler);
    ~HttpServer();

    void start();
    void stop();
    boost::asio::ip::tcp::endpoint local_endpoint() const;

  private:
    class Listener;
    std::shared_ptr<Listener> listener_;
};

}  // namespace citygate::gateway
