// process_* metrics from /proc/self/stat, /proc/self/fd, /proc/stat and getrlimit; the
// allocator's own figures from glibc's mallinfo2().
#include "gateway/ops/process_metrics.hpp"

#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace citygate::gateway {
namespace {

std::atomic<std::uint64_t> trims{0};
std::atomic<std::uint64_t> trimmed_bytes{0};

void add(std::vector<prometheus::MetricFamily>& families, const char* name, const char* help,
         prometheus::MetricType type, double value) {
    prometheus::ClientMetric metric;
    if (type == prometheus::MetricType::Counter) {
        metric.counter.value = value;
    } else {
        metric.gauge.value = value;
    }
    families.push_back({name, help, type, {std::move(metric)}});
}

// Seconds since the epoch at which the system booted (btime in /proc/stat), or 0.
double boot_time() {
    std::ifstream in("/proc/stat");
    std::string key;
    double value = 0;
    while (in >> key) {
        if (key == "btime") {
            in >> value;
            return value;
        }
        in.ignore(1 << 16, '\n');
    }
    return 0;
}

}  // namespace

void collect_process_metrics(std::vector<prometheus::MetricFamily>& families) {
    using prometheus::MetricType;
    std::ifstream stat_file("/proc/self/stat");
    std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
    // Fields after the command name, which is in parentheses and may hold spaces.
    std::size_t close = stat.rfind(')');
    if (close != std::string::npos) {
        std::istringstream fields(stat.substr(close + 2));
        std::string field;
        double utime = 0, stime = 0, starttime = 0, vsize = 0, rss_pages = 0;
        // Field 3 (state) is the first here; utime is 14, stime 15, starttime 22, vsize 23, rss 24.
        for (int n = 3; n <= 24 && fields >> field; ++n) {
            double value = n == 3 ? 0 : std::strtod(field.c_str(), nullptr);
            if (n == 14) utime = value;
            if (n == 15) stime = value;
            if (n == 22) starttime = value;
            if (n == 23) vsize = value;
            if (n == 24) rss_pages = value;
        }
        double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
        double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
        add(families, "process_cpu_seconds_total", "User and system CPU time spent in seconds",
            MetricType::Counter, (utime + stime) / ticks);
        add(families, "process_virtual_memory_bytes", "Virtual memory size in bytes",
            MetricType::Gauge, vsize);
        add(families, "process_resident_memory_bytes", "Resident memory size in bytes",
            MetricType::Gauge, rss_pages * page);
        if (double boot = boot_time(); boot > 0) {
            add(families, "process_start_time_seconds",
                "Start time of the process since the epoch in seconds", MetricType::Gauge,
                boot + starttime / ticks);
        }
    }
    std::error_code ec;
    std::size_t open = 0;
    for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end;
         it.increment(ec)) {
        ++open;
    }
    if (!ec) {
        add(families, "process_open_fds", "Number of open file descriptors", MetricType::Gauge,
            static_cast<double>(open > 0 ? open - 1 : 0));  // less the iterator's own
    }
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0) {
        add(families, "process_max_fds", "Maximum number of open file descriptors",
            MetricType::Gauge, static_cast<double>(limit.rlim_cur));
    }
    collect_allocator_metrics(families);
}

void collect_allocator_metrics(std::vector<prometheus::MetricFamily>& families) {
    using prometheus::MetricType;
    // Sums over all arenas. It walks each arena's free lists under that arena's lock: cheap at
    // a scrape, not something to call per message.
    struct mallinfo2 info = ::mallinfo2();
    auto gauge = [&](const char* name, const char* help, std::size_t value) {
        add(families, name, help, MetricType::Gauge, static_cast<double>(value));
    };
    gauge(
        "citygate_allocator_heap_bytes",
        "Bytes the allocator holds in its arenas (from brk and its mmapped heaps), in use or free",
        info.arena);
    gauge("citygate_allocator_in_use_bytes", "Bytes of live allocations in the arenas",
          info.uordblks);
    gauge("citygate_allocator_free_bytes",
          "Bytes free inside the arenas: held from the system but not in use (fragmentation)",
          info.fordblks);
    gauge("citygate_allocator_releasable_bytes",
          "Free bytes at the top of the main arena, which a trim gives back at once",
          info.keepcost);
    gauge("citygate_allocator_mmapped_bytes",
          "Bytes of large allocations the allocator mapped on their own", info.hblkhd);
    add(families, "citygate_allocator_trims_total",
        "Times free allocator memory was given back to the system "
        "(storage.memory_trim_interval)",
        MetricType::Counter, static_cast<double>(trims.load(std::memory_order_relaxed)));
    add(families, "citygate_allocator_trimmed_bytes_total", "Resident bytes those trims gave back",
        MetricType::Counter, static_cast<double>(trimmed_bytes.load(std::memory_order_relaxed)));
}

std::uint64_t resident_bytes() {
    std::ifstream statm("/proc/self/statm");
    std::uint64_t size = 0, resident = 0;
    if (!(statm >> size >> resident)) return 0;
    return resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

std::uint64_t trim_allocator(std::size_t threshold) {
    if (::mallinfo2().fordblks <= threshold) return 0;
    const std::uint64_t before = resident_bytes();
    ::malloc_trim(0);
    const std::uint64_t after = resident_bytes();
    const std::uint64_t released = before > after ? before - after : 0;
    trims.fetch_add(1, std::memory_order_relaxed);
    trimmed_bytes.fetch_add(released, std::memory_order_relaxed);
    return released;
}

}  // namespace citygate::gateway
