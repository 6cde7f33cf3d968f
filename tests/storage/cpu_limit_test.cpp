// CPUs under a cgroup quota, from a fake cgroup file system.
#include <catch2/catch.hpp>

#include <fstream>
#include <thread>

#include "storage/cpu_limit.hpp"
#include "tests/support/temp_dir.hpp"

using citygate::cpus_within_cgroup;
using citygate::test::TempDir;

namespace {

void write(const std::filesystem::path& file, const std::string& text) {
    std::filesystem::create_directories(file.parent_path());
    std::ofstream(file) << text;
}

}  // namespace

TEST_CASE(
    "a cgroup v2 cpu.max bounds the CPUs, the tightest of the process's cgroup and its parents") {
    TempDir dir;
    const auto root = dir.path();
    write(root / "cpu.max", "max 100000\n");
    write(root / "kubepods/cpu.max", "800000 100000\n");
    write(root / "kubepods/pod1/cpu.max", "250000 100000\n");  // limits.cpu 2.5 -> 3
    write(root / "kubepods/pod1/c1/cpu.max", "max 100000\n");
    CHECK(cpus_within_cgroup(root, "0::/kubepods/pod1/c1\n", 16) == 3);
    CHECK(cpus_within_cgroup(root, "0::/kubepods/pod1/c1\n", 2) == 2);  // affinity is tighter
    CHECK(cpus_within_cgroup(root, "0::/\n", 16) == 16);                // no limit
    write(root / "small/cpu.max", "50000 100000\n");                    // half a CPU -> 1
    CHECK(cpus_within_cgroup(root, "0::/small\n", 16) == 1);
    write(root / "bad/cpu.max", "lots\n");
    CHECK(cpus_within_cgroup(root, "0::/bad\n", 16) == 16);
}

TEST_CASE("a cgroup v1 CFS quota bounds the CPUs, and -1 is no quota") {
    TempDir dir;
    const auto root = dir.path();
    write(root / "cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "400000\n");
    write(root / "cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n");
    write(root / "cpu,cpuacct/free/cpu.cfs_quota_us", "-1\n");
    write(root / "cpu,cpuacct/free/cpu.cfs_period_us", "100000\n");
    CHECK(cpus_within_cgroup(root, "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n", 16) == 4);
    CHECK(cpus_within_cgroup(root, "4:cpu,cpuacct:/free\n", 16) == 16);
    CHECK(cpus_within_cgroup(root, "", 0) == 1);  // never below one
}

TEST_CASE("usable_cpus is at least one and at most the machine's") {
    const unsigned n = citygate::usable_cpus();
    CHECK(n >= 1);
    CHECK(n <= std::max(1u, std::thread::hardware_concurrency()));
}

TEST_CASE("a cgroup memory limit bounds the memory, v2 memory.max and v1 limit_in_bytes") {
    TempDir dir;
    const auto root = dir.path();
    const std::uint64_t machine = std::uint64_t{24} << 30;
    write(root / "memory.max", "max\n");
    write(root / "kubepods/memory.max", "8589934592\n");       // 8 GiB
    write(root / "kubepods/pod1/memory.max", "1073741824\n");  // limits.memory 1Gi
    write(root / "kubepods/pod1/c1/memory.max", "max\n");
    CHECK(citygate::memory_within_cgroup(root, "0::/kubepods/pod1/c1\n", machine) == 1 << 30);
    CHECK(citygate::memory_within_cgroup(root, "0::/\n", machine) == machine);
    CHECK(citygate::memory_within_cgroup(root, "0::/kubepods/pod1\n", 512 << 20) == 512 << 20);
    write(root / "bad/memory.max", "lots\n");
    CHECK(citygate::memory_within_cgroup(root, "0::/bad\n", machine) == machine);

    write(root / "memory/docker/abc/memory.limit_in_bytes", "2147483648\n");
    write(root / "memory/free/memory.limit_in_bytes", "9223372036854771712\n");  // unlimited
    CHECK(citygate::memory_within_cgroup(root, "4:cpu,cpuacct:/x\n12:memory:/docker/abc\n",
                                         machine) == std::uint64_t{2} << 30);
    CHECK(citygate::memory_within_cgroup(root, "12:memory:/free\n", machine) == machine);
}

TEST_CASE("memory_limit_bytes is the machine's memory or less") {
    const std::uint64_t limit = citygate::memory_limit_bytes();
    CHECK(limit > 0);
    std::ifstream meminfo("/proc/meminfo");
    std::string name;
    std::uint64_t kib = 0;
    meminfo >> name >> kib;
    REQUIRE(name == "MemTotal:");
    CHECK(limit <= kib * 1024);
}
