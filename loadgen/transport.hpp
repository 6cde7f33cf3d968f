// The byte stream under one simulated sensor: plain TCP, or TLS over it with a client
// certificate. One per client, reopened for each reconnect; used from one io_context thread.
#pragma once

#include <optional>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>

namespace citygate::loadgen {

class Transport {
  public:
    // `tls` null: plain TCP. Otherwise the run's TLS context (CA, client certificate and key),
    // shared by every connection; it must outlive them.
    Transport(boost::asio::io_context& io, boost::asio::ssl::context* tls) : io_(io), tls_(tls) {}

    // A fresh socket, bound to `source` with IP_BIND_ADDRESS_NO_PORT so that the kernel
    // picks the port at connect time per 4-tuple: each source address then yields ~64k
    // connections to one server instead of sharing one port range across all addresses.
    // Precondition: no operation of the previous socket is pending (a TLS stream's composed
    // operations touch the stream until their handler runs).
    boost::system::error_code open(const boost::asio::ip::tcp::endpoint& server,
                                   const boost::asio::ip::address* source);

    template <typename Handler>
    void async_connect(const boost::asio::ip::tcp::endpoint& server, Handler&& handler) {
        socket().async_connect(server, std::forward<Handler>(handler));
    }

    // TLS: the client handshake; plain TCP: completes at once (posted) with success.
    template <typename Handler>
    void async_handshake(Handler&& handler) {
        if (secure_) {
            secure_->async_handshake(boost::asio::ssl::stream_base::client,
                                     std::forward<Handler>(handler));
        } else {
            boost::asio::post(io_, [h = std::forward<Handler>(handler)]() mutable {
                h(boost::system::error_code());
            });
        }
    }

    template <typename Buffer, typename Handler>
    void async_read_some(const Buffer& buffer, Handler&& handler) {
        if (secure_) return secure_->async_read_some(buffer, std::forward<Handler>(handler));
        plain_->async_read_some(buffer, std::forward<Handler>(handler));
    }

    template <typename Buffer, typename Handler>
    void async_write(const Buffer& buffer, Handler&& handler) {
        if (secure_)
            return boost::asio::async_write(*secure_, buffer, std::forward<Handler>(handler));
        boost::asio::async_write(*plain_, buffer, std::forward<Handler>(handler));
    }

    // Closes the socket without a TLS close_notify (the MQTT DISCONNECT already said goodbye).
    // Pending operations complete with operation_aborted; the stream object stays until open().
    void close();

  private:
    boost::asio::ip::tcp::socket& socket();

    boost::asio::io_context& io_;
    boost::asio::ssl::context* tls_;
    std::optional<boost::asio::ip::tcp::socket> plain_;
    std::optional<boost::asio::ssl::stream<boost::asio::ip::tcp::socket>> secure_;
};

}  // namespace citygate::loadgen
