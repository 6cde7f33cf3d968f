// Accepts MQTT connections on one I/O thread. Every worker has its own listener bound to the
// same port with SO_REUSEPORT, so the kernel spreads connections across threads.
#pragma once

#include <memory>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "gateway/mqtt/io_worker.hpp"

namespace citygate::gateway {

class MqttListener : public std::enable_shared_from_this<MqttListener> {
  public:
    // Binds and listens; throws boost::system::system_error when the endpoint is unusable.
    // `tls` set: connections are TLS (the context must outlive the listener and connections).
    MqttListener(IoWorker& worker, const boost::asio::ip::tcp::endpoint& endpoint,
                 boost::asio::ssl::context* tls = nullptr);

    void start();
    // Stops accepting (I/O thread); established connections are unaffected.
    void stop();
    boost::asio::ip::tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }

  private:
    void accept();

    IoWorker& worker_;
    boost::asio::ip::tcp::acceptor acceptor_;
    boost::asio::steady_timer retry_;  // after a failed accept (out of descriptors)
    boost::asio::ssl::context* tls_;
};

}  // namespace citygate::gateway
