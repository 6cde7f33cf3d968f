// citygate-series-bench: the cost of many series. Creates N series (one point each) across the
// shards of a data directory, closes it, then times Engine::open on it: the series index is what
// a start has to load. Shapes: `fleet`, 50 fields per device (N / 50 devices); `explosion`, as one
// client sending new field names: every series its own measurement, one device. Prints one JSON
// line: series, create_s, open_s (each reopen), rss_kib after the last open.
//
//   citygate-series-bench --dir /tmp/cg-series --series 4000000 --shards 2
//   citygate-series-bench --dir /tmp/cg-series --open-only --reopens 3
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <sys/resource.h>

#include "storage/engine.hpp"

using namespace citygate;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
    std::filesystem::path dir;
    std::size_t series = 4'000'000;
    unsigned shards = 2;
    int reopens = 1;
    bool open_only = false;
    bool explosion = false;  // --shape explosion
};

[[noreturn]] void usage() {
    std::fprintf(stderr,
                 "usage: citygate-series-bench --dir PATH [--series N] [--shards N] "
                 "[--reopens N] [--open-only] [--shape fleet|explosion]\n");
    std::exit(2);
}

long resident_kib() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
    }
    return -1;
}

// User + system CPU seconds of the process so far, all threads: on a shared machine wall time
// says more about the neighbours than about us.
double cpu_seconds() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
    return s(u.ru_utime) + s(u.ru_stime);
}

std::unique_ptr<storage::Engine> open_engine(const Args& args) {
    storage::EngineOptions o;
    o.directory = args.dir;
    o.shards = args.shards;
    o.retention = std::chrono::milliseconds(0);
    // The limit is what is measured past, not what stops the bench.
    o.max_series_per_shard = args.series + 1;
    auto e = storage::Engine::open(std::move(o));
    if (!e.is_ok()) {
        std::fprintf(stderr, "open: %s\n", e.status().message().c_str());
        std::exit(1);
    }
    return std::move(e.value());
}

double create(const Args& args) {
    auto engine = open_engine(args);
    auto started = Clock::now();
    std::atomic<std::size_t> acked{0};
    std::atomic<bool> failed{false};
    std::size_t writes = 0;
    std::vector<storage::Point> batch;
    const std::int64_t ts = 1'718'409'600'000;
    for (std::size_t i = 0; i < args.series; ++i) {
        std::string device = args.explosion ? "exploder" : "x-" + std::to_string(i / 50);
        std::string field = "f" + std::to_string(args.explosion ? i : i % 50);
        batch.push_back({storage::format_series_key(
                             field, {{"device", device}, {"district", "pudong"}, {"type", "air"}}),
                         ts, static_cast<double>(i)});
        if (batch.size() < 1000 && i + 1 < args.series) continue;
        auto done = [&](const storage::WriteResult& r) {
            if (!r.durable() || r.rejected() > 0) failed = true;
            acked.fetch_add(1);
        };
        while (!engine->try_write(batch, done))
            std::this_thread::yield();
        ++writes;
    }
    while (acked.load() < writes)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (failed) {
        std::fprintf(stderr, "a write failed or was refused\n");
        std::exit(1);
    }
    engine.reset();  // flushes the heads into chunks (RocksDB's memtables stay in its WAL)
    return std::chrono::duration<double>(Clock::now() - started).count();
}

}  // namespace

int main(int argc, char** argv) {
    Args args;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&] {
            if (i + 1 >= argc) usage();
            return std::string(argv[++i]);
        };
        if (a == "--dir") {
            args.dir = next();
        } else if (a == "--series") {
            args.series = std::stoull(next());
        } else if (a == "--shards") {
            args.shards = static_cast<unsigned>(std::stoul(next()));
        } else if (a == "--reopens") {
            args.reopens = std::stoi(next());
        } else if (a == "--open-only") {
            args.open_only = true;
        } else if (a == "--shape") {
            std::string shape = next();
            if (shape != "fleet" && shape != "explosion") usage();
            args.explosion = shape == "explosion";
        } else {
            usage();
        }
    }
    if (args.dir.empty()) usage();
    double create_s = 0;
    if (!args.open_only) {
        std::filesystem::remove_all(args.dir);
        create_s = create(args);
    }
    std::string opens, cpus;
    std::uint64_t series = 0;
    long rss = 0;
    for (int r = 0; r < args.reopens; ++r) {
        auto started = Clock::now();
        double cpu_before = cpu_seconds();
        auto engine = open_engine(args);
        double s = std::chrono::duration<double>(Clock::now() - started).count();
        double cpu = cpu_seconds() - cpu_before;
        series = engine->stats().series;
        rss = resident_kib();
        opens += (opens.empty() ? "" : ",") + std::to_string(s);
        cpus += (cpus.empty() ? "" : ",") + std::to_string(cpu);
        std::fprintf(stderr, "open %d: %.2f s (%.2f s CPU), %llu series, RSS %ld KiB\n", r + 1, s,
                     cpu, static_cast<unsigned long long>(series), rss);
    }
    std::printf(
        "{\"series\":%llu,\"shards\":%u,\"create_s\":%.2f,\"open_s\":[%s],"
        "\"open_cpu_s\":[%s],\"rss_kib\":%ld}\n",
        static_cast<unsigned long long>(series), args.shards, create_s, opens.c_str(), cpus.c_str(),
        rss);
    return 0;
}
