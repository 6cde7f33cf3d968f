// How many CPUs this process may use: the affinity mask, bounded by a cgroup CPU quota (a
// container's or a Kubernetes pod's `limits.cpu`), which std::thread::hardware_concurrency()
// does not see. What `shards = 0` and `io_threads = 0` size themselves by. And how much memory
// it may use: what the automatic memory budget is derived from.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string_view>

namespace citygate {

// The affinity mask's CPUs, at most the quota of every cgroup from the process's own up to the
// root (cgroup v2 cpu.max, or v1 cpu.cfs_quota_us / cpu.cfs_period_us), rounded up; at least 1.
unsigned usable_cpus();

// The same from a cgroup file system mounted at `root` and the process's `/proc/self/cgroup`
// text, starting from `cpus` (for tests).
unsigned cpus_within_cgroup(const std::filesystem::path& root, std::string_view proc_cgroup,
                            unsigned cpus);

// The machine's memory (MemTotal), at most the memory limit of every cgroup from the process's
// own up to the root (cgroup v2 memory.max, or v1 memory.limit_in_bytes); 0 when unknown.
std::uint64_t memory_limit_bytes();

// The same from a cgroup file system mounted at `root` and `/proc/self/cgroup` text, starting
// from `bytes` (for tests).
std::uint64_t memory_within_cgroup(const std::filesystem::path& root, std::string_view proc_cgroup,
                                   std::uint64_t bytes);

}  // namespace citygate
