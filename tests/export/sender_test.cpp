// The sender against a scripted receiver on loopback and a real storage engine: every stored
// sample arrives once, in batches of the configured size, through failures and restarts.
#include <atomic>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include <prometheus/registry.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <catch2/catch.hpp>

#include "export/remote_write_sender.hpp"
#include "protocols/remote/compression.hpp"
#include "protocols/remote/remote_write.hpp"
#include "storage/engine.hpp"
#include "tests/support/temp_dir.hpp"

using namespace citygate;
using namespace std::chrono_literals;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;

namespace {

// A remote-write receiver on loopback: answers each request with what `answer` says for its
// number (0, 1, ...), and keeps the samples of acknowledged ones.
class Receiver {
  public:
    struct Answer {
        unsigned status = 204;
        std::string retry_after;
    };
    explicit Receiver(std::function<Answer(int)> answer)
        : answer_(std::move(answer)),
          acceptor_(io_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {
        thread_ = std::thread([this] { serve(); });
    }
    ~Receiver() {
        stopping_ = true;
        boost::system::error_code ec;
        // Wake the accept with a connection of our own.
        tcp::socket poke(io_);
        poke.connect(acceptor_.local_endpoint(), ec);
        thread_.join();
    }
    std::string url() const {
        return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()) + "/write";
    }
    // series labels text -> {timestamp -> count of times received}
    std::map<std::string, std::map<std::int64_t, int>> samples() const {
        std::lock_guard lock(mutex_);
        return samples_;
    }
    std::map<std::string, std::map<std::int64_t, double>> values() const {
        std::lock_guard lock(mutex_);
        return values_;
    }
    int requests() const { return requests_; }
    std::size_t largest_batch() const { return largest_; }
    std::map<std::string, std::string> last_headers() const {
        std::lock_guard lock(mutex_);
        return headers_;
    }
    std::vector<std::chrono::steady_clock::time_point> times() const {
        std::lock_guard lock(mutex_);
        return times_;
    }

  private:
    void serve() {
        while (!stopping_) {
            tcp::socket socket(io_);
            boost::system::error_code ec;
            acceptor_.accept(socket, ec);
            if (ec || stopping_) return;
            boost::beast::flat_buffer buffer;
            for (;;) {
                http::request<http::string_body> request;
                http::read(socket, buffer, request, ec);
                if (ec) break;
                int n = requests_++;
                Answer answer = answer_(n);
                {
                    std::lock_guard lock(mutex_);
                    times_.push_back(std::chrono::steady_clock::now());
                    headers_.clear();
                    for (const auto& field : request)
                        headers_[std::string(field.name_string())] = std::string(field.value());
                    if (answer.status / 100 == 2) record(request.body());
                }
                http::response<http::string_body> response{static_cast<http::status>(answer.status),
                                                           11};
                if (!answer.retry_after.empty())
                    response.set(http::field::retry_after, answer.retry_after);
                response.body() = answer.status / 100 == 2 ? "" : "scripted failure";
                response.prepare_payload();
                http::write(socket, response, ec);
                if (ec) break;
            }
        }
    }
    void record(const std::string& body) {
        std::string protobuf;
        REQUIRE(remote::snappy_uncompress(body, 64 << 20, protobuf) == remote::DecodeStatus::ok);
        remote::WriteRequestDecoder decoder;
        REQUIRE(!decoder.decode(protobuf));
        largest_ = std::max(largest_, decoder.samples());
        for (const auto& series : decoder.series()) {
            std::string name;
            for (const auto& label : series.labels)
                name += std::string(label.name) + "=" + std::string(label.value) + ",";
            for (const auto& sample : series.samples) {
                ++samples_[name][sample.timestamp_ms];
                values_[name][sample.timestamp_ms] = sample.value;
            }
        }
    }

    std::function<Answer(int)> answer_;
    boost::asio::io_context io_;
    tcp::acceptor acceptor_;
    std::thread thread_;
    std::atomic<bool> stopping_{false};
    std::atomic<int> requests_{0};
    mutable std::mutex mutex_;
    std::map<std::string, std::map<std::int64_t, int>> samples_;
    std::map<std::string, std::map<std::int64_t, double>> values_;
    std::map<std::string, std::string> headers_;
    std::vector<std::chrono::steady_clock::time_point> times_;
    std::size_t largest_ = 0;
};

std::unique_ptr<storage::Engine> open_engine(const test::TempDir& dir) {
    storage::EngineOptions o;
    o.directory = dir.path() / "data";
    o.shards = 2;
    o.retention = 0ms;
    auto opened = storage::Engine::open(std::move(o));
    REQUIRE(opened.is_ok());
    return std::move(opened.value());
}

void write(storage::Engine& engine, std::vector<storage::Point> points) {
    std::promise<bool> done;
    auto future = done.get_future();
    while (!engine.try_write(points, [&](const storage::WriteResult& r) {
        done.set_value(r.durable() && r.rejected() == 0);
    })) {
        std::this_thread::yield();
    }
    REQUIRE(future.get());
}

// `devices` series x `per_series` samples, 1 s apart, ending 2 minutes before `now`.
std::size_t write_city(storage::Engine& engine, std::int64_t now, int devices, int per_series) {
    std::vector<storage::Point> points;
    for (int d = 0; d < devices; ++d) {
        for (int i = 0; i < per_series; ++i) {
            points.push_back(
                {storage::format_series_key(
                     "pm25", {{"device", "d-" + std::to_string(d)}, {"district", "x"}}),
                 now - 120'000 - (per_series - i) * 1000, double(i)});
        }
    }
    std::size_t n = points.size();
    write(engine, std::move(points));
    return n;
}

exports::RemoteWriteOptions options_for(const Receiver& receiver, const test::TempDir& dir,
                                        std::int64_t now) {
    exports::RemoteWriteOptions o;
    o.url = receiver.url();
    o.batch_samples = 100;
    o.batch_age = 100ms;
    o.min_backoff = 20ms;
    o.max_backoff = 100ms;
    o.timeout = 2s;
    o.settle_delay = 60s;
    o.max_backlog = 1h;
    o.cursor_file = dir.path() / "data" / "export" / "remote_write.cursor";
    o.clock = [now] { return now; };
    return o;
}

std::size_t total(const std::map<std::string, std::map<std::int64_t, int>>& samples,
                  int* duplicates = nullptr) {
    std::size_t n = 0;
    for (const auto& [name, stamps] : samples) {
        for (const auto& [ts, count] : stamps) {
            n += 1;
            if (duplicates && count > 1) *duplicates += count - 1;
        }
    }
    return n;
}

template <typename Condition>
bool eventually(Condition condition, std::chrono::milliseconds limit = 10s) {
    auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
        if (condition()) return true;
        std::this_thread::sleep_for(10ms);
    }
    return condition();
}

constexpr std::int64_t kNow = 1'800'000'000'000;

}  // namespace

TEST_CASE("every stored sample arrives once, in batches of at most batch_samples") {
    test::TempDir dir;
    auto engine = open_engine(dir);
    std::size_t written = write_city(*engine, kNow, 7, 90);  // 630 samples
    Receiver receiver([](int) { return Receiver::Answer{}; });
    prometheus::Registry registry;
    exports::RemoteWriteSender sender(options_for(receiver, dir, kNow), *engine, &registry);
    sender.start();
    REQUIRE(eventually([&] { return sender.figures().samples_sent == written; }));
    // Caught up to now - settle_delay once the empty rest is passed.
    REQUIRE(eventually([&] { return sender.figures().raw_cursor_ms == kNow - 60'000; }));
    sender.stop();
    int duplicates = 0;
    CHECK(total(receiver.samples(), &duplicates) == written);
    CHECK(duplicates == 0);
    CHECK(receiver.samples().size() == 7);
    CHECK(receiver.largest_batch() <= 100);
    CHECK(receiver.requests() >= 7);
    auto headers = receiver.last_headers();
    CHECK(headers["Content-Encoding"] == "snappy");
    CHECK(headers["Content-Type"] == "application/x-protobuf");
    CHECK(headers["X-Prometheus-Remote-Write-Version"] == "0.1.0");
}

TEST_CASE("5xx and 429 are retried with back-off, and Retry-After is honoured") {
    test::TempDir dir;
    auto engine = open_engine(dir);
    std::size_t written = write_city(*engine, kNow, 2, 10);
    Receiver receiver([](int n) {
        if (n == 0) return Receiver::Answer{503, ""};
        if (n == 1) return Receiver::Answer{429, "1"};
        return Receiver::Answer{};
    });
    exports::RemoteWriteSender sender(options_for(receiver, dir, kNow), *engine, nullptr);
    sender.start();
    REQUIRE(eventually([&] { return sender.figures().samples_sent == written; }));
    sender.stop();
    CHECK(sender.figures().retries == 2);
    CHECK(total(receiver.samples()) == written);
    auto times = receiver.times();
    REQUIRE(times.size() >= 3);
    CHECK(times[2] - times[1] >= 950ms);  // Retry-After: 1, though max_backoff is 100 ms
}

TEST_CASE("a 4xx batch is dropped and counted, the rest goes on") {
    test::TempDir dir;
    auto engine = open_engine(dir);
    std::size_t written = write_city(*engine, kNow, 1, 250);  // three batches of <= 100
    Receiver receiver([](int n) {
        return n == 0 ? Receiver::Answer{400, ""} : Receiver::Answer{};
    });
    std::vector<std::string> lines;
    std::mutex lines_mutex;
    auto options = options_for(receiver, dir, kNow);
    options.log = [&](int level, const std::string& line) {
        std::lock_guard lock(lines_mutex);
        if (level == 2) lines.push_back(line);
    };
    exports::RemoteWriteSender sender(options, *engine, nullptr);
    sender.start();
    REQUIRE(eventually([&] { return sender.figures().raw_cursor_ms == kNow - 60'000; }));
    sender.stop();
    CHECK(sender.figures().batches_failed == 1);
    CHECK(sender.figures().retries == 0);
    std::size_t received = total(receiver.samples());
    CHECK(received < written);
    CHECK(sender.figures().samples_sent == received);
    std::lock_guard lock(lines_mutex);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].find("HTTP 400") != std::string::npos);
}

TEST_CASE("after a restart the sender goes on from its cursor: no duplicates, no gaps") {
    test::TempDir dir;
    auto engine = open_engine(dir);
    std::size_t first = write_city(*engine, kNow, 3, 50);
    Receiver receiver([](int) { return Receiver::Answer{}; });
    {
        exports::RemoteWriteSender sender(options_for(receiver, dir, kNow), *engine, nullptr);
        sender.start();
        REQUIRE(eventually([&] { return sender.figures().samples_sent == first; }));
    }
    // Newer samples, then a sender with a later clock: only they are sent.
    std::int64_t later = kNow + 100'000;
    std::size_t second = write_city(*engine, later, 3, 20);
    exports::RemoteWriteSender sender(options_for(receiver, dir, later), *engine, nullptr);
    sender.start();
    REQUIRE(eventually([&] { return sender.figures().samples_sent == second; }));
    sender.stop();
    int duplicates = 0;
    CHECK(total(receiver.samples(), &duplicates) == first + second);
    CHECK(duplicates == 0);
}

TEST_CASE("an unreachable receiver costs retries, not data: it all arrives once it is back") {
    test::TempDir dir;
    auto engine = open_engine(dir);
    std::size_t written = write_city(*engine, kNow, 2, 30);
    std::atomic<bool> up{false};
    Receiver receiver([&](int) { return up ? Receiver::Answer{} : Receiver::Answer{500, ""}; });
    exports::RemoteWriteSender sender(options_for(receiver, dir, kNow), *engine, nullptr);
    sender.start();
    REQUIRE(eventually([&] { return sender.figures().retries >= 5; }));
    CHECK(sender.figures().samples_sent == 0);
    up = true;
    REQUIRE(eventually([&] { return sender.figures().samples_sent == written; }));
    sender.stop();
    CHECK(total(receiver.samples()) == written);
}

// citygate_remote_write_lag_seconds{source=...} as the registry holds it now.
double lag_of(prometheus::Registry& registry, const std::string& source) {
    for (const auto& family : registry.Collect()) {
        if (family.name != "citygate_remote_write_lag_seconds") continue;
        for (const auto& metric : family.metric) {
            for (const auto& label : metric.label) {
                if (label.name == "source" && label.value == source) return metric.gauge.value;
            }
        }
    }
    return -1;
}

TEST_CASE("while one stream's batch is retried, the other stream's lag grows too") {
    test::TempDir dir;
    auto engine = open_engine(dir);
    write_city(*engine, kNow, 2, 30);
    Receiver receiver([](int) { return Receiver::Answer{500, ""}; });
    std::atomic<std::int64_t> now{kNow};
    auto options = options_for(receiver, dir, kNow);
    options.rollup_1m = true;  // raw and rollup_1m: one sender, one stream at a time
    options.clock = [&now] { return now.load(); };
    prometheus::Registry registry;
    exports::RemoteWriteSender sender(options, *engine, &registry);
    sender.start();
    REQUIRE(eventually([&] { return sender.figures().retries >= 2; }));
    const double raw_before = lag_of(registry, "raw");
    const double rollup_before = lag_of(registry, "rollup_1m");
    REQUIRE(raw_before >= 0);
    REQUIRE(rollup_before >= 0);
    // Ten minutes of outage: the stream whose batch is out lags ten minutes more, and so does
    // the one waiting behind it (its lag had stayed where the outage found it).
    now = kNow + 600'000;
    CHECK(eventually([&] {
        return lag_of(registry, "raw") >= raw_before + 600 &&
               lag_of(registry, "rollup_1m") >= rollup_before + 600;
    }));
    sender.stop();
    CHECK(sender.figures().samples_sent == 0);
}

TEST_CASE("stop() abandons a request the receiver never answers") {
    test::TempDir dir;
    auto engine = open_engine(dir);
    write_city(*engine, kNow, 1, 5);
    // A listener that accepts and never answers.
    boost::asio::io_context io;
    tcp::acceptor silent(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
    Receiver unused([](int) { return Receiver::Answer{}; });
    auto options = options_for(unused, dir, kNow);
    options.url = "http://127.0.0.1:" + std::to_string(silent.local_endpoint().port()) + "/";
    options.timeout = 30s;
    exports::RemoteWriteSender sender(options, *engine, nullptr);
    sender.start();
    std::this_thread::sleep_for(300ms);
    auto before = std::chrono::steady_clock::now();
    sender.stop();
    CHECK(std::chrono::steady_clock::now() - before < 2s);
}

TEST_CASE("data older than max_backlog is skipped and counted") {
    test::TempDir dir;
    auto engine = open_engine(dir);
    Receiver receiver([](int) { return Receiver::Answer{}; });
    auto options = options_for(receiver, dir, kNow);
    options.max_backlog = 10min;
    std::string error;
    // A cursor an hour old: 30 min of it are beyond the backlog.
    {
        std::vector<storage::Point> points;
        for (int i = 0; i < 60; ++i)
            points.push_back({"pm25{}", kNow - 3'600'000 + i * 60'000, 1.0});
        write(*engine, std::move(points));
    }
    std::filesystem::create_directories(options.cursor_file.parent_path());
    {
        std::ofstream(options.cursor_file)
            << "citygate remote-write cursor v1\nraw_ms " << kNow - 3'600'000 << "\n";
    }
    exports::RemoteWriteSender sender(options, *engine, nullptr);
    sender.start();
    REQUIRE(eventually([&] { return sender.figures().raw_cursor_ms == kNow - 60'000; }));
    sender.stop();
    CHECK(sender.figures().samples_skipped_backlog == 50);  // stamped before now - 10 min
    CHECK(sender.figures().samples_sent == 9);  // now-10min .. now-2min, before now - settle
}

TEST_CASE("rollup_1m sends complete minutes as name:avg_1m, :min_1m, :max_1m and :count_1m") {
    test::TempDir dir;
    auto engine = open_engine(dir);
    // Three whole minutes ending 5 minutes ago, two samples in each minute m: m*10 and
    // m*10 + 4, so avg m*10 + 2, min m*10, max m*10 + 4, count 2.
    std::int64_t first_minute = kNow - 8 * 60'000;
    std::vector<storage::Point> points;
    for (int m = 0; m < 3; ++m) {
        points.push_back({"pm25{device=\"a\"}", first_minute + m * 60'000 + 1000, m * 10.0});
        points.push_back({"pm25{device=\"a\"}", first_minute + m * 60'000 + 31'000, m * 10.0 + 4});
    }
    write(*engine, std::move(points));
    Receiver receiver([](int) { return Receiver::Answer{}; });
    auto options = options_for(receiver, dir, kNow);
    options.raw = false;
    options.rollup_1m = true;
    exports::RemoteWriteSender sender(options, *engine, nullptr);
    sender.start();
    REQUIRE(eventually([&] { return sender.figures().samples_sent == 12; }));
    sender.stop();
    auto got = receiver.samples();
    REQUIRE(got.size() == 4);
    for (const char* suffix : {":avg_1m", ":min_1m", ":max_1m", ":count_1m"}) {
        std::string name = std::string("__name__=pm25") + suffix + ",device=a,";
        REQUIRE(got.count(name));
        CHECK(got[name].size() == 3);
        CHECK(got[name].begin()->first == first_minute);  // stamped at the minute's start
    }
    auto values = receiver.values();
    for (int m = 0; m < 3; ++m) {
        std::int64_t at = first_minute + m * 60'000;
        CHECK(values["__name__=pm25:avg_1m,device=a,"][at] == m * 10.0 + 2);
        CHECK(values["__name__=pm25:min_1m,device=a,"][at] == m * 10.0);
        CHECK(values["__name__=pm25:max_1m,device=a,"][at] == m * 10.0 + 4);
        CHECK(values["__name__=pm25:count_1m,device=a,"][at] == 2);
    }
}

TEST_CASE("samples stored after the cursor passed them are counted as late, once final") {
    test::TempDir dir;
    auto engine = open_engine(dir);
    std::size_t written = write_city(*engine, kNow, 1, 30);
    Receiver receiver([](int) { return Receiver::Answer{}; });
    std::atomic<std::int64_t> now{kNow};
    auto options = options_for(receiver, dir, kNow);
    options.clock = [&now] { return now.load(); };
    options.out_of_order_window = 5min;
    exports::RemoteWriteSender sender(options, *engine, nullptr);
    sender.start();
    REQUIRE(eventually([&] { return sender.figures().raw_cursor_ms == kNow - 60'000; }));
    CHECK(sender.figures().samples_sent == written);
    // Two readings stamped 3 minutes ago arrive now: behind the cursor (now - 1 min).
    std::string key = storage::format_series_key("pm25", {{"device", "late"}});
    write(*engine, {{key, kNow - 180'000, 1}, {key, kNow - 179'000, 2}});
    now = kNow + 10 * 60'000;  // their minute is out of the out-of-order window now
    REQUIRE(eventually([&] { return sender.figures().samples_late == 2; }));
    sender.stop();
    CHECK(sender.figures().samples_sent == written);
    CHECK(receiver.samples().count("__name__=pm25,device=late,") == 0);
}

TEST_CASE("credentials go in the Authorization header: basic auth or a bearer token") {
    test::TempDir dir;
    auto engine = open_engine(dir);
    write_city(*engine, kNow, 1, 3);
    Receiver receiver([](int) { return Receiver::Answer{}; });
    auto options = options_for(receiver, dir, kNow);
    std::string expected;
    SECTION("basic") {
        options.username = "Aladdin";
        options.password = "open sesame";
        expected = "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==";  // RFC 7617's example
    }
    SECTION("bearer") {
        options.bearer_token = "s3cr3t";
        expected = "Bearer s3cr3t";
    }
    exports::RemoteWriteSender sender(options, *engine, nullptr);
    sender.start();
    REQUIRE(eventually([&] { return sender.figures().samples_sent == 3; }));
    sender.stop();
    CHECK(receiver.last_headers()["Authorization"] == expected);
}
