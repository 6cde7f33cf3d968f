// CPUs and memory the process may use (see cpu_limit.hpp).
#include "storage/cpu_limit.hpp"

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <sstream>
#include <string>
#include <thread>

namespace citygate {

namespace {

// The CPUs a quota over a period allows, rounded up; 0 when unlimited or unreadable.
unsigned quota_cpus(double quota, double period) {
    if (quota <= 0 || period <= 0) return 0;
    return static_cast<unsigned>(std::max(1.0, std::ceil(quota / period)));
}

// cgroup v2: "max 100000" or "200000 100000".
unsigned v2_limit(const std::filesystem::path& dir) {
    std::ifstream file(dir / "cpu.max");
    std::string quota;
    double period = 0;
    if (!(file >> quota >> period) || quota == "max") return 0;
    try {
        return quota_cpus(std::stod(quota), period);
    } catch (const std::exception&) {
        return 0;
    }
}

// cgroup v1: cpu.cfs_quota_us (-1: none) over cpu.cfs_period_us.
unsigned v1_limit(const std::filesystem::path& dir) {
    std::ifstream quota_file(dir / "cpu.cfs_quota_us");
    std::ifstream period_file(dir / "cpu.cfs_period_us");
    double quota = 0, period = 0;
    if (!(quota_file >> quota) || !(period_file >> period)) return 0;
    return quota_cpus(quota, period);
}

// cgroup v2 memory.max: "max" or bytes; 0 when unlimited or unreadable.
std::uint64_t v2_memory(const std::filesystem::path& dir) {
    std::ifstream file(dir / "memory.max");
    std::string limit;
    if (!(file >> limit) || limit == "max") return 0;
    try {
        return std::stoull(limit);
    } catch (const std::exception&) {
        return 0;
    }
}

// cgroup v1 memory.limit_in_bytes: a huge number (about 2^63) when unlimited.
std::uint64_t v1_memory(const std::filesystem::path& dir) {
    std::ifstream file(dir / "memory.limit_in_bytes");
    std::uint64_t limit = 0;
    if (!(file >> limit) || limit >= (std::uint64_t{1} << 62)) return 0;
    return limit;
}

// The tightest limit from `dir` up to `top`.
template <typename Value>
Value tightest(std::filesystem::path dir, const std::filesystem::path& top, Value value,
               Value (*limit)(const std::filesystem::path&)) {
    for (;;) {
        if (Value n = limit(dir); n > 0) value = std::min(value, n);
        if (dir == top || !dir.has_parent_path() || dir.parent_path() == dir) break;
        dir = dir.parent_path();
        if (dir.native().size() < top.native().size()) break;
    }
    return value;
}

// Walks `proc_cgroup` ("hierarchy-id:controllers:path" lines; v2 is "0::/path", v1 lists its
// controllers) and bounds `value` by every cgroup on the way up, v2 or v1 (`controller`
// mounted at one of `mounts`).
template <typename Value>
Value within_cgroup(const std::filesystem::path& root, std::string_view proc_cgroup, Value value,
                    Value (*v2)(const std::filesystem::path&),
                    Value (*v1)(const std::filesystem::path&), std::string_view controller,
                    std::initializer_list<const char*> mounts) {
    std::istringstream lines{std::string(proc_cgroup)};
    std::string line;
    const std::string wanted = "," + std::string(controller) + ",";
    while (std::getline(lines, line)) {
        auto first = line.find(':');
        auto second = line.find(':', first + 1);
        if (first == std::string::npos || second == std::string::npos) continue;
        std::string controllers = line.substr(first + 1, second - first - 1);
        std::string path = line.substr(second + 1);
        if (!path.empty() && path.front() == '/') path.erase(0, 1);
        if (controllers.empty()) {
            value = tightest(root / path, root, value, v2);
        } else if (("," + controllers + ",").find(wanted) != std::string::npos) {
            for (const char* mount : mounts) {
                if (std::filesystem::exists(root / mount)) {
                    value = tightest(root / mount / path, root / mount, value, v1);
                    break;
                }
            }
        }
    }
    return value;
}

std::string proc_self_cgroup() {
    std::ifstream file("/proc/self/cgroup");
    std::stringstream text;
    text << file.rdbuf();
    return text.str();
}

// MemTotal of /proc/meminfo in bytes; 0 when unreadable.
std::uint64_t memory_total() {
    std::ifstream file("/proc/meminfo");
    std::string name, unit;
    std::uint64_t kib = 0;
    while (file >> name >> kib >> unit) {
        if (name == "MemTotal:") return kib * 1024;
    }
    return 0;
}

}  // namespace

unsigned cpus_within_cgroup(const std::filesystem::path& root, std::string_view proc_cgroup,
                            unsigned cpus) {
    return std::max(1u, within_cgroup(root, proc_cgroup, cpus, v2_limit, v1_limit, "cpu",
                                      {"cpu", "cpu,cpuacct", "cpuacct,cpu"}));
}

std::uint64_t memory_within_cgroup(const std::filesystem::path& root, std::string_view proc_cgroup,
                                   std::uint64_t bytes) {
    return within_cgroup(root, proc_cgroup, bytes, v2_memory, v1_memory, "memory", {"memory"});
}

unsigned usable_cpus() {
    unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        cpus = std::max(1, CPU_COUNT(&set));
    }
    return cpus_within_cgroup("/sys/fs/cgroup", proc_self_cgroup(), cpus);
}

std::uint64_t memory_limit_bytes() {
    constexpr std::uint64_t unknown = std::numeric_limits<std::uint64_t>::max();
    const std::uint64_t total = memory_total();
    std::uint64_t limit =
        memory_within_cgroup("/sys/fs/cgroup", proc_self_cgroup(), total > 0 ? total : unknown);
    return limit == unknown ? 0 : limit;
}

}  // namespace citygate
