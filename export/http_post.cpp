// Synchronous Beast client with a deadline: asynchronous operations run to completion on a
// private io_context, so beast::tcp_stream's timeout applies (blocking calls ignore it).
#include "export/http_post.hpp"

#include <atomic>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

namespace citygate::exports {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;

std::optional<HttpUrl> HttpUrl::parse(std::string_view url, std::string& error) {
    HttpUrl out;
    if (url.substr(0, 7) == "http://") {
        url.remove_prefix(7);
    } else if (url.substr(0, 8) == "https://") {
        url.remove_prefix(8);
        out.tls = true;
        out.port = "443";
    } else {
        error = "must start with http:// or https://";
        return std::nullopt;
    }
    auto slash = url.find('/');
    std::string_view authority = url.substr(0, slash);
    if (slash != std::string_view::npos) out.target = std::string(url.substr(slash));
    if (authority.find('@') != std::string_view::npos) {
        error = "credentials in the URL are not supported: use username and password";
        return std::nullopt;
    }
    std::string_view host = authority;
    if (!authority.empty() && authority.front() == '[') {  // [::1]:8428
        auto close = authority.find(']');
        if (close == std::string_view::npos) {
            error = "unclosed [ in the host";
            return std::nullopt;
        }
        host = authority.substr(1, close - 1);
        std::string_view rest = authority.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') {
                error = "expected :port after ]";
                return std::nullopt;
            }
            out.port = std::string(rest.substr(1));
        }
    } else if (auto colon = authority.rfind(':'); colon != std::string_view::npos) {
        host = authority.substr(0, colon);
        out.port = std::string(authority.substr(colon + 1));
    }
    if (host.empty()) {
        error = "no host";
        return std::nullopt;
    }
    if (out.port.empty() || out.port.size() > 5 ||
        out.port.find_first_not_of("0123456789") != std::string::npos ||
        std::stoul(out.port) == 0 || std::stoul(out.port) > 65535) {
        error = "bad port \"" + out.port + "\"";
        return std::nullopt;
    }
    out.host = std::string(host);
    return out;
}

struct HttpPost::Impl {
    using TlsStream = beast::ssl_stream<beast::tcp_stream>;
    HttpUrl url;
    std::chrono::milliseconds timeout;
    boost::asio::io_context io{1};
    std::optional<boost::asio::ssl::context> tls;  // https only
    // One of the two while connected.
    std::optional<beast::tcp_stream> plain;
    std::optional<TlsStream> secure;
    beast::flat_buffer buffer;
    std::atomic<bool> cancelled{false};

    bool connected() const { return plain || secure; }
    beast::tcp_stream& lowest() { return secure ? beast::get_lowest_layer(*secure) : *plain; }
    void disconnect() {
        plain.reset();
        secure.reset();
    }

    // Runs the started operations until they finish (each has set its result). On cancel():
    // `abort` cancels them and their handlers run (with operation_aborted) before this returns,
    // while what they capture is still alive; false then.
    template <typename Abort>
    bool run(Abort abort) {
        io.restart();
        if (!cancelled) io.run();
        if (!cancelled) return true;
        abort();
        io.restart();
        io.run();
        return false;
    }
    bool run_stream() {
        return run([this] {
            boost::system::error_code ignored;
            if (connected()) lowest().socket().close(ignored);
        });
    }

    boost::system::error_code connect(std::chrono::steady_clock::time_point deadline) {
        boost::system::error_code result;
        tcp::resolver resolver(io);
        tcp::resolver::results_type endpoints;
        resolver.async_resolve(url.host, url.port,
                               [&](const boost::system::error_code& ec, auto found) {
                                   result = ec;
                                   endpoints = std::move(found);
                               });
        if (!run([&] { resolver.cancel(); })) return boost::asio::error::operation_aborted;
        if (result) return result;
        if (tls) {
            secure.emplace(io, *tls);
            // SNI, and the certificate must name the host.
            if (!SSL_set_tlsext_host_name(secure->native_handle(), url.host.c_str())) {
                disconnect();
                return boost::asio::error::invalid_argument;
            }
            secure->set_verify_callback(boost::asio::ssl::host_name_verification(url.host));
        } else {
            plain.emplace(io);
        }
        lowest().expires_at(deadline);
        lowest().async_connect(
            endpoints, [&](const boost::system::error_code& ec, const auto&) { result = ec; });
        if (!run_stream()) result = boost::asio::error::operation_aborted;
        if (!result && secure) {
            secure->async_handshake(boost::asio::ssl::stream_base::client,
                                    [&](const boost::system::error_code& ec) { result = ec; });
            if (!run_stream()) result = boost::asio::error::operation_aborted;
        }
        if (result) disconnect();
        return result;
    }

    template <typename Message>
    boost::system::error_code write(Message& message) {
        boost::system::error_code ec;
        auto done = [&](const boost::system::error_code& e, std::size_t) { ec = e; };
        if (secure) {
            http::async_write(*secure, message, done);
        } else {
            http::async_write(*plain, message, done);
        }
        if (!run_stream()) ec = boost::asio::error::operation_aborted;
        return ec;
    }

    template <typename Parser>
    boost::system::error_code read(Parser& parser) {
        boost::system::error_code ec;
        auto done = [&](const boost::system::error_code& e, std::size_t) { ec = e; };
        buffer.clear();
        if (secure) {
            http::async_read(*secure, buffer, parser, done);
        } else {
            http::async_read(*plain, buffer, parser, done);
        }
        if (!run_stream()) ec = boost::asio::error::operation_aborted;
        return ec;
    }
};

HttpPost::HttpPost(HttpUrl url, std::chrono::milliseconds timeout,
                   const std::filesystem::path& ca_file)
    : impl_(std::make_unique<Impl>()) {
    impl_->url = std::move(url);
    impl_->timeout = timeout;
    if (impl_->url.tls) {
        auto& tls = impl_->tls.emplace(boost::asio::ssl::context::tls_client);
        tls.set_options(boost::asio::ssl::context::no_sslv2 | boost::asio::ssl::context::no_sslv3 |
                        boost::asio::ssl::context::no_tlsv1 |
                        boost::asio::ssl::context::no_tlsv1_1);
        tls.set_verify_mode(boost::asio::ssl::verify_peer);
        boost::system::error_code ec;
        if (ca_file.empty()) {
            tls.set_default_verify_paths(ec);
        } else {
            tls.load_verify_file(ca_file.string(), ec);
        }
        if (ec) {
            throw std::invalid_argument(
                "cannot load CA certificates" +
                (ca_file.empty() ? std::string(" (system default)") : " from " + ca_file.string()) +
                ": " + ec.message());
        }
    }
}

HttpPost::~HttpPost() = default;

HttpReply HttpPost::post(const std::string& body,
                         const std::vector<std::pair<std::string, std::string>>& headers) {
    Impl& s = *impl_;
    HttpReply reply;
    http::request<http::string_body> request{http::verb::post, s.url.target, 11};
    request.set(http::field::host, s.url.host + ":" + s.url.port);
    request.set(http::field::user_agent, "citygate/" CITYGATE_EXPORT_VERSION);
    for (const auto& [name, value] : headers)
        request.set(name, value);
    request.body() = body;
    request.prepare_payload();
    auto deadline = std::chrono::steady_clock::now() + s.timeout;  // the whole exchange

    // A kept-alive connection the receiver closed meanwhile fails the write or the read at once:
    // try once more on a fresh connection before calling it a failure.
    for (int attempt = 0; attempt < 2; ++attempt) {
        if (s.cancelled) {
            reply.error = "cancelled";
            return reply;
        }
        bool reused = s.connected();
        if (!reused) {
            if (auto ec = s.connect(deadline)) {
                reply.error = "connect: " + ec.message();
                return reply;
            }
        }
        s.lowest().expires_at(deadline);
        boost::system::error_code ec = s.write(request);
        http::response_parser<http::string_body> parser;
        parser.body_limit(1 << 20);
        if (!ec) ec = s.read(parser);
        if (s.cancelled) {
            s.disconnect();
            reply.error = "cancelled";
            return reply;
        }
        if (ec) {
            s.disconnect();
            if (reused && ec != beast::error::timeout) continue;
            reply.error = (ec == beast::error::timeout ? "timed out: " : "") + ec.message();
            return reply;
        }
        auto& response = parser.get();
        reply.status = response.result_int();
        if (auto found = response.find(http::field::retry_after); found != response.end()) {
            reply.retry_after = std::string(found->value());
        }
        reply.body = response.body().substr(0, 1024);
        if (!response.keep_alive()) s.disconnect();
        return reply;
    }
    return reply;
}

void HttpPost::cancel() {
    impl_->cancelled = true;
    impl_->io.stop();
}

}  // namespace citygate::exports
