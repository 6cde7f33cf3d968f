// Consumer mode (see upstream_consumer.hpp).
#include "gateway/upstream/upstream_consumer.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <fstream>
#include <future>
#include <mutex>
#include <random>
#include <sstream>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include "gateway/ops/log.hpp"
#include "protocols/mqtt/client_session.hpp"
#include "storage/cpu_limit.hpp"

namespace citygate::gateway {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

// One upstream's metrics, label upstream="<name>".
struct UpstreamMetrics {
    prometheus::Gauge& connected;
    prometheus::Counter& connects;
    prometheus::Counter& connect_failures;
    prometheus::Counter& messages;
    prometheus::Counter& redelivered;
    prometheus::Counter& acknowledged;
    prometheus::Counter& refused;
    prometheus::Counter& withheld;
    prometheus::Gauge& inflight;
    prometheus::Histogram& ack_latency;
    prometheus::Family<prometheus::Gauge>& lag;  // per connection
};

// One consumer thread: its io_context and ingest appender, shared by its connections.
struct UpstreamWorker {
    explicit UpstreamWorker(ingest::IngestUnit& unit) : appender(unit) {}
    asio::io_context io;
    ingest::Appender appender;
    std::vector<UpstreamConnection*> connections;
};

namespace {

// What every connection of one upstream shares.
struct UpstreamSettings {
    Config::Upstream config;
    BrokerAddress broker;
    std::string password;
    ingest::Identity identity;
    std::vector<std::string> filters;  // as subscribed: $share/<group>/<filter>
    std::shared_ptr<asio::ssl::context> tls;
    std::uint32_t max_packet_size = 0;
};

std::string host_name() {
    char name[256] = {};
    if (::gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
    return name;
}

std::string replace_all(std::string text, std::string_view from, std::string_view to) {
    for (std::size_t at = text.find(from); at != std::string::npos;
         at = text.find(from, at + to.size())) {
        text.replace(at, from.size(), to);
    }
    return text;
}

std::shared_ptr<asio::ssl::context> client_tls(const Config::Upstream& u,
                                               const std::string& option) {
    auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
    boost::system::error_code ec;
    context->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                         asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                         asio::ssl::context::no_tlsv1_1);
    if (!u.tls_ca_file.empty()) {
        context->load_verify_file(u.tls_ca_file.string(), ec);
        if (ec) throw ConfigError(option + ".tls_ca_file: " + ec.message());
    } else {
        context->set_default_verify_paths(ec);
        if (ec) throw ConfigError(option + ": cannot load the system's CAs: " + ec.message());
    }
    if (!u.tls_cert_file.empty()) {
        context->use_certificate_chain_file(u.tls_cert_file.string(), ec);
        if (ec) throw ConfigError(option + ".tls_cert_file: " + ec.message());
        context->use_private_key_file(u.tls_key_file.string(), asio::ssl::context::pem, ec);
        if (ec) throw ConfigError(option + ".tls_key_file: " + ec.message());
    }
    context->set_verify_mode(u.tls_insecure ? asio::ssl::verify_none : asio::ssl::verify_peer);
    return context;
}

// The upstream's password: the first line of password_file when set.
std::string password_of(const Config::Upstream& u, const std::string& option) {
    if (u.password_file.empty()) return u.password;
    std::ifstream file(u.password_file);
    std::string password;
    if (!file || !std::getline(file, password)) {
        throw ConfigError(option + ".password_file: cannot read " + u.password_file.string());
    }
    return password;
}

// The v5 reason a message the gateway will not store is acknowledged with (it is counted and
// dropped: sent again it would be refused again).
mqtt::reason_code refusal_reason(ingest::Verdict verdict) {
    switch (verdict) {
        case ingest::Verdict::not_authorized:
            return mqtt::reason_code::not_authorized;
        case ingest::Verdict::topic_unmatched:
            return mqtt::reason_code::topic_name_invalid;
        case ingest::Verdict::payload_invalid:
            return mqtt::reason_code::payload_format_invalid;
        default:
            return mqtt::reason_code::implementation_specific_error;
    }
}

}  // namespace

void check_upstream_files(const std::vector<Config::Upstream>& upstreams) {
    for (std::size_t i = 0; i < upstreams.size(); ++i) {
        const auto& u = upstreams[i];
        const std::string option = "upstream[" + std::to_string(i) + "]";
        password_of(u, option);
        if (auto broker = parse_broker_url(u.url); broker && broker->tls) client_tls(u, option);
    }
}

std::string upstream_client_id(const Config::Upstream& upstream, std::string_view host,
                               unsigned n) {
    std::string id = replace_all(upstream.client_id, "{host}", host);
    id = replace_all(std::move(id), "{name}", upstream.name);
    return replace_all(std::move(id), "{n}", std::to_string(n));
}

// One persistent session with an upstream broker, on its worker's thread only. Connects,
// subscribes, hands messages to storage and acknowledges them once durable; on any failure it
// tears the attempt down and connects again after a back-off with jitter.
class UpstreamConnection final : public std::enable_shared_from_this<UpstreamConnection>,
                                 private mqtt::client_handler {
  public:
    UpstreamConnection(UpstreamWorker& worker, std::shared_ptr<const UpstreamSettings> settings,
                       unsigned index, std::string client_id, UpstreamMetrics& metrics,
                       std::shared_ptr<std::atomic<std::int64_t>> pending,
                       ingest::IngestUnit& ingest)
        : worker_(worker),
          settings_(std::move(settings)),
          client_id_(std::move(client_id)),
          metrics_(metrics),
          lag_(metrics.lag.Add(
              {{"upstream", settings_->config.name}, {"connection", std::to_string(index)}})),
          pending_(std::move(pending)),
          ingest_(ingest),
          admission_(ingest.series_admission(settings_->identity, client_id_)),
          session_(*this, mqtt::protocol_version::v5, options_for(*settings_)),
          resolver_(worker.io),
          connect_timer_(worker.io),
          keep_alive_timer_(worker.io),
          reconnect_timer_(worker.io),
          lag_timer_(worker.io),
          rng_(std::random_device{}()) {}

    void start() {
        asio::post(worker_.io, [self = shared_from_this()] {
            self->connect();
            self->watch_lag();
        });
    }

    // Worker thread. No more messages, no reconnects; acknowledgements still go out.
    void stop_taking() {
        stopping_ = true;
        reconnect_timer_.cancel();
        lag_timer_.cancel();
        if (!connected_) teardown();
    }

    // Worker thread. DISCONNECT (the broker keeps the session for its expiry) and close.
    void finish() {
        stopping_ = true;
        if (connected_) {
            session_.disconnect();
        } else {
            teardown();
        }
    }

    bool closed() const { return !socket_open_; }

    // Worker thread: storage has room again.
    void retry_stalled() {
        while (!stalled_.empty()) {
            Stalled& next = stalled_.front();
            if (!submit(next.write, next.packet_id, next.received)) return;
            stalled_.pop_front();
        }
        if (paused_) {
            paused_ = false;
            read();
        }
    }

  private:
    struct Stalled {
        ingest::Write write;
        std::uint16_t packet_id;
        Clock::time_point received;
    };

    static mqtt::client_options options_for(const UpstreamSettings& s) {
        mqtt::client_options options;
        options.limits.maximum_packet_size = s.max_packet_size;
        options.acknowledge_on_return = false;
        return options;
    }

    const std::string& name() const { return settings_->config.name; }

    // ---- connecting

    void connect() {
        if (stopping_) return;
        ++epoch_;
        const auto epoch = epoch_;
        const auto& broker = settings_->broker;
        connect_timer_.expires_after(settings_->config.connect_timeout);
        connect_timer_.async_wait([self = shared_from_this(), epoch](boost::system::error_code ec) {
            if (ec || epoch != self->epoch_ || self->connected_) return;
            self->fail_attempt("no CONNACK within connect_timeout");
        });
        resolver_.async_resolve(
            broker.host, std::to_string(broker.port),
            [self = shared_from_this(), epoch](boost::system::error_code ec,
                                               tcp::resolver::results_type endpoints) {
                if (epoch != self->epoch_) return;
                if (ec) return self->fail_attempt("cannot resolve the broker: " + ec.message());
                self->open(std::move(endpoints));
            });
    }

    void open(tcp::resolver::results_type endpoints) {
        socket_.emplace(worker_.io);
        socket_open_ = true;
        asio::async_connect(*socket_, endpoints,
                            [self = shared_from_this(), epoch = epoch_](
                                boost::system::error_code ec, const tcp::endpoint&) {
                                if (epoch != self->epoch_) return;
                                if (ec) return self->fail_attempt("connect: " + ec.message());
                                boost::system::error_code ignored;
                                self->socket_->set_option(tcp::no_delay(true), ignored);
                                if (self->settings_->tls) return self->handshake();
                                self->send_connect();
                            });
    }

    void handshake() {
        tls_.emplace(std::move(*socket_), *settings_->tls);
        socket_.reset();
        const std::string& host = settings_->broker.host;
        SSL_set_tlsext_host_name(tls_->native_handle(), host.c_str());
        if (!settings_->config.tls_insecure) {
            tls_->set_verify_callback(asio::ssl::host_name_verification(host));
        }
        tls_->async_handshake(
            asio::ssl::stream_base::client,
            [self = shared_from_this(), epoch = epoch_](boost::system::error_code ec) {
                if (epoch != self->epoch_) return;
                if (ec) return self->fail_attempt("TLS: " + ec.message());
                self->send_connect();
            });
    }

    void send_connect() {
        const auto& c = settings_->config;
        mqtt::connect_packet packet;
        packet.version = mqtt::protocol_version::v5;
        packet.clean_start = false;  // the broker keeps what we did not acknowledge
        packet.keep_alive_s = static_cast<std::uint16_t>(
            std::chrono::duration_cast<std::chrono::seconds>(c.keep_alive).count());
        packet.client_id = client_id_;
        if (!c.username.empty()) packet.username = c.username;
        if (!settings_->password.empty()) {
            packet.password =
                mqtt::bytes_view(reinterpret_cast<const std::uint8_t*>(settings_->password.data()),
                                 settings_->password.size());
        }
        packet.props.session_expiry_interval = static_cast<std::uint32_t>(
            std::chrono::duration_cast<std::chrono::seconds>(c.session_expiry).count());
        packet.props.receive_maximum = c.receive_maximum;
        packet.props.maximum_packet_size = settings_->max_packet_size;
        in_.assign(16 * 1024, 0);
        filled_ = 0;
        session_.connect(packet);
        read();
    }

    // ---- the socket

    void read() {
        if (paused_ || !socket_open_ || reading_) return;
        if (in_.size() - filled_ < 4096) {
            // A packet is bounded by max_packet_size (the parser refuses longer ones).
            in_.resize(std::min<std::size_t>(in_.size() * 2, settings_->max_packet_size + 8192));
        }
        reading_ = true;
        auto handler = [self = shared_from_this(), epoch = epoch_](boost::system::error_code ec,
                                                                   std::size_t n) {
            if (epoch != self->epoch_) return;
            self->reading_ = false;
            if (ec) {
                self->session_.on_peer_closed();
                return self->fail_attempt(ec == asio::error::eof
                                              ? "the broker closed the connection"
                                              : "read: " + ec.message());
            }
            self->received(n);
        };
        auto buffer = asio::buffer(in_.data() + filled_, in_.size() - filled_);
        if (tls_) {
            tls_->async_read_some(buffer, std::move(handler));
        } else {
            socket_->async_read_some(buffer, std::move(handler));
        }
    }

    void received(std::size_t n) {
        filled_ += n;
        const auto epoch = epoch_;
        std::size_t used = session_.on_bytes({in_.data(), filled_});
        if (epoch != epoch_ || !socket_open_) return;  // the session ended in there
        std::memmove(in_.data(), in_.data() + used, filled_ - used);
        filled_ -= used;
        read();
    }

    void send(std::span<const std::uint8_t> bytes) override {
        out_.insert(out_.end(), bytes.begin(), bytes.end());
        write();
    }

    void write() {
        if (writing_ || out_.empty() || !socket_open_) return;
        writing_ = true;
        sending_.swap(out_);
        out_.clear();
        auto handler = [self = shared_from_this(), epoch = epoch_](boost::system::error_code ec,
                                                                   std::size_t) {
            if (epoch != self->epoch_) return;
            self->writing_ = false;
            self->sending_.clear();
            if (ec) return self->fail_attempt("write: " + ec.message());
            if (!self->out_.empty()) return self->write();
            if (self->close_after_write_) self->teardown_then_reconnect();
        };
        if (tls_) {
            asio::async_write(*tls_, asio::buffer(sending_), std::move(handler));
        } else {
            asio::async_write(*socket_, asio::buffer(sending_), std::move(handler));
        }
    }

    // ---- the session's events

    void on_connack(const mqtt::connack_packet& ack) override {
        if (ack.reason != mqtt::reason_code::success) return;  // close() follows
        connect_timer_.cancel();
        connected_ = true;
        attempts_ = 0;
        metrics_.connected.Increment();
        metrics_.connects.Increment();
        CG_LOG(info) << "upstream " << name() << ": connected to " << settings_->broker.host << ":"
                     << settings_->broker.port << " as " << client_id_
                     << (ack.session_present ? " (session resumed)" : " (new session)");
        std::vector<mqtt::subscription> entries;
        for (const auto& filter : settings_->filters)
            entries.push_back({filter, mqtt::qos::at_least_once});
        session_.subscribe(entries);
    }

    void on_suback(const mqtt::suback_packet& ack) override {
        std::size_t failed = 0;
        for (std::size_t i = 0; i < ack.reasons.size(); ++i) {
            if (static_cast<std::uint8_t>(ack.reasons[i]) < 0x80) continue;
            ++failed;
            CG_LOG(error) << "upstream " << name() << ": the broker refused the subscription "
                          << (i < settings_->filters.size() ? settings_->filters[i] : "?")
                          << " (reason 0x" << std::hex
                          << static_cast<int>(static_cast<std::uint8_t>(ack.reasons[i])) << ")";
        }
        if (failed > 0 && failed == ack.reasons.size()) {
            session_.disconnect(mqtt::reason_code::unspecified_error);  // try again later
        }
    }

    void on_message(const mqtt::publish_packet& message) override {
        const auto received = Clock::now();
        metrics_.messages.Increment();
        if (message.dup) metrics_.redelivered.Increment();
        if (stopping_) return;  // not acknowledged: the broker sends it again
        ingest::Write write;
        const ingest::Verdict verdict = worker_.appender.prepare(
            {settings_->identity, client_id_, message.topic, message.payload}, write);
        const std::uint16_t id = message.qos == mqtt::qos::at_most_once ? 0 : message.packet_id;
        if (verdict != ingest::Verdict::stored) {
            static log::RateLimit refusals;
            CG_LOG_LIMITED(refusals, warn)
                << "upstream " << name() << ": refused a message on '" << message.topic
                << "': " << ingest::verdict_name(verdict);
            metrics_.refused.Increment();
            if (id != 0) session_.acknowledge(id, refusal_reason(verdict));
            return;
        }
        if (id != 0) {
            inflight_.push_back({id, received});
            metrics_.inflight.Increment();
        }
        if (!stalled_.empty() || !submit(write, id, received)) {
            stalled_.push_back({std::move(write), id, received});
            paused_ = true;  // read no more until storage has room
        }
    }

    bool submit(ingest::Write& write, std::uint16_t id, Clock::time_point received) {
        auto done = [weak = weak_from_this(), io = &worker_.io, epoch = epoch_, id, received,
                     pending = pending_](const ingest::Outcome& outcome) {
            asio::post(*io, [weak, epoch, id, received, outcome, pending] {
                if (auto self = weak.lock()) self->complete(epoch, id, received, outcome);
                pending->fetch_sub(1);
            });
        };
        pending_->fetch_add(1);
        if (!ingest_.try_submit(write, std::move(done), admission_)) {
            pending_->fetch_sub(1);
            return false;
        }
        return true;
    }

    void complete(std::uint64_t epoch, std::uint16_t id, Clock::time_point received,
                  const ingest::Outcome& outcome) {
        if (epoch != epoch_ || id == 0) return;  // from an earlier connection: sent again
        auto it = std::find_if(inflight_.begin(), inflight_.end(),
                               [id](const auto& f) { return f.first == id; });
        if (it != inflight_.end()) {
            inflight_.erase(it);
            metrics_.inflight.Decrement();
        }
        const bool durable = outcome.verdict != ingest::Verdict::storage_failed;
        if (!durable || outcome.verdict == ingest::Verdict::series_limit) {
            // Not acknowledged: the broker sends it again once we reconnect, by which time the
            // WAL may take it (or the series limit may have room).
            static log::RateLimit withheld;
            CG_LOG_LIMITED(withheld, warn)
                << "upstream " << name() << ": not acknowledging a message ("
                << (durable ? "series limit" : "storage write failed: " + outcome.failure)
                << "); reconnecting so that the broker sends it again";
            metrics_.withheld.Increment();
            if (connected_) session_.disconnect(mqtt::reason_code::unspecified_error);
            return;
        }
        metrics_.acknowledged.Increment();
        metrics_.ack_latency.Observe(
            std::chrono::duration<double>(Clock::now() - received).count());
        session_.acknowledge(id);
    }

    void arm_timer(mqtt::client_timer, std::chrono::milliseconds after) override {
        keep_alive_timer_.expires_after(after);
        keep_alive_timer_.async_wait(
            [self = shared_from_this(), epoch = epoch_](boost::system::error_code ec) {
                if (ec || epoch != self->epoch_) return;
                self->session_.on_timer(mqtt::client_timer::keep_alive);
            });
    }

    void cancel_timer(mqtt::client_timer) override { keep_alive_timer_.cancel(); }

    void on_published(std::uint16_t, mqtt::reason_code) override {}

    void close(mqtt::client_end why, mqtt::reason_code reason) override {
        if (why == mqtt::client_end::disconnected) {
            close_after_write_ = true;  // after the DISCONNECT (and the acks before it)
            if (!writing_ && out_.empty())
                asio::post(worker_.io, [self = shared_from_this(), epoch = epoch_] {
                    if (epoch == self->epoch_) self->teardown_then_reconnect();
                });
            return;
        }
        std::ostringstream why_text;
        why_text << (why == mqtt::client_end::refused              ? "the broker refused CONNECT"
                     : why == mqtt::client_end::server_disconnect  ? "the broker disconnected"
                     : why == mqtt::client_end::keep_alive_timeout ? "keep-alive timeout"
                                                                   : "protocol error")
                 << " (reason 0x" << std::hex << static_cast<int>(static_cast<std::uint8_t>(reason))
                 << ")";
        // Not from inside on_bytes(): the read handler is still on the stack.
        asio::post(worker_.io, [self = shared_from_this(), epoch = epoch_, text = why_text.str()] {
            if (epoch == self->epoch_) self->fail_attempt(text);
        });
    }

    // ---- failures and reconnects

    void fail_attempt(const std::string& why) {
        if (!stopping_) {
            static log::RateLimit failures;
            CG_LOG_LIMITED(failures, warn)
                << "upstream " << name() << " (" << client_id_ << "): " << why;
            if (!connected_) metrics_.connect_failures.Increment();
        }
        teardown_then_reconnect();
    }

    void teardown_then_reconnect() {
        teardown();
        if (stopping_) return;
        const auto& c = settings_->config;
        const double base = std::min(static_cast<double>(c.reconnect_max.count()),
                                     static_cast<double>(c.reconnect_min.count()) *
                                         static_cast<double>(1u << std::min(attempts_, 20u)));
        ++attempts_;
        std::uniform_real_distribution<double> jitter(0.5, 1.0);
        reconnect_timer_.expires_after(
            std::chrono::milliseconds(static_cast<std::int64_t>(base * jitter(rng_))));
        reconnect_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
            if (!ec) self->connect();
        });
    }

    // Ends the attempt: its handlers still to come see another epoch and do nothing; storage
    // completions of its messages are dropped (the broker sends those messages again).
    void teardown() {
        ++epoch_;
        if (connected_) metrics_.connected.Decrement();
        connected_ = false;
        boost::system::error_code ignored;
        resolver_.cancel();
        connect_timer_.cancel();
        keep_alive_timer_.cancel();
        if (tls_) tls_->lowest_layer().close(ignored);
        if (socket_) socket_->close(ignored);
        tls_.reset();
        socket_.reset();
        socket_open_ = false;
        reading_ = writing_ = close_after_write_ = paused_ = false;
        out_.clear();
        sending_.clear();
        in_.clear();
        in_.shrink_to_fit();
        filled_ = 0;
        stalled_.clear();
        metrics_.inflight.Decrement(static_cast<double>(inflight_.size()));
        inflight_.clear();
        lag_.Set(0);
    }

    // Every second: how long the oldest unacknowledged message has waited.
    void watch_lag() {
        lag_timer_.expires_after(std::chrono::seconds(1));
        lag_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
            if (ec) return;
            self->lag_.Set(
                self->inflight_.empty()
                    ? 0.0
                    : std::chrono::duration<double>(Clock::now() - self->inflight_.front().second)
                          .count());
            if (!self->stopping_) self->watch_lag();
        });
    }

    UpstreamWorker& worker_;
    std::shared_ptr<const UpstreamSettings> settings_;
    std::string client_id_;
    UpstreamMetrics& metrics_;
    prometheus::Gauge& lag_;
    std::shared_ptr<std::atomic<std::int64_t>> pending_;
    ingest::IngestUnit& ingest_;
    std::shared_ptr<storage::SeriesAdmission> admission_;
    mqtt::client_session session_;
    tcp::resolver resolver_;
    std::optional<tcp::socket> socket_;
    std::optional<asio::ssl::stream<tcp::socket>> tls_;
    asio::steady_timer connect_timer_;
    asio::steady_timer keep_alive_timer_;
    asio::steady_timer reconnect_timer_;
    asio::steady_timer lag_timer_;
    std::mt19937 rng_;
    std::vector<std::uint8_t> in_;
    std::size_t filled_ = 0;
    std::vector<std::uint8_t> out_;
    std::vector<std::uint8_t> sending_;
    std::deque<Stalled> stalled_;
    std::deque<std::pair<std::uint16_t, Clock::time_point>> inflight_;  // arrival order
    std::uint64_t epoch_ = 0;
    unsigned attempts_ = 0;
    bool socket_open_ = false;
    bool connected_ = false;
    bool reading_ = false;
    bool writing_ = false;
    bool close_after_write_ = false;
    bool paused_ = false;
    bool stopping_ = false;
};

UpstreamConsumers::UpstreamConsumers(const std::vector<Config::Upstream>& upstreams,
                                     std::uint32_t max_packet_size, ingest::IngestUnit& ingest,
                                     prometheus::Registry& registry)
    : pending_(std::make_shared<std::atomic<std::int64_t>>(0)) {
    if (upstreams.empty()) return;
    using prometheus::BuildCounter;
    using prometheus::BuildGauge;
    using prometheus::BuildHistogram;
    auto counter = [&registry](const char* name, const char* help) -> auto& {
        return BuildCounter().Name(name).Help(help).Register(registry);
    };
    auto gauge = [&registry](const char* name, const char* help) -> auto& {
        return BuildGauge().Name(name).Help(help).Register(registry);
    };
    auto& connected =
        gauge("citygate_upstream_connected", "Connections to the upstream broker that are up");
    auto& connects = counter("citygate_upstream_connects_total",
                             "Connections the upstream broker accepted (CONNACK success)");
    auto& connect_failures =
        counter("citygate_upstream_connect_failures_total",
                "Connection attempts to the upstream broker that failed before CONNACK");
    auto& messages =
        counter("citygate_upstream_messages_total", "Messages received from the upstream broker");
    auto& redelivered = counter("citygate_upstream_redelivered_total",
                                "Messages the upstream broker sent again (DUP set)");
    auto& acknowledged = counter("citygate_upstream_acks_total",
                                 "Messages acknowledged upstream after their samples reached "
                                 "the WAL");
    auto& refused = counter("citygate_upstream_refused_total",
                            "Messages acknowledged upstream with an error reason and dropped "
                            "(ACL, topic, payload, timestamp)");
    auto& withheld = counter("citygate_upstream_withheld_total",
                             "Messages left unacknowledged for the broker to send again "
                             "(storage failure, series limit)");
    auto& inflight = gauge("citygate_upstream_inflight_messages",
                           "Messages received and not yet acknowledged upstream");
    auto& ack_latency = BuildHistogram()
                            .Name("citygate_upstream_ack_latency_seconds")
                            .Help("Time from a message's arrival to its acknowledgement upstream")
                            .Register(registry);
    auto& lag = gauge("citygate_upstream_lag_seconds",
                      "How long the oldest unacknowledged message of a connection has waited");

    unsigned total = 0;
    for (const auto& u : upstreams)
        total += u.connections;
    const unsigned threads = std::clamp<unsigned>(std::min(total, usable_cpus()), 1, 8);
    for (unsigned i = 0; i < threads; ++i)
        workers_.push_back(std::make_unique<UpstreamWorker>(ingest));

    const std::string host = host_name();
    unsigned next_worker = 0;
    for (std::size_t i = 0; i < upstreams.size(); ++i) {
        const auto& u = upstreams[i];
        const std::string option = "upstream[" + std::to_string(i) + "]";
        auto settings = std::make_shared<UpstreamSettings>();
        settings->config = u;
        settings->broker = *parse_broker_url(u.url);  // validate() checked it
        settings->password = password_of(u, option);
        settings->identity.anonymous = false;
        settings->identity.user = u.username.empty() ? "upstream:" + u.name : u.username;
        for (const auto& topic : u.topics) {
            settings->filters.push_back(
                u.share_group.empty() ? topic : "$share/" + u.share_group + "/" + topic);
        }
        if (settings->broker.tls) settings->tls = client_tls(u, option);
        settings->max_packet_size = max_packet_size;
        const prometheus::Labels labels{{"upstream", u.name}};
        metrics_.push_back(std::make_unique<UpstreamMetrics>(UpstreamMetrics{
            connected.Add(labels), connects.Add(labels), connect_failures.Add(labels),
            messages.Add(labels), redelivered.Add(labels), acknowledged.Add(labels),
            refused.Add(labels), withheld.Add(labels), inflight.Add(labels),
            ack_latency.Add(
                labels, prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.002, 0.005, 0.01,
                                                                0.05, 0.25, 1, 5}),
            lag}));
        for (unsigned n = 0; n < u.connections; ++n) {
            UpstreamWorker& worker = *workers_[next_worker++ % workers_.size()];
            auto connection = std::make_shared<UpstreamConnection>(
                worker, settings, n, upstream_client_id(u, host, n), *metrics_.back(), pending_,
                ingest);
            worker.connections.push_back(connection.get());
            connections_.push_back(std::move(connection));
        }
    }
    ingest.add_room_listener([this] {
        for (auto& worker : workers_) {
            asio::post(worker->io, [w = worker.get()] {
                for (UpstreamConnection* c : w->connections)
                    c->retry_stalled();
            });
        }
    });
}

UpstreamConsumers::~UpstreamConsumers() {
    if (started_) stop(Clock::now());
}

void UpstreamConsumers::start() {
    if (started_ || workers_.empty()) return;
    started_ = true;
    for (auto& connection : connections_)
        connection->start();
    for (auto& worker : workers_) {
        threads_.emplace_back([w = worker.get()] {
            auto guard = asio::make_work_guard(w->io);
            w->io.run();
        });
    }
}

namespace {

// Runs fn on every worker's thread and waits for it.
template <typename Fn>
void on_workers(std::vector<std::unique_ptr<UpstreamWorker>>& workers, Fn fn) {
    std::vector<std::shared_ptr<std::promise<void>>> done;
    for (auto& worker : workers) {
        auto promise = std::make_shared<std::promise<void>>();
        done.push_back(promise);
        asio::post(worker->io, [w = worker.get(), promise, &fn] {
            fn(*w);
            promise->set_value();
        });
    }
    for (auto& d : done)
        d->get_future().wait();
}

}  // namespace

void UpstreamConsumers::stop(Clock::time_point deadline) {
    if (!started_) return;
    started_ = false;
    on_workers(workers_, [](UpstreamWorker& w) {
        for (UpstreamConnection* c : w.connections)
            c->stop_taking();
    });
    while (pending_->load() > 0 && Clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    on_workers(workers_, [](UpstreamWorker& w) {
        for (UpstreamConnection* c : w.connections)
            c->finish();
    });
    auto all_closed = [this] {
        bool closed = true;
        on_workers(workers_, [&closed](UpstreamWorker& w) {
            for (UpstreamConnection* c : w.connections)
                closed = closed && c->closed();
        });
        return closed;
    };
    while (!all_closed() && Clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    for (auto& worker : workers_)
        worker->io.stop();
    for (auto& thread : threads_)
        thread.join();
    threads_.clear();
}

}  // namespace citygate::gateway
