// SO_REUSEPORT listener per I/O thread.
#include "gateway/mqtt/mqtt_listener.hpp"

#include <sys/socket.h>

#include <boost/asio/detail/socket_option.hpp>

#include "gateway/mqtt/mqtt_connection.hpp"
#include "gateway/ops/log.hpp"

namespace citygate::gateway {
namespace {

using reuse_port = boost::asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

// Accepted sockets allowed beyond max_connections, waiting to be refused in CONNACK.
constexpr std::size_t pending_allowance = 1024;

}  // namespace

MqttListener::MqttListener(IoWorker& worker, const boost::asio::ip::tcp::endpoint& endpoint,
                           boost::asio::ssl::context* tls)
    : worker_(worker), acceptor_(worker.io()), retry_(worker.io()), tls_(tls) {
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
    retry_.cancel();
}

void MqttListener::accept() {
    acceptor_.async_accept(
        worker_.io(), [self = shared_from_this()](const boost::system::error_code& ec,
                                                  MqttConnection::Socket socket) {
            if (ec == boost::asio::error::operation_aborted || !self->acceptor_.is_open()) return;
            if (ec) {
                // Out of descriptors or a connection reset before accept: log, and give closing
                // connections a moment to free descriptors instead of spinning.
                CG_LOG(warn) << "mqtt accept failed: " << ec.message();
                self->retry_.expires_after(std::chrono::milliseconds(50));
                self->retry_.async_wait([self](const boost::system::error_code& wait_ec) {
                    if (!wait_ec) self->accept();
                });
                return;
            } else if (auto& context = self->worker_.context();
                       context.connections.load() >= context.max_connections + pending_allowance) {
                // Sockets beyond the limit plus room for CONNECTs in flight are closed at once, so
                // a flood cannot exhaust descriptors; the rest hear "server busy" in CONNACK.
                context.metrics.error(ErrorKind::connection_limit).Increment();
                boost::system::error_code ignored;
                socket.close(ignored);
            } else {
                self->worker_.context().connections.fetch_add(1);
                MqttConnection::open(self->worker_, std::move(socket), self->tls_);
            }
            self->accept();
        });
}

}  // namespace citygate::gateway
