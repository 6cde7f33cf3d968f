// SO_REUSEPORT listener per I/O thread.
#include "gateway/mqtt_listener.hpp"

#include <sys/socket.h>

#include <boost/asio/detail/socket_option.hpp>

#include "gateway/log.hpp"
#include "gateway/mqtt_connection.hpp"

namespace citygate::gateway {
namespace {

using reuse_port = boost::asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

}  // namespace

MqttListener::MqttListener(IoWorker& worker, const boost::asio::ip::tcp::endpoint& endpoint,
                           boost::asio::ssl::context* tls)
    : worker_(worker), acceptor_(worker.io()), tls_(tls) {
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(boost::asio::socket_base::reuse_address(true));
    acceptor_.set_option(reuse_port(true));
    acceptor_.bind(endpoint);
    acceptor_.listen(boost::asio::socket_base::max_listen_connections);
}

void MqttListener::start() {
    accept();
}

void MqttListener::stop() {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
}

void MqttListener::accept() {
    acceptor_.async_accept(worker_.io(), [self = shared_from_this()](
                                             const boost::system::error_code& ec,
                                             boost::asio::ip::tcp::socket socket) {
        if (ec == boost::asio::error::operation_aborted || !self->acceptor_.is_open()) return;
        if (ec) {
            // Out of descriptors or a connection reset before accept: log and keep accepting.
            CG_LOG(warn) << "mqtt accept failed: " << ec.message();
        } else {
            self->worker_.context().connections.fetch_add(1);
            std::make_shared<MqttConnection>(self->worker_, std::move(socket), self->tls_)->start();
        }
        self->accept();
    });
}

}  // namespace citygate::gateway
