// citygate-loadgen: simulates a city of sensors publishing over MQTT (any broker), reports
// connect rate, throughput and acknowledgement latency, and with --verify proves that the
// gateway stored every acknowledged reading.
#include <atomic>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include <sys/resource.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/program_options.hpp>

#include "city/city_model.hpp"
#include "loadgen/device_template.hpp"
#include "loadgen/payload_format.hpp"
#include "loadgen/publisher.hpp"
#include "loadgen/run_report.hpp"
#include "loadgen/scenario.hpp"
#include "loadgen/source_addresses.hpp"
#include "loadgen/store_verifier.hpp"

namespace po = boost::program_options;
using namespace citygate;
using namespace citygate::loadgen;
using Clock = std::chrono::steady_clock;

namespace {

// Reading number n of every sensor is stamped start_ms + n * step_ms.
class CityMessages : public MessageSource {
  public:
    CityMessages(const CityModel& city, PayloadFormat format, std::int64_t start_ms,
                 std::int64_t step_ms)
        : city_(city), format_(format), start_ms_(start_ms), step_ms_(step_ms) {}

    void message(std::size_t sensor, std::uint64_t sequence, std::string& topic_out,
                 std::string& payload) const override {
        thread_local std::vector<Reading> readings;
        const Sensor& s = city_.sensors()[sensor];
        topic_out = topic(s);
        std::int64_t ts = start_ms_ + static_cast<std::int64_t>(sequence) * step_ms_;
        readings.clear();
        city_.readings(sensor, ts, readings);
        format_payload(format_, s, ts, readings, payload);
    }

  private:
    const CityModel& city_;
    PayloadFormat format_;
    std::int64_t start_ms_, step_ms_;
};

struct Identity {
    std::string client_id = "lg-{device}";
    std::optional<std::string> username, password;
};

// One I/O thread: starts its share of the sensors at its share of the connect rate.
struct IoThread {
    boost::asio::io_context io{1};
    PublisherStats stats;
    std::vector<std::shared_ptr<Publisher>> clients;
    std::vector<std::size_t> sensors;  // this thread's share, in start order
    bool stopping = false;
};

struct Run {
    Scenario scenario;
    PublisherOptions publisher;
    Identity identity;
    unsigned threads = 1;
    std::vector<boost::asio::ip::address> sources;
    const CityModel* city = nullptr;
    const MessageSource* messages = nullptr;
    std::vector<std::vector<std::uint64_t>>* acked = nullptr;  // per sensor, with --verify
};

void run_thread(const Run& run, IoThread& me) {
    boost::asio::steady_timer ramp(me.io);
    double rate = run.scenario.connect_rate == 0
                      ? 0
                      : std::max(1.0, double(run.scenario.connect_rate) / run.threads);
    auto started = Clock::now();
    std::size_t next = 0;
    auto start_one = [&] {
        std::size_t sensor = me.sensors[next++];
        const Sensor& s = run.city->sensors()[sensor];
        ClientIdentity identity{expand_device_template(run.identity.client_id, s), {}, {}};
        if (run.identity.username)
            identity.username = expand_device_template(*run.identity.username, s);
        if (run.identity.password)
            identity.password = expand_device_template(*run.identity.password, s);
        const boost::asio::ip::address* source =
            run.sources.empty() ? nullptr : &run.sources[sensor % run.sources.size()];
        auto client = std::make_shared<Publisher>(
            me.io, run.publisher, source, std::move(identity), sensor, *run.messages, me.stats,
            run.acked ? &(*run.acked)[sensor] : nullptr, nullptr);
        me.clients.push_back(client);
        client->start();
    };
    std::function<void()> tick = [&] {
        if (me.stopping) return;
        double elapsed = std::chrono::duration<double>(Clock::now() - started).count();
        std::size_t due = rate == 0 ? me.sensors.size()
                                    : std::min(me.sensors.size(), std::size_t(rate * elapsed) + 1);
        while (next < due)
            start_one();
        if (next == me.sensors.size()) return;
        ramp.expires_after(std::chrono::milliseconds(5));
        ramp.async_wait([&](auto ec) {
            if (!ec) tick();
        });
    };
    tick();
    me.io.run();
}

double cpu_seconds(const timeval& t) {
    return double(t.tv_sec) + double(t.tv_usec) / 1e6;
}

// An IP address as given, or the first address a host name resolves to (a broker's service name
// in docker-compose or Kubernetes).
boost::asio::ip::address broker_address(const std::string& host, boost::system::error_code& ec) {
    auto address = boost::asio::ip::make_address(host, ec);
    if (!ec) return address;
    boost::asio::io_context io;
    boost::asio::ip::tcp::resolver resolver(io);
    auto results = resolver.resolve(host, "", ec);
    if (ec || results.empty()) {
        if (!ec) ec = boost::asio::error::host_not_found;
        return {};
    }
    return results.begin()->endpoint().address();
}

void raise_fd_limit() {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &limit);
    }
}

}  // namespace

int main(int argc, char** argv) {
    std::string host = "127.0.0.1", protocol = "3.1.1", format_name = "json", scenario_name;
    unsigned port = 1883, http_port = 8080, threads = 1;
    std::uint64_t seed = 1;
    std::string report_path, html_path, cafile, certfile, keyfile, client_id, username, password;
    std::int64_t start_ms = 0;
    std::uint32_t reconnect_min_ms = 250, reconnect_max_ms = 10'000, reconnect_attempts = 10;
    po::options_description options(
        "citygate-loadgen - simulates city sensors publishing over MQTT\n\n"
        "Scenario presets (smoke, peak-hour, million-idle, connect-storm) set the load options;\n"
        "any load option given on the command line overrides its preset.\n\nOptions");
    // Load options have no default here: the scenario supplies it unless the flag is given.
    // clang-format off
    options.add_options()
        ("help,h", "show this help")
        ("scenario", po::value(&scenario_name), "preset: smoke, peak-hour, million-idle, connect-storm")
        ("host", po::value(&host)->default_value(host), "broker IP address or host name")
        ("port", po::value(&port)->default_value(port), "broker MQTT port")
        ("bind", po::value<std::string>(), "source addresses: 127.0.0.2, 127.0.0.1-127.0.0.16, or a comma list")
        ("protocol", po::value(&protocol)->default_value(protocol), "MQTT version: 3.1.1 or 5")
        ("clients", po::value<std::uint64_t>(), "simulated sensors, one connection each [10]")
        ("messages", po::value<std::uint64_t>(), "readings each sensor publishes [100]")
        ("qos", po::value<unsigned>(), "QoS of the readings: 0, 1 or 2 [1]")
        ("inflight", po::value<std::uint32_t>(), "unacknowledged readings allowed per connection [16]")
        ("interval-ms", po::value<std::uint64_t>(), "ms between a sensor's readings; 0: as fast as acks allow [0]")
        ("connect-rate", po::value<std::uint32_t>(), "new connections per second; 0: all at once [1000]")
        ("keep-alive", po::value<std::uint32_t>(), "MQTT keep-alive in s; PINGREQ when idle [60]")
        ("hold", po::value<bool>(), "stay connected after the last reading until the run ends [false]")
        ("duration", po::value<std::uint64_t>(), "s until publishing stops [60]")
        ("drain", po::value<std::uint64_t>(), "s to wait for acks after that [10]")
        ("reconnect", po::value<bool>(), "reconnect dropped connections with back-off [false]")
        ("reconnect-min-ms", po::value(&reconnect_min_ms)->default_value(reconnect_min_ms), "first back-off")
        ("reconnect-max-ms", po::value(&reconnect_max_ms)->default_value(reconnect_max_ms), "largest back-off")
        ("reconnect-attempts", po::value(&reconnect_attempts)->default_value(reconnect_attempts), "failed attempts in a row before giving up; 0: never")
        ("threads", po::value(&threads)->default_value(threads), "I/O threads")
        ("seed", po::value(&seed)->default_value(seed), "city model seed")
        ("start-ms", po::value(&start_ms), "timestamp of reading 0 (default: now - messages x step)")
        ("format", po::value(&format_name)->default_value(format_name), "payload: json, senml or line")
        ("client-id", po::value(&client_id)->default_value("lg-{device}"), "client id template ({device} {district} {type} {index})")
        ("username", po::value(&username), "username template")
        ("password", po::value(&password), "password template")
        ("tls", "connect over TLS")
        ("cafile", po::value(&cafile), "CA certificates (PEM) to verify the broker with")
        ("cert", po::value(&certfile), "client certificate chain (PEM)")
        ("key", po::value(&keyfile), "client private key (PEM)")
        ("insecure", "with --tls and no --cafile: do not verify the broker")
        ("report", po::value(&report_path), "write the JSON report to this file")
        ("html", po::value(&html_path), "write the HTML report to this file")
        ("verify", "after the run, check every acknowledged reading in the gateway's HTTP API")
        ("http-port", po::value(&http_port)->default_value(http_port), "gateway HTTP port for --verify");
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
    Run run;
    if (!scenario_name.empty()) {
        auto preset = scenario_preset(scenario_name);
        if (!preset) {
            std::cerr << "citygate-loadgen: unknown scenario " << scenario_name << "\n";
            return 2;
        }
        run.scenario = *preset;
    }
    Scenario& sc = run.scenario;
    auto take = [&](const char* name, auto& field) {
        if (args.count(name)) field = args[name].as<std::remove_reference_t<decltype(field)>>();
    };
    take("bind", sc.bind);
    take("clients", sc.clients);
    take("messages", sc.messages);
    take("qos", sc.qos);
    take("inflight", sc.inflight);
    take("interval-ms", sc.interval_ms);
    take("connect-rate", sc.connect_rate);
    take("keep-alive", sc.keep_alive_s);
    take("hold", sc.hold);
    take("duration", sc.duration_s);
    take("drain", sc.drain_s);
    take("reconnect", sc.reconnect);

    boost::system::error_code ec;
    auto address = broker_address(host, ec);
    auto format = parse_payload_format(format_name);
    if (ec || sc.qos > 2 || (protocol != "3.1.1" && protocol != "5") || threads == 0 ||
        sc.inflight == 0 || sc.inflight > 65535 || port > 65535 || http_port > 65535 ||
        sc.keep_alive_s > 65535 || !format || sc.clients > 100'000'000) {
        std::cerr << "citygate-loadgen: bad arguments (host must be an IP address or a name that "
                     "resolves, qos 0-2, "
                     "protocol 3.1.1 or 5, format json/senml/line, threads and inflight >= 1)\n";
        return 2;
    }
    if (!sc.bind.empty()) {
        std::string error;
        run.sources = parse_source_addresses(sc.bind, error);
        if (run.sources.empty()) {
            std::cerr << "citygate-loadgen: --bind: " << error << "\n";
            return 2;
        }
    }
    std::optional<boost::asio::ssl::context> tls;
    if (args.count("tls")) {
        try {
            tls.emplace(boost::asio::ssl::context::tls_client);
            if (!cafile.empty()) {
                tls->load_verify_file(cafile);
                tls->set_verify_mode(boost::asio::ssl::verify_peer);
            } else if (args.count("insecure")) {
                tls->set_verify_mode(boost::asio::ssl::verify_none);
            } else {
                tls->set_default_verify_paths();
                tls->set_verify_mode(boost::asio::ssl::verify_peer);
            }
            if (!certfile.empty()) tls->use_certificate_chain_file(certfile);
            if (!keyfile.empty())
                tls->use_private_key_file(keyfile, boost::asio::ssl::context::pem);
        } catch (const boost::system::system_error& e) {
            std::cerr << "citygate-loadgen: TLS setup: " << e.what() << "\n";
            return 2;
        }
    }
    raise_fd_limit();

    PublisherOptions& p = run.publisher;
    p.server = {address, static_cast<std::uint16_t>(port)};
    p.tls = tls ? &*tls : nullptr;
    p.version = protocol == "5" ? mqtt::protocol_version::v5 : mqtt::protocol_version::v3_1_1;
    p.qos = static_cast<mqtt::qos>(sc.qos);
    p.inflight = static_cast<std::uint16_t>(sc.inflight);
    p.messages = sc.messages;
    p.interval = std::chrono::milliseconds(sc.interval_ms);
    p.keep_alive_s = static_cast<std::uint16_t>(sc.keep_alive_s);
    p.hold = sc.hold;
    p.reconnect = {sc.reconnect, std::chrono::milliseconds(reconnect_min_ms),
                   std::chrono::milliseconds(reconnect_max_ms), reconnect_attempts};
    run.identity.client_id = client_id;
    if (args.count("username")) run.identity.username = username;
    if (args.count("password")) run.identity.password = password;
    run.threads = threads;

    std::int64_t step_ms = sc.interval_ms > 0 ? std::int64_t(sc.interval_ms) : 10'000;
    if (!args.count("start-ms")) {
        auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
        start_ms = now - std::int64_t(sc.messages) * step_ms;
    }
    CityModel city(sc.clients, seed);
    CityMessages messages(city, *format, start_ms, step_ms);
    std::vector<std::vector<std::uint64_t>> acked;
    if (args.count("verify")) {
        acked.resize(sc.clients);
        run.acked = &acked;
    }
    run.city = &city;
    run.messages = &messages;

    std::vector<std::unique_ptr<IoThread>> io_threads;
    for (unsigned t = 0; t < threads; ++t)
        io_threads.push_back(std::make_unique<IoThread>());
    for (std::uint64_t c = 0; c < sc.clients; ++c)
        io_threads[c % threads]->sensors.push_back(c);

    auto started = Clock::now();
    for (auto& t : io_threads) {
        t->stats.connack_by_second.start(started);
        t->stats.ack_by_second.start(started);
    }
    std::atomic<unsigned> threads_done{0};
    std::vector<std::thread> workers;
    for (auto& t : io_threads) {
        workers.emplace_back([&, me = t.get()] {
            run_thread(run, *me);
            threads_done.fetch_add(1);
        });
    }
    auto send_all = [&](bool abort) {
        for (auto& t : io_threads) {
            boost::asio::post(t->io, [me = t.get(), abort] {
                me->stopping = true;
                for (auto& client : me->clients)
                    abort ? client->abort() : client->stop();
            });
        }
    };
    RunReport report;
    bool tty = ::isatty(STDERR_FILENO);
    auto stop_at = started + std::chrono::seconds(sc.duration_s);
    auto abort_at = stop_at + std::chrono::seconds(sc.drain_s);
    bool stop_sent = false, abort_sent = false;
    auto next_sample = started + std::chrono::seconds(1);
    StatsTotals previous;
    report.timeline.push_back({});
    while (threads_done.load() < threads) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        auto now = Clock::now();
        if (!stop_sent && now >= stop_at) send_all(false), stop_sent = true;
        if (!abort_sent && now >= abort_at) send_all(true), abort_sent = true;
        if (now < next_sample) continue;
        next_sample += std::chrono::seconds(1);
        StatsTotals live;
        for (auto& t : io_threads)
            live.add(t->stats, false);
        double t_s = std::chrono::duration<double>(now - started).count();
        report.timeline.push_back({t_s, live.open, live.connected, live.sent, live.acknowledged,
                                   live.drops_total(), live.reconnected});
        std::fprintf(
            stderr,
            "%s[%4.0fs] open %llu, connects/s %llu, sent/s %llu, acked/s %llu, acked %llu, "
            "drops %llu, reconnects %llu   %s",
            tty ? "\r" : "", t_s, (unsigned long long)live.open,
            (unsigned long long)(live.connected + live.reconnected - previous.connected -
                                 previous.reconnected),
            (unsigned long long)(live.sent - previous.sent),
            (unsigned long long)(live.acknowledged - previous.acknowledged),
            (unsigned long long)live.acknowledged, (unsigned long long)live.drops_total(),
            (unsigned long long)live.reconnected, tty ? "" : "\n");
        previous = live;
    }
    for (auto& worker : workers)
        worker.join();
    if (tty) std::fprintf(stderr, "\n");
    auto now = Clock::now();
    report.seconds = std::chrono::duration<double>(now - started).count();

    StatsTotals& total = report.totals;
    for (auto& t : io_threads)
        total.add(t->stats, true);
    report.timeline.push_back({report.seconds, total.open, total.connected, total.sent,
                               total.acknowledged, total.drops_total(), total.reconnected});
    add_latency_over_time(report.timeline, total);
    // Connect rate over the time from start to the last first CONNACK.
    if (total.last_connect_ns > 0) {
        auto last = Clock::time_point(std::chrono::nanoseconds(total.last_connect_ns));
        report.connect_seconds = std::chrono::duration<double>(last - started).count();
    }
    rusage usage{};
    ::getrusage(RUSAGE_SELF, &usage);
    report.cpu_user_s = cpu_seconds(usage.ru_utime);
    report.cpu_system_s = cpu_seconds(usage.ru_stime);
    report.scenario = sc;
    report.broker = host + ":" + std::to_string(port);
    report.protocol = protocol;
    report.format = std::string(payload_format_name(*format));
    report.tls = tls.has_value();
    report.threads = threads;
    report.source_addresses = run.sources.size();

    bool complete = total.connected == sc.clients && total.acknowledged == sc.clients * sc.messages;
    if (args.count("verify")) {
        StoreVerifier verifier(city, start_ms, step_ms);
        for (std::size_t sensor = 0; sensor < acked.size(); ++sensor)
            verifier.expect(sensor, acked[sensor]);
        report.verify =
            fetch_and_verify({address, static_cast<std::uint16_t>(http_port)}, verifier);
        const VerifyResult& v = *report.verify;
        if (!v.error.empty()) std::fprintf(stderr, "verify: %s\n", v.error.c_str());
        for (const auto& problem : v.problems)
            std::fprintf(stderr, "verify: %s\n", problem.c_str());
        std::fprintf(stderr,
                     "verify: %s: %llu of %llu acknowledged readings stored in %llu series, %llu "
                     "values checked, %llu wrong\n",
                     v.ok() ? "ok" : "FAILED",
                     (unsigned long long)(v.readings_expected - v.readings_missing),
                     (unsigned long long)v.readings_expected, (unsigned long long)v.series_expected,
                     (unsigned long long)v.values_checked, (unsigned long long)v.value_mismatches);
        complete = complete && v.ok();
    }
    report.complete = complete;
    std::string json = to_json(report);
    if (!report_path.empty()) std::ofstream(report_path) << json << "\n";
    if (!html_path.empty()) std::ofstream(html_path) << to_html(report);
    std::printf("%s\n", json.c_str());
    return complete ? 0 : 1;
}
