// Opening and closing a client socket, TCP or TLS.
#include "loadgen/transport.hpp"

#include <netinet/in.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24  // Linux 4.2
#endif

namespace citygate::loadgen {

boost::system::error_code Transport::open(const boost::asio::ip::tcp::endpoint& server,
                                          const boost::asio::ip::address* source) {
    plain_.reset();
    secure_.reset();
    if (tls_) {
        secure_.emplace(io_, *tls_);
    } else {
        plain_.emplace(io_);
    }
    boost::system::error_code ec;
    socket().open(server.protocol(), ec);
    if (ec || !source) return ec;
    int on = 1;
    // Best effort: without it, bind picks a port per source address and still works.
    ::setsockopt(socket().native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &on, sizeof on);
    socket().bind({*source, 0}, ec);
    return ec;
}

void Transport::close() {
    boost::system::error_code ignored;
    if (plain_) plain_->close(ignored);
    if (secure_) secure_->lowest_layer().close(ignored);
}

boost::asio::ip::tcp::socket& Transport::socket() {
    return secure_ ? secure_->next_layer() : *plain_;
}

}  // namespace citygate::loadgen
