// Beast HTTP listener and sessions, after the Beast advanced server examples (plain and TLS).
#include "gateway/http/http_server.hpp"

#include <algorithm>
#include <atomic>
#include <limits>
#include <map>
#include <mutex>
#include <optional>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>

#include "gateway/ops/log.hpp"

namespace citygate::gateway {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;

constexpr std::size_t request_body_limit = 64 * 1024;
constexpr std::size_t request_header_limit = 16 * 1024;
constexpr auto first_accept_backoff = std::chrono::milliseconds(100);
constexpr auto last_accept_backoff = std::chrono::seconds(1);

void bump(prometheus::Counter* counter) {
    if (counter) counter->Increment();
}

// A session the listener may close to make room: one still waiting for a request's header.
class Evictable {
  public:
    virtual ~Evictable() = default;
    // Closes the connection from its own strand; called from any thread.
    virtual void evict() = 0;
};

// Everything the listener and its sessions share; sessions may outlive the listener.
struct ServerState {
    HttpHandler handler;
    AsyncHttpHandler async_handler;  // when set, answers every request instead of `handler`
    HttpServerOptions options;

    // Open connections in total and per source address, admitted and released together.
    std::mutex mutex;
    std::size_t open = 0;
    std::map<boost::asio::ip::address, std::size_t> open_by_source;
    // Sessions waiting for a header (or a TLS handshake, or an idle keep-alive's next request),
    // by when they began to wait: at the connection cap the oldest is closed for a newcomer, so
    // slow senders from many addresses cannot hold every slot. A session busy with a request is
    // never evicted. `evicting` counts those closed but not yet released.
    std::uint64_t next_wait = 0;
    std::map<std::uint64_t, std::weak_ptr<Evictable>> waiting;
    std::size_t evicting = 0;

    prometheus::Counter* refused_total = nullptr;   // reason="max_connections"
    prometheus::Counter* refused_source = nullptr;  // reason="max_connections_per_source"
    prometheus::Counter* timeout_header = nullptr;  // phase="header"
    prometheus::Counter* timeout_body = nullptr;    // phase="body"
    prometheus::Counter* timeout_idle = nullptr;    // phase="idle"
    prometheus::Counter* timeout_write = nullptr;   // phase="write"
    prometheus::Counter* accept_errors = nullptr;
    prometheus::Counter* evicted = nullptr;
    prometheus::Gauge* connections = nullptr;

    log::RateLimit refused_log{std::chrono::seconds(10)};
    log::RateLimit accept_log{std::chrono::seconds(10)};
    log::RateLimit handler_log{std::chrono::seconds(10)};

    ServerState(HttpHandler h, HttpServerOptions o) : handler(std::move(h)), options(o) {
        if (!options.registry) return;
        auto& refused = prometheus::BuildCounter()
                            .Name("citygate_http_connections_refused_total")
                            .Help("HTTP connections closed at accept, by the limit they hit")
                            .Register(*options.registry);
        refused_total = &refused.Add({{"reason", "max_connections"}});
        refused_source = &refused.Add({{"reason", "max_connections_per_source"}});
        auto& timed_out = prometheus::BuildCounter()
                              .Name("citygate_http_connections_timed_out_total")
                              .Help("HTTP connections closed by a deadline, by what was late")
                              .Register(*options.registry);
        timeout_header = &timed_out.Add({{"phase", "header"}});
        timeout_body = &timed_out.Add({{"phase", "body"}});
        timeout_idle = &timed_out.Add({{"phase", "idle"}});
        timeout_write = &timed_out.Add({{"phase", "write"}});
        accept_errors = &prometheus::BuildCounter()
                             .Name("citygate_http_accept_errors_total")
                             .Help("Failed accepts on the HTTP listener (each backs off)")
                             .Register(*options.registry)
                             .Add({});
        evicted = &prometheus::BuildCounter()
                       .Name("citygate_http_connections_evicted_total")
                       .Help(
                           "HTTP connections still waiting for a request's header, closed at the "
                           "connection cap to admit a newer one")
                       .Register(*options.registry)
                       .Add({});
        connections = &prometheus::BuildGauge()
                           .Name("citygate_http_connections")
                           .Help("Open HTTP connections")
                           .Register(*options.registry)
                           .Add({});
    }

    struct Admission {
        const char* refused = nullptr;       // the limit's name when refused
        std::shared_ptr<Evictable> evicted;  // to close (outside the lock) to make room
    };

    // Admits one more connection from `source` unless a limit refuses it. At the total cap the
    // oldest waiting session makes room, so open may pass the cap by the evictions in flight.
    Admission admit(const boost::asio::ip::address& source) {
        std::lock_guard lock(mutex);
        Admission admission;
        std::size_t& mine = open_by_source[source];
        if (mine >= options.max_connections_per_source) {
            if (mine == 0) open_by_source.erase(source);
            admission.refused = "http.max_connections_per_source";
            return admission;
        }
        if (open - evicting >= options.max_connections) {
            // One that is expiring is skipped: its release is on the way and removes it.
            for (auto it = waiting.begin(); it != waiting.end(); ++it) {
                if ((admission.evicted = it->second.lock())) {
                    waiting.erase(it);
                    break;
                }
            }
            if (!admission.evicted) {
                if (mine == 0) open_by_source.erase(source);
                admission.refused = "http.max_connections";
                return admission;
            }
            ++evicting;
            bump(evicted);
        }
        ++mine;
        ++open;
        if (connections) connections->Increment();
        return admission;
    }

    // Registers a session as waiting; the id ends the wait.
    std::uint64_t begin_wait(std::weak_ptr<Evictable> session) {
        std::lock_guard lock(mutex);
        waiting.emplace(++next_wait, std::move(session));
        return next_wait;
    }

    // False when the session was evicted meanwhile (it is being closed).
    bool end_wait(std::uint64_t id) {
        std::lock_guard lock(mutex);
        return waiting.erase(id) > 0;
    }

    // `wait_id` is the session's wait that has not ended (0 for none): one no longer registered
    // was evicted.
    void release(const boost::asio::ip::address& source, std::uint64_t wait_id) {
        std::lock_guard lock(mutex);
        --open;
        if (wait_id != 0 && waiting.erase(wait_id) == 0) --evicting;
        if (connections) connections->Decrement();
        auto found = open_by_source.find(source);
        if (found != open_by_source.end() && --found->second == 0) open_by_source.erase(found);
    }
};

using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

template <typename Stream>
class HttpSession : public Evictable, public std::enable_shared_from_this<HttpSession<Stream>> {
  public:
    // Takes one admitted slot of `state` for `peer`, given back when the session ends.
    template <typename... TlsContext>
    HttpSession(tcp::socket socket, std::shared_ptr<ServerState> state,
                boost::asio::ip::address peer, TlsContext&... tls)
        : stream_(std::move(socket), tls...), state_(std::move(state)), peer_(std::move(peer)) {}
    ~HttpSession() override { state_->release(peer_, wait_id_); }

    void start() {
        begin_wait();
        if constexpr (std::is_same_v<Stream, TlsStream>) {
            lowest().expires_after(state_->options.header_timeout);
            stream_.async_handshake(boost::asio::ssl::stream_base::server,
                                    [self = this->shared_from_this()](beast::error_code ec) {
                                        if (ec) {
                                            if (ec == beast::error::timeout)
                                                bump(self->state_->timeout_header);
                                            CG_LOG(debug)
                                                << "http tls handshake from "
                                                << self->peer_.to_string() << ": " << ec.message();
                                            return;
                                        }
                                        self->read_header();
                                    });
        } else {
            read_header();
        }
    }

    void evict() override {
        boost::asio::post(lowest().get_executor(), [self = this->shared_from_this()] {
            CG_LOG(debug) << "http: closed " << self->peer_.to_string()
                          << ", still waiting for a request at the connection cap";
            self->lowest().close();
        });
    }

  private:
    beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }

    void begin_wait() {
        if (wait_id_ == 0) wait_id_ = state_->begin_wait(this->weak_from_this());
    }

    // False when the session was evicted meanwhile and is being closed.
    bool end_wait() {
        if (wait_id_ == 0) return true;
        if (!state_->end_wait(wait_id_)) return false;
        wait_id_ = 0;
        return true;
    }

    // Between requests on a keep-alive connection: wait up to idle_timeout for the next one's
    // first bytes; the header deadline starts when they arrive.
    void await_next_request() {
        if (buffer_.size() > 0) return read_header();
        begin_wait();
        lowest().expires_after(state_->options.idle_timeout);
        stream_.async_read_some(buffer_.prepare(4096), [self = this->shared_from_this()](
                                                           beast::error_code ec, std::size_t n) {
            if (ec) {
                if (ec == beast::error::timeout) bump(self->state_->timeout_idle);
                return;
            }
            self->buffer_.commit(n);
            self->read_header();
        });
    }

    void read_header() {
        begin_wait();
        parser_.emplace();
        parser_->header_limit(request_header_limit);
        // With per-target limits the header is read without one, so a body declared beyond its
        // target's limit is answered with a message naming it (apply_body_limit).
        parser_->body_limit(state_->options.body_limit ? std::numeric_limits<std::uint64_t>::max()
                                                       : std::uint64_t{request_body_limit});
        // One deadline for the whole header, not per read: a byte a second gets nowhere.
        lowest().expires_after(state_->options.header_timeout);
        http::async_read_header(
            stream_, buffer_, *parser_,
            [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                if (ec) return self->on_read(ec, self->state_->timeout_header);
                if (!self->end_wait()) return;
                if (self->parser_->is_done()) return self->on_read(ec, nullptr);
                if (!self->apply_body_limit()) return;
                self->read_body();
            });
    }

    // The target's body limit; false (and a 413 on its way) when the declared length passes it.
    bool apply_body_limit() {
        if (!state_->options.body_limit) return true;
        const auto& header = parser_->get();
        std::size_t limit =
            state_->options.body_limit({header.target().data(), header.target().size()});
        auto declared = parser_->content_length();
        if (declared && *declared > limit) {
            CG_LOG(debug) << "http: body of " << *declared << " bytes from " << peer_.to_string()
                          << " over the limit of " << limit;
            discard_body_ = true;
            write(error_response(http::status::payload_too_large,
                                 "request body of " + std::to_string(*declared) +
                                     " bytes is over this endpoint's limit of " +
                                     std::to_string(limit) + " bytes"));
            return false;
        }
        parser_->body_limit(limit);
        return true;
    }

    void read_body() {
        lowest().expires_after(state_->options.body_timeout);
        http::async_read(stream_, buffer_, *parser_,
                         [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                             self->on_read(ec, self->state_->timeout_body);
                         });
    }

    void on_read(beast::error_code ec, prometheus::Counter* timeouts) {
        if (ec == http::error::end_of_stream) return do_close();
        if (ec) {
            if (ec == beast::error::timeout) {
                bump(timeouts);
                CG_LOG(debug) << "http: closed " << peer_.to_string() << ", request too slow";
                return;
            }
            if (ec != boost::asio::error::operation_aborted &&
                ec != boost::asio::error::connection_reset) {
                CG_LOG(debug) << "http read: " << ec.message();
                // Tell the client what was wrong with its request when it can still listen.
                if (ec == http::error::body_limit || ec == http::error::header_limit) {
                    discard_body_ = ec == http::error::body_limit;
                    return write(error_response(http::status::payload_too_large, ec.message()));
                }
            }
            return;
        }
        HttpRequest request = parser_->release();
        if (state_->async_handler) return hand_on(std::move(request));
        HttpResponse response;
        try {
            response = state_->handler(request, peer_);
        } catch (const std::exception& e) {
            CG_LOG_LIMITED(state_->handler_log, error)
                << "http handler for "
                << std::string_view(request.target().data(), request.target().size())
                << " threw: " << e.what();
            response = error_response(http::status::internal_server_error, e.what());
        }
        response.version(request.version());
        response.keep_alive(response.keep_alive() && request.keep_alive());
        write(std::move(response));
    }

    // Gives the request to the asynchronous handler; its answer comes back through the strand.
    void hand_on(HttpRequest request) {
        auto answered = std::make_shared<std::atomic<bool>>(false);
        HttpRespond respond = [self = this->shared_from_this(), answered,
                               version = request.version(), keep_alive = request.keep_alive()](
                                  HttpResponse response, std::shared_ptr<void> keep) {
            if (answered->exchange(true)) return;
            boost::asio::post(self->lowest().get_executor(),
                              [self, version, keep_alive, response = std::move(response),
                               keep = std::move(keep)]() mutable {
                                  response.version(version);
                                  response.keep_alive(response.keep_alive() && keep_alive);
                                  self->keep_ = std::move(keep);
                                  self->write(std::move(response));
                              });
        };
        try {
            state_->async_handler(std::move(request), peer_, respond);
        } catch (const std::exception& e) {
            CG_LOG_LIMITED(state_->handler_log, error) << "http handler threw: " << e.what();
            respond(error_response(http::status::internal_server_error, e.what()), nullptr);
        }
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
        // A client that does not read its answer is closed too.
        lowest().expires_after(state_->options.body_timeout);
        http::async_write(stream_, response_,
                          [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                              self->keep_.reset();
                              if (ec) {
                                  if (ec == beast::error::timeout)
                                      bump(self->state_->timeout_write);
                                  return;
                              }
                              if (!self->response_.keep_alive()) {
                                  if (self->discard_body_) return self->discard_then_close();
                                  return self->do_close();
                              }
                              self->await_next_request();
                          });
    }

    // After refusing a body unread (413): the FIN says the answer is whole, then what the client
    // still sends is read and dropped for a while, so it reads the 413 instead of a reset
    // (closing with unread bytes resets the connection, and a sender that writes its whole body
    // before reading would take that for a failure worth retrying). Plain TCP only.
    void discard_then_close() {
        do_close();
        if constexpr (std::is_same_v<Stream, PlainStream>) {
            discard_buffer_ = std::make_unique<char[]>(kDiscardChunk);
            lowest().expires_after(kDiscardTime);
            discard_more();
        }
    }
    void discard_more() {
        stream_.async_read_some(
            boost::asio::buffer(discard_buffer_.get(), kDiscardChunk),
            [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                if (ec) return;  // the client closed, or kDiscardTime passed
                self->discard_more();
            });
    }
    static constexpr std::size_t kDiscardChunk = 16 * 1024;
    static constexpr std::chrono::seconds kDiscardTime{2};

    void do_close() {
        if constexpr (std::is_same_v<Stream, TlsStream>) {
            lowest().expires_after(std::chrono::seconds(2));
            stream_.async_shutdown([self = this->shared_from_this()](beast::error_code) {});
        } else {
            beast::error_code ignored;
            stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
        }
    }

    Stream stream_;
    beast::flat_buffer buffer_{request_header_limit + request_body_limit};
    std::optional<http::request_parser<http::string_body>> parser_;
    HttpResponse response_;
    std::shared_ptr<void> keep_;  // what the handler asked to keep until response_ is written
    std::shared_ptr<ServerState> state_;
    boost::asio::ip::address peer_;
    std::uint64_t wait_id_ = 0;  // while waiting for a request (see ServerState::waiting)
    bool discard_body_ = false;  // a body refused unread: drop what follows (discard_then_close)
    std::unique_ptr<char[]> discard_buffer_;
};

// Out of descriptors or memory: retrying at once fails again at once. Other accept errors are
// one connection's (it was reset before we took it) and the next accept may succeed.
bool accept_needs_backoff(const beast::error_code& ec) {
    return ec == boost::asio::error::no_descriptors || ec == boost::asio::error::no_buffer_space ||
           ec == boost::asio::error::no_memory ||
           ec == boost::system::errc::too_many_files_open_in_system;
}

}  // namespace

class HttpServer::Listener : public std::enable_shared_from_this<Listener> {
  public:
    Listener(boost::asio::io_context& io, const tcp::endpoint& endpoint, HttpHandler handler,
             HttpServerOptions options)
        : io_(io),
          acceptor_(io),
          backoff_timer_(io),
          state_(std::make_shared<ServerState>(std::move(handler), options)) {
        acceptor_.open(endpoint.protocol());
        acceptor_.set_option(boost::asio::socket_base::reuse_address(true));
        acceptor_.bind(endpoint);
        acceptor_.listen(boost::asio::socket_base::max_listen_connections);
    }

    void accept() {
        acceptor_.async_accept(
            boost::asio::make_strand(io_),
            [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
                self->on_accept(ec, std::move(socket));
            });
    }

    void stop() {
        boost::asio::post(acceptor_.get_executor(), [self = shared_from_this()] {
            beast::error_code ignored;
            self->acceptor_.close(ignored);
            self->backoff_timer_.cancel();
        });
    }

    tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }

    // Before accept(): every request goes to `handler`.
    void set_async_handler(AsyncHttpHandler handler) { state_->async_handler = std::move(handler); }

  private:
    void on_accept(beast::error_code ec, tcp::socket socket) {
        if (!acceptor_.is_open()) return;
        if (ec) {
            bump(state_->accept_errors);
            bool back_off = accept_needs_backoff(ec);
            if (back_off) {
                backoff_ = backoff_.count() == 0 ? first_accept_backoff
                                                 : std::min<std::chrono::milliseconds>(
                                                       2 * backoff_, last_accept_backoff);
            }
            CG_LOG_LIMITED(state_->accept_log, warn)
                << "http accept: " << ec.message()
                << (back_off ? ", waiting " + std::to_string(backoff_.count()) + " ms" : "");
            if (!back_off) return accept();
            backoff_timer_.expires_after(backoff_);
            backoff_timer_.async_wait([self = shared_from_this()](beast::error_code wait_error) {
                if (wait_error || !self->acceptor_.is_open()) return;
                self->accept();
            });
            return;
        }
        backoff_ = {};
        beast::error_code peer_error;
        auto peer = socket.remote_endpoint(peer_error);
        if (!peer_error) start_session(std::move(socket), peer.address());
        accept();
    }

    void start_session(tcp::socket socket, const boost::asio::ip::address& peer) {
        auto admission = state_->admit(peer);
        if (admission.evicted) admission.evicted->evict();
        if (const char* limit = admission.refused) {
            bool per_source = std::string_view(limit) == "http.max_connections_per_source";
            bump(per_source ? state_->refused_source : state_->refused_total);
            CG_LOG_LIMITED(state_->refused_log, warn).with("peer", peer.to_string())
                << "http: refused a connection from " << peer.to_string() << " (" << limit << " = "
                << (per_source ? state_->options.max_connections_per_source
                               : state_->options.max_connections)
                << ")";
            beast::error_code ignored;
            socket.close(ignored);
            return;
        }
        if (state_->options.tls) {
            std::make_shared<HttpSession<TlsStream>>(std::move(socket), state_, peer,
                                                     *state_->options.tls)
                ->start();
        } else {
            std::make_shared<HttpSession<PlainStream>>(std::move(socket), state_, peer)->start();
        }
    }

    boost::asio::io_context& io_;
    tcp::acceptor acceptor_;
    boost::asio::steady_timer backoff_timer_;
    std::chrono::milliseconds backoff_{0};
    std::shared_ptr<ServerState> state_;
};

HttpServer::HttpServer(boost::asio::io_context& io, const tcp::endpoint& endpoint,
                       HttpHandler handler, HttpServerOptions options)
    : listener_(std::make_shared<Listener>(io, endpoint, std::move(handler), options)) {}

HttpServer::HttpServer(boost::asio::io_context& io, const tcp::endpoint& endpoint,
                       AsyncHttpHandler handler, HttpServerOptions options)
    : HttpServer(io, endpoint, HttpHandler{}, options) {
    listener_->set_async_handler(std::move(handler));
}

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
