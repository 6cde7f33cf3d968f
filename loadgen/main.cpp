// citygate-loadgen: simulates a city of sensors publishing over MQTT and reports throughput and
// acknowledgement latency. Works against any MQTT broker.
#include <atomic>
#include <cstdio>
#include <iostream>
#include <thread>

#include <unistd.h>

#include <boost/asio/ip/address.hpp>
#include <boost/program_options.hpp>

#include "loadgen/city_model.hpp"
#include "loadgen/payload_format.hpp"
#include "loadgen/publisher.hpp"

namespace po = boost::program_options;
using namespace citygate;
using namespace citygate::loadgen;

namespace {

struct RunOptions {
    PublisherOptions publisher;
    std::uint64_t clients = 10;
    unsigned threads = 1;
    std::uint32_t connect_rate = 1000;  // new connections per second, all threads together
    std::uint64_t seed = 1;
    std::int64_t start_ms = 0;  // timestamp of the first reading
    std::chrono::milliseconds reading_step{10'000};
};

double millis(std::chrono::nanoseconds d) {
    return std::chrono::duration<double, std::milli>(d).count();
}

// One I/O thread: starts its share of clients at the connect rate and runs them to the end.
void run_thread(const RunOptions& run, const CityModel& city, unsigned index, PublisherStats& stats,
                std::atomic<std::uint64_t>& finished, std::atomic<std::uint64_t>& sent,
                std::atomic<std::uint64_t>& acked) {
    boost::asio::io_context io(1);
    std::vector<std::uint64_t> mine;
    for (std::uint64_t c = index; c < run.clients; c += run.threads)
        mine.push_back(c);
    auto per_thread_rate = std::max<double>(1.0, double(run.connect_rate) / run.threads);
    auto spacing = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(1.0 / per_thread_rate));

    boost::asio::steady_timer ramp(io);
    std::size_t next = 0;
    std::uint64_t last_sent = 0, last_acked = 0;
    std::function<void()> start_next = [&] {
        if (next >= mine.size()) return;
        std::size_t sensor = mine[next];
        std::string client_id = "lg-" + city.sensors()[sensor].device;
        auto source = [&city, &run, sensor, sensor_topic = topic(city.sensors()[sensor]),
                       readings = std::vector<Reading>()](std::uint64_t sequence,
                                                          std::string& topic_out,
                                                          std::string& payload) mutable {
            topic_out = sensor_topic;
            std::int64_t ts = run.start_ms + std::int64_t(sequence) * run.reading_step.count();
            readings.clear();
            city.readings(sensor, ts, readings);
            format_json(ts, readings, payload);
        };
        std::make_shared<Publisher>(io, run.publisher, std::move(client_id), source, stats, [&] {
            finished.fetch_add(1);
        })->start();
        ++next;
        ramp.expires_after(spacing);
        ramp.async_wait([&](auto ec) {
            if (!ec) start_next();
        });
    };
    start_next();
    // Publish this thread's counters for the progress line every 100 ms.
    boost::asio::steady_timer progress(io);
    std::function<void()> report = [&] {
        sent.fetch_add(stats.sent - last_sent);
        acked.fetch_add(stats.acknowledged - last_acked);
        last_sent = stats.sent;
        last_acked = stats.acknowledged;
        progress.expires_after(std::chrono::milliseconds(100));
        progress.async_wait([&](auto ec) {
            if (!ec && finished.load() < run.clients) report();
        });
    };
    report();
    io.run();
    sent.fetch_add(stats.sent - last_sent);
    acked.fetch_add(stats.acknowledged - last_acked);
}

}  // namespace

int main(int argc, char** argv) {
    RunOptions run;
    std::string host = "127.0.0.1", protocol = "3.1.1", source_address;
    unsigned port = 1883, qos = 1, inflight = 16;
    std::uint64_t interval_ms = 0;
    po::options_description options(
        "citygate-loadgen - simulates city sensors publishing over MQTT\n\nOptions");
    // clang-format off
    options.add_options()
        ("help,h", "show this help")
        ("host", po::value(&host)->default_value(host), "broker address (loopback only in tests)")
        ("port", po::value(&port)->default_value(port), "broker MQTT port")
        ("bind", po::value(&source_address), "local source address, e.g. 127.0.0.2")
        ("protocol", po::value(&protocol)->default_value(protocol), "MQTT version: 3.1.1 or 5")
        ("clients", po::value(&run.clients)->default_value(run.clients), "simulated sensors, one connection each")
        ("messages", po::value(&run.publisher.messages)->default_value(run.publisher.messages), "readings each sensor publishes")
        ("qos", po::value(&qos)->default_value(qos), "QoS of the readings: 0, 1 or 2")
        ("inflight", po::value(&inflight)->default_value(inflight), "unacknowledged readings allowed per connection")
        ("interval-ms", po::value(&interval_ms)->default_value(0), "ms between a sensor's readings; 0: as fast as acks allow")
        ("connect-rate", po::value(&run.connect_rate)->default_value(run.connect_rate), "new connections per second")
        ("threads", po::value(&run.threads)->default_value(run.threads), "I/O threads")
        ("seed", po::value(&run.seed)->default_value(run.seed), "city model seed")
        ("start-ms", po::value(&run.start_ms), "timestamp of the first reading (default: now - messages x 10 s)");
    // clang-format on
    po::variables_map args;
    try {
        po::store(po::parse_command_line(argc, argv, options), args);
        po::notify(args);
    } catch (const po::error& e) {
        std::cerr << "citygate-loadgen: " << e.what() << "\n";
        return 2;
    }
    if (args.count("help")) {
        std::cout << options << "\n";
        return 0;
    }
    boost::system::error_code ec;
    auto address = boost::asio::ip::make_address(host, ec);
    if (ec || qos > 2 || (protocol != "3.1.1" && protocol != "5") || run.threads == 0 ||
        inflight == 0 || inflight > 65535 || port > 65535) {
        std::cerr << "citygate-loadgen: bad arguments (host must be an IP address, qos 0-2, "
                     "protocol 3.1.1 or 5, threads and inflight >= 1)\n";
        return 2;
    }
    run.publisher.server = {address, static_cast<std::uint16_t>(port)};
    if (!source_address.empty()) {
        run.publisher.source = boost::asio::ip::make_address(source_address, ec);
        if (ec) {
            std::cerr << "citygate-loadgen: --bind is not an IP address\n";
            return 2;
        }
    }
    run.publisher.version =
        protocol == "5" ? mqtt::protocol_version::v5 : mqtt::protocol_version::v3_1_1;
    run.publisher.qos = static_cast<mqtt::qos>(qos);
    run.publisher.inflight = static_cast<std::uint16_t>(inflight);
    run.publisher.interval = std::chrono::milliseconds(interval_ms);
    if (!args.count("start-ms")) {
        auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
        run.start_ms = now - std::int64_t(run.publisher.messages) * run.reading_step.count();
    }

    CityModel city(run.clients, run.seed);
    std::vector<PublisherStats> stats(run.threads);
    std::atomic<std::uint64_t> finished{0}, sent{0}, acked{0};
    auto started = std::chrono::steady_clock::now();
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < run.threads; ++t) {
        threads.emplace_back([&, t] { run_thread(run, city, t, stats[t], finished, sent, acked); });
    }
    bool tty = ::isatty(STDERR_FILENO);
    std::uint64_t previous_acked = 0;
    while (finished.load() < run.clients) {
        std::this_thread::sleep_for(std::chrono::seconds(1));
        std::uint64_t now_acked = acked.load();
        std::fprintf(stderr, "%s%llu/%llu clients done, %llu sent, %llu acked, %llu acked/s%s",
                     tty ? "\r" : "", (unsigned long long)finished.load(),
                     (unsigned long long)run.clients, (unsigned long long)sent.load(),
                     (unsigned long long)now_acked,
                     (unsigned long long)(now_acked - previous_acked), tty ? "" : "\n");
        previous_acked = now_acked;
    }
    for (auto& thread : threads)
        thread.join();
    if (tty) std::fprintf(stderr, "\n");
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

    PublisherStats total;
    for (const auto& s : stats)
        total.merge(s);
    const auto& acks = total.ack_latency;
    std::printf(
        "{\"clients\":%llu,\"connected\":%llu,\"connect_failed\":%llu,\"sent\":%llu,"
        "\"acknowledged\":%llu,\"negative_acks\":%llu,\"protocol_errors\":%llu,"
        "\"disconnected_early\":%llu,\"seconds\":%.3f,\"acked_per_s\":%.1f,"
        "\"connack_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f},"
        "\"ack_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p99_9\":%.3f,\"max\":%.3f}}\n",
        (unsigned long long)run.clients, (unsigned long long)total.connected,
        (unsigned long long)total.connect_failed, (unsigned long long)total.sent,
        (unsigned long long)total.acknowledged, (unsigned long long)total.negative_acks,
        (unsigned long long)total.protocol_errors, (unsigned long long)total.disconnected_early,
        seconds, double(total.acknowledged) / seconds, millis(total.connack_latency.quantile(0.5)),
        millis(total.connack_latency.quantile(0.99)), millis(total.connack_latency.max()),
        millis(acks.quantile(0.5)), millis(acks.quantile(0.9)), millis(acks.quantile(0.99)),
        millis(acks.quantile(0.999)), millis(acks.max()));
    bool complete = total.connected == run.clients &&
                    total.acknowledged == run.clients * run.publisher.messages;
    return complete ? 0 : 1;
}
