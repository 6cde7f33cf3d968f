// CPUs the process may use (see cpu_limit.hpp).
#include "storage/cpu_limit.hpp"

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <fstream>
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

// The tightest limit from `dir` up to `top`.
unsigned tightest(std::filesystem::path dir, const std::filesystem::path& top, unsigned cpus,
                  unsigned (*limit)(const std::filesystem::path&)) {
    for (;;) {
        if (unsigned n = limit(dir); n > 0) cpus = std::min(cpus, n);
        if (dir == top || !dir.has_parent_path() || dir.parent_path() == dir) break;
        dir = dir.parent_path();
        if (dir.native().size() < top.native().size()) break;
    }
    return cpus;
}

}  // namespace

unsigned cpus_within_cgroup(const std::filesystem::path& root, std::string_view proc_cgroup,
                            unsigned cpus) {
    std::istringstream lines{std::string(proc_cgroup)};
    std::string line;
    while (std::getline(lines, line)) {
        // "hierarchy-id:controllers:path"; v2 is "0::/path", v1 lists "cpu,cpuacct".
        auto first = line.find(':');
        auto second = line.find(':', first + 1);
        if (first == std::string::npos || second == std::string::npos) continue;
        std::string controllers = line.substr(first + 1, second - first - 1);
        std::string path = line.substr(second + 1);
        if (!path.empty() && path.front() == '/') path.erase(0, 1);
        if (controllers.empty()) {
            cpus = tightest(root / path, root, cpus, v2_limit);
        } else if (("," + controllers + ",").find(",cpu,") != std::string::npos) {
            for (const char* mount : {"cpu", "cpu,cpuacct", "cpuacct,cpu"}) {
                if (std::filesystem::exists(root / mount)) {
                    cpus = tightest(root / mount / path, root / mount, cpus, v1_limit);
                    break;
                }
            }
        }
    }
    return std::max(1u, cpus);
}

unsigned usable_cpus() {
    unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        cpus = std::max(1, CPU_COUNT(&set));
    }
    std::ifstream file("/proc/self/cgroup");
    std::stringstream text;
    text << file.rdbuf();
    return cpus_within_cgroup("/sys/fs/cgroup", text.str(), cpus);
}

}  // namespace citygate
