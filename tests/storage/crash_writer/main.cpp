// Crash-test writer: ingests forever into an engine and appends one line per acknowledged write
// ("first_seq count") to an ack file, from inside the write callback. The crash test SIGKILLs
// it mid-ingest and checks every acknowledged point is readable after reopening.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "storage/engine.hpp"

using namespace citygate::storage;

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s DIR ACK_FILE RUN\n", argv[0]);
        return 2;
    }
    const std::int64_t run = std::atoll(argv[3]);
    int ack = ::open(argv[2], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (ack < 0) return 2;
    EngineOptions o;
    o.directory = argv[1];
    o.shards = 2;
    o.queue_capacity = 4096;
    o.retention = std::chrono::milliseconds(0);
    o.head_flush_points = 20'000;  // flush often: crashes land inside flushes too
    auto engine = Engine::open(o);
    if (!engine.is_ok()) {
        std::fprintf(stderr, "open: %s\n", engine.status().message().c_str());
        return 1;
    }
    constexpr int kDevices = 40;
    constexpr int kPerWrite = 100;
    std::int64_t seq = run * 1'000'000'000;  // each run writes its own range of points
    for (;;) {
        std::vector<Point> points;
        for (int i = 0; i < kPerWrite; ++i) {
            std::int64_t n = seq + i;
            points.push_back(
                {format_series_key("crash", {{"device", "d-" + std::to_string(n % kDevices)}}), n,
                 static_cast<double>(n % 1000)});
        }
        std::int64_t first = seq;
        while (!engine.value()->try_write(points, [ack, first](const WriteResult& r) {
            if (!r.durable() || r.accepted != kPerWrite) return;
            // Written from the callback, after the WAL: a line here means durable.
            std::string line = std::to_string(first) + " " + std::to_string(kPerWrite) + "\n";
            if (::write(ack, line.data(), line.size()) < 0) std::abort();
        })) {
            std::this_thread::yield();
        }
        seq += kPerWrite;
    }
}
