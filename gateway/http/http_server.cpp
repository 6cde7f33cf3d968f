// Beast HTTP listener and sessions, after the Beast advanced server example.
#include "gateway/http/http_server.hpp"

#include <atomic>
#include <chrono>
#include <optional>

#include <boost/beast/core.hpp>

#include "gateway/ops/log.hpp"

namespace citygate::gateway {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;

constexpr std::size_t request_body_limit = 64 * 1024;
constexpr auto read_timeout = std::chrono::seconds(30);
// HTTP clients are operators, dashboards and scrapers: a few dozen at most. Beyond this many
// open connections new ones are closed at once, so a flood cannot exhaust descriptors.
constexpr int max_sessions = 256;

class HttpSession : public std::enable_shared_from_this<HttpSession> {
  public:
    HttpSession(tcp::socket socket, std::shared_ptr<const HttpHandler> handler,
                std::shared_ptr<std::atomic<int>> open)
        : stream_(std::move(socket)), handler_(std::move(handler)), open_(std::move(open)) {
        ++*open_;
    }
    ~HttpSession() { --*open_; }

    void start() { do_read(); }

  private:
    void do_read() {
        parser_.emplace();
        parser_->body_limit(request_body_limit);
        stream_.expires_after(read_timeout);
        http::async_read(
            stream_, buffer_, *parser_,
            [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
    }

    void on_read(beast::error_code ec) {
        if (ec == http::error::end_of_stream) return do_close();
        if (ec) {
            if (ec != beast::error::timeout && ec != boost::asio::error::operation_aborted &&
                ec != boost::asio::error::connection_reset) {
                CG_LOG(debug) << "http read: " << ec.message();
                // Tell the client what was wrong with its request when it can still listen.
                if (ec == http::error::body_limit || ec == http::error::header_limit) {
                    return write(error_response(http::status::payload_too_large, ec.message()));
                }
            }
            return;
        }
        HttpRequest request = parser_->release();
        HttpResponse response;
        try {
            response = (*handler_)(request);
        } catch (const std::exception& e) {
            CG_LOG(error) << "http handler for "
                          << std::string_view(request.target().data(), request.target().size())
                          << " threw: " << e.what();
            response = error_response(http::status::internal_server_error, e.what());
        }
        response.version(request.version());
        response.keep_alive(request.keep_alive());
        write(std::move(response));
    }

    static HttpResponse error_response(http::status status, std::string_view message) {
        HttpResponse response(status, 11);
        response.set(http::field::content_type, "application/json");
        response.body() = "{\"status\":\"error\",\"error\":\"" + std::string(message) + "\"}";
        response.keep_alive(false);
        return response;
    }

    void write(HttpResponse response) {
        response_ = std::move(response);
        response_.set(http::field::server, "citygate");
        response_.prepare_payload();
        http::async_write(stream_, response_,
                          [self = shared_from_this()](beast::error_code ec, std::size_t) {
                              if (ec) return;
                              if (!self->response_.keep_alive()) return self->do_close();
                              self->do_read();
                          });
    }

    void do_close() {
        beast::error_code ignored;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    }

    beast::tcp_stream stream_;
    beast::flat_buffer buffer_{8192};
    std::optional<http::request_parser<http::string_body>> parser_;
    HttpResponse response_;
    std::shared_ptr<const HttpHandler> handler_;  // shared: sessions may outlive the listener
    std::shared_ptr<std::atomic<int>> open_;      // sessions open, counted for the limit
};

}  // namespace

class HttpServer::Listener : public std::enable_shared_from_this<Listener> {
  public:
    Listener(boost::asio::io_context& io, const tcp::endpoint& endpoint, HttpHandler handler)
        : io_(io),
          acceptor_(io),
          handler_(std::make_shared<const HttpHandler>(std::move(handler))) {
        acceptor_.open(endpoint.protocol());
        acceptor_.set_option(boost::asio::socket_base::reuse_address(true));
        acceptor_.bind(endpoint);
        acceptor_.listen(boost::asio::socket_base::max_listen_connections);
    }

    void accept() {
        acceptor_.async_accept(
            io_, [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
                if (!self->acceptor_.is_open()) return;
                if (ec) {
                    CG_LOG(warn) << "http accept: " << ec.message();
                } else if (self->open_->load() >= max_sessions) {
                    CG_LOG(warn) << "http: " << max_sessions << " connections open, refusing one";
                    beast::error_code ignored;
                    socket.close(ignored);
                } else {
                    std::make_shared<HttpSession>(std::move(socket), self->handler_, self->open_)
                        ->start();
                }
                self->accept();
            });
    }

    void stop() {
        beast::error_code ignored;
        acceptor_.close(ignored);
    }

    tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }

  private:
    boost::asio::io_context& io_;
    tcp::acceptor acceptor_;
    std::shared_ptr<const HttpHandler> handler_;
    std::shared_ptr<std::atomic<int>> open_ = std::make_shared<std::atomic<int>>(0);
};

HttpServer::HttpServer(boost::asio::io_context& io, const tcp::endpoint& endpoint,
                       HttpHandler handler)
    : listener_(std::make_shared<Listener>(io, endpoint, std::move(handler))) {}

HttpServer::~HttpServer() = default;

void HttpServer::start() {
    listener_->accept();
}
void HttpServer::stop() {
    listener_->stop();
}
tcp::endpoint HttpServer::local_endpoint() const {
    return listener_->local_endpoint();
}

}  // namespace citygate::gateway
