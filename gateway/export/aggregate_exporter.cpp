// The MQTT aggregate export: a window timer on its own thread over Paho's async client.
#include "gateway/export/aggregate_exporter.hpp"

#include <unistd.h>
#include <algorithm>
#include <chrono>

#include <mqtt/async_client.h>

#include "gateway/export/aggregate_message.hpp"
#include "gateway/ops/log.hpp"

namespace citygate::gateway {
namespace {

std::int64_t wall_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string host_name() {
    char name[256] = {};
    if (::gethostname(name, sizeof name - 1) != 0) return "unknown";
    return name;
}

// Readings of a window may still be on an I/O thread when it closes: publish this much later
// (a fifth of the window, at most 2 s, which keeps it well inside the next window).
std::chrono::milliseconds grace(std::chrono::milliseconds interval) {
    return std::min<std::chrono::milliseconds>(interval / 5, std::chrono::seconds(2));
}

prometheus::Counter& counter(prometheus::Registry& registry, const char* name, const char* help) {
    return prometheus::BuildCounter().Name(name).Help(help).Register(registry).Add({});
}

prometheus::Gauge& gauge(prometheus::Registry& registry, const char* name, const char* help) {
    return prometheus::BuildGauge().Name(name).Help(help).Register(registry).Add({});
}

}  // namespace

// Paho calls it on its own thread when the broker acknowledges a message (QoS 1, 2), or when
// Paho has written it (QoS 0), or when delivery fails.
class AggregateExporter::DeliveryListener : public ::mqtt::iaction_listener {
  public:
    DeliveryListener(prometheus::Counter& published, prometheus::Counter& failed,
                     prometheus::Gauge& buffered)
        : published_(published), failed_(failed), buffered_(buffered) {}
    void on_success(const ::mqtt::token&) override {
        published_.Increment();
        buffered_.Decrement();
    }
    void on_failure(const ::mqtt::token& token) override {
        failed_.Increment();
        buffered_.Decrement();
        // What a stop discards is counted and logged once, by stop().
        if (closing.load(std::memory_order_relaxed)) return;
        CG_LOG_LIMITED(failures_, warn)
            << "export.mqtt: delivery failed ("
            << ::mqtt::exception::error_str(token.get_return_code()) << ")";
    }

    std::atomic<bool> closing{false};

  private:
    prometheus::Counter& published_;
    prometheus::Counter& failed_;
    prometheus::Gauge& buffered_;
    log::RateLimit failures_{std::chrono::seconds(10)};
};

// Paho calls it on its own thread when a connect attempt fails (the first one, and those it
// retries on its own); successes are logged by the connected handler.
class AggregateExporter::ConnectListener : public ::mqtt::iaction_listener {
  public:
    explicit ConnectListener(std::string url) : url_(std::move(url)) {}
    void on_success(const ::mqtt::token&) override {}
    void on_failure(const ::mqtt::token& token) override {
        CG_LOG_LIMITED(failures_, warn).with("url", url_)
            << "export.mqtt cannot connect to " << url_ << " ("
            << ::mqtt::exception::error_str(token.get_return_code())
            << "); retrying with back-off, buffering meanwhile";
    }

  private:
    std::string url_;
    log::RateLimit failures_{std::chrono::seconds(30)};
};

AggregateExporter::AggregateExporter(const Config::ExportMqtt& options,
                                     const ingest::CityAggregates& city,
                                     prometheus::Registry& registry)
    : options_(options),
      city_(city),
      published_(counter(registry, "citygate_export_mqtt_published_total",
                         "Aggregate messages the upstream broker acknowledged (export.mqtt)")),
      dropped_(counter(registry, "citygate_export_mqtt_dropped_total",
                       "Aggregate messages dropped: the offline buffer held "
                       "export.mqtt.max_buffered messages")),
      failed_(counter(registry, "citygate_export_mqtt_failed_total",
                      "Aggregate messages Paho refused or could not deliver, buffer full aside")),
      buffered_(gauge(registry, "citygate_export_mqtt_buffered",
                      "Aggregate messages handed to Paho and not yet acknowledged")),
      connected_(gauge(registry, "citygate_export_mqtt_connected",
                       "1 while the aggregate export is connected to its broker")) {
    ::mqtt::create_options create(MQTTVERSION_3_1_1, static_cast<int>(std::min<std::size_t>(
                                                         options_.max_buffered, 10'000'000)));
    // Buffer from the start, before the first connection too, and refuse (not evict) beyond
    // the bound: a refusal is what gets counted.
    create.set_send_while_disconnected(true, true);
    create.set_delete_oldest_messages(false);
    std::string client_id = expand_client_id(options_.client_id, host_name());
    try {
        // No persistence object: Paho keeps its buffer in memory only.
        client_ = std::make_unique<::mqtt::async_client>(paho_server_uri(options_.url), client_id,
                                                         create, nullptr);
    } catch (const ::mqtt::exception& e) {
        throw ConfigError("export.mqtt.url: the MQTT client refused \"" + options_.url +
                          "\" with client id \"" + client_id + "\": " + e.what());
    }
    delivery_ = std::make_unique<DeliveryListener>(published_, failed_, buffered_);
    connecting_ = std::make_unique<ConnectListener>(options_.url);
    client_->set_connected_handler([this](const std::string&) {
        connected_.Set(1);
        CG_LOG(info).with("url", options_.url) << "export.mqtt connected to " << options_.url;
    });
    client_->set_connection_lost_handler([this](const std::string& cause) {
        connected_.Set(0);
        CG_LOG(warn).with("url", options_.url)
            << "export.mqtt lost its connection to " << options_.url
            << (cause.empty() ? "" : ": " + cause) << "; reconnecting, buffering up to "
            << options_.max_buffered << " messages";
    });
}

AggregateExporter::~AggregateExporter() {
    stop();
}

void AggregateExporter::start() {
    {
        std::lock_guard lock(mutex_);
        if (started_) return;
        started_ = true;
    }
    ::mqtt::connect_options connect;
    connect.set_mqtt_version(MQTTVERSION_3_1_1);
    connect.set_clean_session(true);
    connect.set_keep_alive_interval(std::chrono::seconds(30));
    connect.set_connect_timeout(std::chrono::seconds(10));
    // Back-off from 1 s, doubling, up to a window (at most 30 s): retrying faster than the
    // windows close gains nothing, and the buffer holds what comes meanwhile.
    auto longest = std::clamp<std::chrono::seconds>(
        std::chrono::duration_cast<std::chrono::seconds>(options_.interval),
        std::chrono::seconds(1), std::chrono::seconds(30));
    connect.set_automatic_reconnect(std::chrono::seconds(1), longest);
    if (!options_.username.empty()) connect.set_user_name(options_.username);
    if (!options_.password.empty()) connect.set_password(options_.password);
    if (options_.url.starts_with("mqtts://")) {
        ::mqtt::ssl_options ssl;
        if (!options_.tls_ca_file.empty()) ssl.set_trust_store(options_.tls_ca_file.string());
        ssl.set_enable_server_cert_auth(true);
        ssl.set_verify(true);  // the broker's name must match its certificate
        connect.set_ssl(std::move(ssl));
    }
    CG_LOG(info).with("url", options_.url)
        << "export.mqtt publishing city aggregates every "
        << std::chrono::duration_cast<std::chrono::seconds>(options_.interval).count() << " s to "
        << options_.url << " under " << options_.topic_prefix;
    try {
        // With automatic reconnect Paho retries a failed first connect as it does a lost one.
        client_->connect(connect, nullptr, *connecting_);
    } catch (const ::mqtt::exception& e) {
        CG_LOG(warn) << "export.mqtt cannot connect to " << options_.url << ": " << e.what();
    }
    thread_ = std::thread([this] { run(); });
}

void AggregateExporter::stop() {
    {
        std::lock_guard lock(mutex_);
        if (stopping_) return;
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
    if (!client_) return;
    delivery_->closing = true;
    // Disconnected, what Paho buffers is discarded (and counted as failed) by the disconnect.
    std::size_t lost = client_->is_connected() ? 0 : client_->get_pending_delivery_tokens().size();
    try {
        if (client_->is_connected()) {
            client_->disconnect(std::chrono::seconds(2))->wait_for(std::chrono::seconds(3));
        } else {
            client_->disconnect()->wait_for(std::chrono::seconds(1));
        }
    } catch (const ::mqtt::exception& e) {
        CG_LOG(debug) << "export.mqtt disconnect: " << e.what();
    }
    connected_.Set(0);
    if (lost > 0) {
        CG_LOG(warn) << "export.mqtt stopped while disconnected: " << lost
                     << " buffered aggregate messages not delivered (counted as failed)";
    }
}

void AggregateExporter::run() {
    const std::int64_t interval = options_.interval.count();
    const std::int64_t delay = grace(options_.interval).count();
    std::unique_lock lock(mutex_);
    while (!stopping_) {
        std::int64_t now = wall_ms();
        std::int64_t next = (now - delay) / interval * interval + interval + delay;
        // Wall-clock deadline: windows are wall-clock windows. Wakes early only to stop.
        if (wake_.wait_for(lock, std::chrono::milliseconds(next - now),
                           [this] { return stopping_; })) {
            break;
        }
        if (wall_ms() < next) continue;  // the clock stepped back: wait again
        lock.unlock();
        publish_closed_window(wall_ms());
        lock.lock();
    }
}

std::size_t AggregateExporter::publish_closed_window(std::int64_t now_ms) {
    update_buffered();  // a window after the last publish: what is left is really pending
    ingest::CitySnapshot snapshot = city_.snapshot(now_ms);
    std::size_t handed = 0, dropped = 0, failed = 0;
    for (const ingest::CityAverage& pair : snapshot.pairs) {
        if (pair.samples == 0) continue;
        AggregateWindow window{pair.district,
                               pair.measurement,
                               snapshot.minute_start_ms,
                               snapshot.minute_start_ms + snapshot.window_ms,
                               pair.samples,
                               pair.average,
                               pair.minimum,
                               pair.maximum};
        std::string payload = aggregate_json(window);
        auto message = ::mqtt::make_message(
            aggregate_topic(options_.topic_prefix, pair.district, pair.measurement), payload.data(),
            payload.size(), options_.qos, options_.retain);
        try {
            // Before publish(): the listener may run (and decrement) before it returns.
            buffered_.Increment();
            client_->publish(message, nullptr, *delivery_);
            ++handed;
        } catch (const ::mqtt::exception& e) {
            buffered_.Decrement();
            if (e.get_return_code() == MQTTASYNC_MAX_BUFFERED_MESSAGES) {
                dropped_.Increment();
                ++dropped;
            } else {
                failed_.Increment();
                ++failed;
            }
        }
    }
    if (dropped || failed) {
        CG_LOG(warn) << "export.mqtt: window " << rfc3339_utc(snapshot.minute_start_ms) << ": "
                     << dropped << " messages dropped (" << options_.max_buffered
                     << " already buffered while disconnected), " << failed << " refused";
    }
    return handed;
}

void AggregateExporter::update_buffered() {
    // The listener keeps the gauge up to date; this corrects it, once a window, for a message
    // whose token Paho dropped without calling back.
    buffered_.Set(static_cast<double>(client_->get_pending_delivery_tokens().size()));
}

}  // namespace citygate::gateway
