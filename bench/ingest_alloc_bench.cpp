// citygate-ingest-alloc-bench: heap allocations per message and per point on the ingest hot path,
// from a decoded MQTT message to its commit in the WAL (the ingest unit and storage, without the
// socket). Devices publish the same series over and over; after two warm-up messages each (the
// first creates the series, the second caches their references), the bench counts every
// operator new over the measured messages (RocksDB's included): those of
// Appender::prepare, those of try_submit (which with fsync none commits on the calling thread),
// and those of every other thread (shard writers, flush threads, RocksDB's). Its own message
// building is not counted. Shapes: `json`, {"pm25": .., "no2": .., "ts": ..} per device; `line`,
// 100 line protocol lines per message (one device, 100 lanes). Each runs with the series
// reference cache on and off (off: every point builds and carries its series key, as before
// references), and prints one line per run. What is left with the cache on: RocksDB's, 12 a WAL
// write in Debian's librocksdb (std::string names of its test kill points, built without
// NDEBUG), one WAL write per shard a message touches; the head's sample vector of each series,
// which grows by doubling through a series' first head (these measured messages) and is
// reserved at its previous head's size after that (one allocation a series a head); a join for
// a message split across shards; and the cache's misses.
//
//   citygate-ingest-alloc-bench [--devices 1000] [--messages 200000] [--dir /tmp/x]
//                               [--shape json|line] [--cache on|off]
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include <sys/resource.h>

#include "ingest/ingest_unit.hpp"

using namespace citygate;

namespace {

// The bench's own thread counts in a plain thread-local (its message building is left out by
// reading the count around prepare and try_submit); every other thread (shard writers, flush
// threads, RocksDB's) counts into the shared total.
thread_local std::uint64_t this_thread_allocations = 0;
std::atomic<std::uint64_t> other_thread_allocations{0};
thread_local bool bench_thread = false;

void count_allocation() {
    if (bench_thread) {
        ++this_thread_allocations;
    } else {
        other_thread_allocations.fetch_add(1, std::memory_order_relaxed);
    }
}

}  // namespace

void* operator new(std::size_t size) {
    count_allocation();
    if (void* p = std::malloc(size ? size : 1)) return p;
    throw std::bad_alloc();
}
void* operator new[](std::size_t size) {
    count_allocation();
    if (void* p = std::malloc(size ? size : 1)) return p;
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
    std::free(p);
}
void operator delete[](void* p) noexcept {
    std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    std::free(p);
}

namespace {

constexpr std::int64_t start_ms = 1'750'000'000'000;

struct Args {
    std::size_t devices = 1000;
    std::size_t messages = 200'000;
    std::filesystem::path dir;
    std::string shape;  // empty: both
    std::string cache;  // empty: both
};

[[noreturn]] void usage() {
    std::fprintf(stderr,
                 "usage: citygate-ingest-alloc-bench [--devices N] [--messages N] [--dir PATH] "
                 "[--shape json|line] [--cache on|off]\n");
    std::exit(2);
}

double cpu_seconds() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
    return s(u.ru_utime) + s(u.ru_stime);
}

std::span<const std::uint8_t> bytes(const std::string& text) {
    return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

struct Message {
    std::string topic;
    std::string payload;
};

// Message `n` of a run: device n % devices, stamped one second after its previous one.
void message_of(bool line, std::size_t n, std::size_t devices, Message& out) {
    const std::size_t device = n % devices;
    const std::int64_t ts = start_ms + static_cast<std::int64_t>(n / devices) * 1000;
    char buffer[64];
    if (!line) {
        std::snprintf(buffer, sizeof buffer, "city/d%zu/air/a-%06zu", device % 16, device);
        out.topic = buffer;
        out.payload = "{\"pm25\": " + std::to_string(10 + n % 7) +
                      ".5, \"no2\": " + std::to_string(n % 13) + ", \"ts\": " + std::to_string(ts) +
                      "}";
        return;
    }
    std::snprintf(buffer, sizeof buffer, "city/d%zu/traffic/t-%06zu", device % 16, device);
    out.topic = buffer;
    out.payload.clear();
    for (int lane = 0; lane < 100; ++lane) {
        out.payload += "flow,lane=" + std::to_string(lane) + " cars=" + std::to_string(n % 50) +
                       "i " + std::to_string(ts) + "000000\n";
    }
}

struct Run {
    bool line = false;
    std::size_t cache_slots = 0;
};

void run(const Args& args, const Run& r) {
    const auto dir = args.dir / (std::string(r.line ? "line" : "json") +
                                 (r.cache_slots ? "-cache" : "-nocache"));
    std::filesystem::remove_all(dir);
    storage::EngineOptions engine_options;
    engine_options.directory = dir;
    engine_options.shards = 2;
    engine_options.fsync = storage::FsyncPolicy::none;
    engine_options.clock = [] { return start_ms; };
    auto engine = std::move(storage::Engine::open(engine_options).value());
    prometheus::Registry registry;
    ingest::AccessControl access({ingest::AnonymousPolicy::always, {}, {}});
    ingest::IngestMetrics metrics(registry);
    ingest::IngestOptions options;
    options.templates.push_back(*payload::TopicTemplate::parse("city/{district}/{type}/{device}"));
    options.formats.push_back({"city/+/traffic/#", payload::Format::line});
    options.default_format = payload::Format::json;
    options.clock = [] { return start_ms + 86'400'000; };
    options.max_series_per_identity = 0;
    options.max_new_series_per_minute = 0;
    options.series_cache_slots = r.cache_slots;
    ingest::IngestUnit unit(std::move(options), *engine, access, nullptr, metrics);
    ingest::Appender appender(unit);
    ingest::Identity anonymous;

    std::atomic<std::size_t> completed{0};
    std::size_t submitted = 0, points = 0, by_reference = 0;
    std::uint64_t in_prepare = 0, in_submit = 0;
    Message message;
    ingest::Write write;
    auto send = [&](std::size_t n, bool count) {
        message_of(r.line, n, args.devices, message);
        auto before = this_thread_allocations;
        if (appender.prepare({anonymous, "bench", message.topic, bytes(message.payload)}, write) !=
            ingest::Verdict::stored) {
            std::fprintf(stderr, "refused: %s\n", std::string(appender.error_detail()).c_str());
            std::exit(1);
        }
        auto prepared = this_thread_allocations;
        if (count) points += write.points();
        if (count) by_reference += write.by_reference();
        // The completion captures one pointer (the gateway's MQTT completion is 40 bytes; both
        // are held inline, see ingest::Completion).
        auto* done = &completed;
        while (!unit.try_submit(write, [done](const ingest::Outcome&) { done->fetch_add(1); })) {
            std::this_thread::yield();
        }
        ++submitted;
        if (count) {
            in_prepare += prepared - before;
            in_submit += this_thread_allocations - prepared;
        }
    };
    auto drain = [&] {
        while (completed.load() < submitted)
            std::this_thread::yield();
    };
    // Two warm-up messages a device: the first creates its series (a series is referenced only
    // once it exists, so nothing is cached yet), the second finds them and keeps the references.
    for (std::size_t n = 0; n < 2 * args.devices; ++n) {
        send(n, false);
        if (n + 1 == args.devices) drain();
    }
    drain();
    const std::size_t messages = r.line ? args.messages / 20 : args.messages;
    const auto others_before = other_thread_allocations.load();
    const double cpu_before = cpu_seconds();
    for (std::size_t n = 2 * args.devices; n < 2 * args.devices + messages; ++n)
        send(n, true);
    drain();
    const double cpu = cpu_seconds() - cpu_before;
    const auto others = other_thread_allocations.load() - others_before;
    const auto total = in_prepare + in_submit + others;
    const double m = static_cast<double>(messages);
    std::printf(
        "%-5s cache %-3s %8zu msgs %9zu points  allocs/msg %7.2f  allocs/point %6.3f  "
        "(prepare %6.2f, submit+commit %6.2f, other threads %6.2f per msg)  "
        "CPU us/msg %6.2f  by reference %5.1f%%\n",
        r.line ? "line" : "json", r.cache_slots ? "on" : "off", messages, points,
        static_cast<double>(total) / m, static_cast<double>(total) / static_cast<double>(points),
        static_cast<double>(in_prepare) / m, static_cast<double>(in_submit) / m,
        static_cast<double>(others) / m, cpu * 1e6 / m,
        100.0 * static_cast<double>(by_reference) / static_cast<double>(points));
    engine.reset();
    std::filesystem::remove_all(dir);
}

}  // namespace

int main(int argc, char** argv) {
    bench_thread = true;
    Args args;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage();
            return argv[++i];
        };
        if (a == "--devices") {
            args.devices = std::stoul(value());
        } else if (a == "--messages") {
            args.messages = std::stoul(value());
        } else if (a == "--dir") {
            args.dir = value();
        } else if (a == "--shape") {
            args.shape = value();
        } else if (a == "--cache") {
            args.cache = value();
        } else {
            usage();
        }
    }
    if (args.devices == 0 || args.messages == 0) usage();
    bool own_dir = args.dir.empty();
    if (own_dir) {
        char pattern[] = "/tmp/citygate-alloc-XXXXXX";
        if (!::mkdtemp(pattern)) usage();
        args.dir = pattern;
    }
    for (bool line : {false, true}) {
        if (!args.shape.empty() && (args.shape == "line") != line) continue;
        for (std::size_t slots : {std::size_t{0}, std::size_t{65536}}) {
            if (!args.cache.empty() && (args.cache == "on") != (slots > 0)) continue;
            run(args, {line, slots});
        }
    }
    if (own_dir) std::filesystem::remove_all(args.dir);
}
