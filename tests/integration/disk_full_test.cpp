// A full data volume through the real binary: a 64 MiB tmpfs the test mounts itself (as root;
// skipped with a warning where it may not) fills under QoS 1 load; acks stop, /readyz says why,
// nothing crashes; when the test frees space, writes resume without a restart and every
// acknowledged reading is readable. A restart on the full volume comes up read-only.
#include <catch2/catch.hpp>

#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <thread>

#include <mqtt/async_client.h>
#include <simdjson.h>

#include "tests/integration/gateway_fixture.hpp"

using citygate::test::GatewayUnderTest;
using namespace std::chrono_literals;

namespace {

// A tmpfs of `bytes` mounted at `dir` for the object's life.
class TmpfsMount {
  public:
    TmpfsMount(const std::filesystem::path& dir, std::uint64_t bytes) : dir_(dir) {
        std::filesystem::create_directories(dir);
        if (::geteuid() != 0) {
            error_ = "not root";
            return;
        }
        std::string options = "size=" + std::to_string(bytes);
        if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, options.c_str()) != 0) {
            error_ = std::string("mount tmpfs: ") + std::strerror(errno);
            return;
        }
        mounted_ = true;
    }
    ~TmpfsMount() {
        if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
    }
    bool mounted() const { return mounted_; }
    const std::string& error() const { return error_; }

  private:
    std::filesystem::path dir_;
    bool mounted_ = false;
    std::string error_;
};

std::uint64_t free_bytes(const std::filesystem::path& dir) {
    struct statvfs st {};
    REQUIRE(::statvfs(dir.c_str(), &st) == 0);
    return static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
}

// Writes a file of about `bytes` (real pages: tmpfs does not count holes); stops at ENOSPC.
void write_filler(const std::filesystem::path& file, std::uint64_t bytes) {
    std::ofstream out(file, std::ios::binary | std::ios::app);
    std::string block(1 << 16, 'x');
    for (std::uint64_t written = 0; written < bytes && out; written += block.size())
        out.write(block.data(), static_cast<std::streamsize>(
                                    std::min<std::uint64_t>(block.size(), bytes - written)));
}

template <typename Predicate>
bool eventually(Predicate p, std::chrono::milliseconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        if (p()) return true;
        std::this_thread::sleep_for(50ms);
    }
    return p();
}

constexpr int kPublishers = 4;
constexpr int kFields = 20;

// One QoS 1 publisher: one message in flight, each waited for however long it takes (acks stop
// while the volume is full and must come back), until told to stop after an ack.
struct Publisher {
    std::atomic<int> acknowledged{-1};
    std::atomic<bool> waiting{false};  // a publish has waited more than 500 ms for its ack
    std::atomic<bool> failed{false};
};

void publish(std::uint16_t port, int p, std::int64_t base, Publisher& me,
             const std::atomic<bool>& stop) {
    try {
        mqtt::async_client client("tcp://127.0.0.1:" + std::to_string(port),
                                  "filler-" + std::to_string(p),
                                  mqtt::create_options(MQTTVERSION_3_1_1));
        auto options = mqtt::connect_options_builder()
                           .clean_session(true)
                           .keep_alive_interval(120s)
                           .finalize();
        if (!client.connect(options)->wait_for(10s)) {
            me.failed = true;
            return;
        }
        for (int i = 0; !stop && i < 10'000'000; ++i) {
            std::string payload = "{\"ts\":" + std::to_string(base + i);
            for (int f = 0; f < kFields; ++f)
                payload += ",\"f" + std::to_string(f) + "\":" + std::to_string(i);
            payload += "}";
            auto token = client.publish(
                mqtt::make_message("city/jingan/power/d-" + std::to_string(p), payload, 1, false));
            auto waited = std::chrono::steady_clock::now();
            while (!token->wait_for(100ms)) {
                if (std::chrono::steady_clock::now() - waited > 500ms) me.waiting = true;
                if (std::chrono::steady_clock::now() - waited > 120s) {
                    me.failed = true;
                    return;
                }
            }
            me.waiting = false;
            me.acknowledged = i;
        }
        client.disconnect()->wait_for(5s);
    } catch (const mqtt::exception&) {
        me.failed = true;
    }
}

// Every acknowledged reading of every publisher, each field, is readable.
void check_all_readable(GatewayUnderTest& gateway, std::int64_t base, Publisher* publishers) {
    for (int p = 0; p < kPublishers; ++p) {
        const int last = publishers[p].acknowledged;
        INFO("publisher " << p << " had " << last + 1 << " messages acknowledged");
        REQUIRE(last >= 0);
        auto reply = gateway.get("/api/v1/query_range",
                                 {{"series", "{device=\"d-" + std::to_string(p) + "\"}"},
                                  {"start", std::to_string(base)},
                                  {"end", std::to_string(base + last)}});
        INFO(reply.body.substr(0, 500));
        REQUIRE(reply.status == 200);
        simdjson::dom::parser parser;
        simdjson::dom::element doc = parser.parse(reply.body);
        simdjson::dom::array result = doc["data"]["result"];
        REQUIRE(result.size() == kFields);
        for (simdjson::dom::element series : result) {
            simdjson::dom::array values = series["values"];
            REQUIRE(values.size() == static_cast<std::size_t>(last + 1));
            for (int i = 0; i <= last; i += std::max(1, last / 50)) {
                simdjson::dom::array pair = values.at(static_cast<std::size_t>(i));
                CHECK(int64_t(pair.at(0)) == base + i);
                CHECK(double(pair.at(1)) == i);
            }
        }
    }
}

}  // namespace

TEST_CASE(
    "a full data volume holds writes and resumes without a restart, losing no acked "
    "reading") {
    GatewayUnderTest gateway(GatewayUnderTest::Deferred{}, "",
                             {"--log-level", "info", "--fsync", "none"});
    TmpfsMount volume(gateway.data_dir(), 64 << 20);
    if (!volume.mounted()) {
        WARN("SKIPPED: a full data volume needs a 64 MiB tmpfs the test mounts itself ("
             << volume.error() << "); run the integration tests as root to test it");
        return;
    }
    gateway.start();
    const std::filesystem::path filler = std::filesystem::path(gateway.data_dir()) / "filler";
    const std::uint64_t reserve = 16 << 20;  // auto: a quarter of a 64 MiB volume
    REQUIRE(gateway.metric("citygate_storage_free_space_reserve_bytes").value() == reserve);
    REQUIRE(gateway.get("/readyz").status == 200);

    // Leave a few MiB above the reserve, so the load fills it in seconds.
    const std::uint64_t free_now = free_bytes(gateway.data_dir());
    REQUIRE(free_now > reserve + (8 << 20));
    write_filler(filler, free_now - reserve - (4 << 20));

    const std::int64_t base = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count() -
                              1'800'000;
    Publisher publishers[kPublishers];
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    for (int p = 0; p < kPublishers; ++p) {
        threads.emplace_back(
            [&, p] { publish(gateway.mqtt_port(), p, base, publishers[p], stop); });
    }
    auto all_waiting = [&] {
        for (auto& p : publishers) {
            if (!p.waiting) return false;
        }
        return true;
    };
    // Full: acks stop for every publisher, /readyz says why, the process lives on.
    const bool held = eventually(all_waiting, 60s);
    auto ready = gateway.get("/readyz");
    INFO("citygate log:\n" << gateway.process().log());
    CHECK(held);
    CHECK(ready.status == 503);
    CHECK_THAT(ready.body, Catch::Contains("disk full"));
    CHECK(gateway.metric("citygate_storage_disk_full").value_or(0) == 1);
    {
        auto status = gateway.get("/api/v1/status");
        simdjson::dom::parser parser;
        simdjson::dom::element doc = parser.parse(status.body);
        CHECK_FALSE(bool(doc["storage"]["writable"]));
        CHECK(simdjson::dom::array(doc["storage"]["problems"]).size() >= 1);
        CHECK(std::string_view(doc["shards"].at(0)["state"]) == "held");
    }
    CHECK(gateway.process().wait_for(0ms) == std::nullopt);  // still running
    CHECK(gateway.process().log().find("free-space reserve") != std::string::npos);
    int acked_while_full[kPublishers];
    for (int p = 0; p < kPublishers; ++p)
        acked_while_full[p] = publishers[p].acknowledged;
    std::this_thread::sleep_for(1s);
    for (int p = 0; p < kPublishers; ++p)
        CHECK(publishers[p].acknowledged == acked_while_full[p]);  // nothing acked while held

    // Space returns: the same connections are acknowledged again, no restart.
    std::filesystem::remove(filler);
    CHECK(eventually(
        [&] {
            for (int p = 0; p < kPublishers; ++p) {
                if (publishers[p].acknowledged <= acked_while_full[p] + 10) return false;
            }
            return true;
        },
        30s));
    CHECK(eventually([&] { return gateway.get("/readyz").status == 200; }, 10s));
    CHECK(gateway.metric("citygate_storage_disk_full").value_or(1) == 0);
    stop = true;
    for (auto& t : threads)
        t.join();
    for (auto& p : publishers)
        CHECK_FALSE(p.failed);
    check_all_readable(gateway, base, publishers);

    // A restart on a volume under its reserve comes up read-only: queries work, /readyz says so.
    REQUIRE(gateway.stop() == 0);
    write_filler(filler, free_bytes(gateway.data_dir()) - (reserve / 2));
    gateway.start();
    auto read_only = gateway.get("/readyz");
    CHECK(read_only.status == 503);
    CHECK_THAT(read_only.body, Catch::Contains("read-only"));
    check_all_readable(gateway, base, publishers);
    std::filesystem::remove(filler);
    CHECK(eventually([&] { return gateway.get("/readyz").status == 200; }, 10s));
    gateway.stop();
}
