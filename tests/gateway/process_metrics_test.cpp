// The allocator's figures and the trim that gives its free memory back to the system.
#include <catch2/catch.hpp>

#include <malloc.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "gateway/ops/process_metrics.hpp"

using namespace citygate::gateway;

namespace {

#if !defined(__SANITIZE_ADDRESS__)  // the test below reads them only without ASan
double counter(const std::vector<prometheus::MetricFamily>& families, const std::string& name) {
    for (const auto& family : families) {
        if (family.name == name && !family.metric.empty()) return family.metric[0].counter.value;
    }
    return -1;
}

double allocator_counter(const std::string& name) {
    std::vector<prometheus::MetricFamily> families;
    collect_allocator_metrics(families);
    return counter(families, name);
}
#endif

}  // namespace

TEST_CASE("a trim gives back memory freed between live blocks, and counts it") {
#if defined(__SANITIZE_ADDRESS__)
    // AddressSanitizer's allocator replaces glibc's: mallinfo2() and malloc_trim() see an empty
    // heap. The unsanitized gateway_tests run this.
    SUCCEED("not under AddressSanitizer");
#else
    const double trims_before = allocator_counter("citygate_allocator_trims_total");
    const double bytes_before = allocator_counter("citygate_allocator_trimmed_bytes_total");
    REQUIRE(trims_before >= 0);
    REQUIRE(bytes_before >= 0);

    // 64 MiB of 64 KiB blocks (below glibc's mmap threshold: in the heap), touched, then every
    // other one freed: 32 MiB free that glibc cannot give back by itself, live blocks between.
    constexpr std::size_t kBlock = 64 << 10, kBlocks = 1024;
    std::vector<std::unique_ptr<char[]> > blocks;
    for (std::size_t i = 0; i < kBlocks; ++i) {
        blocks.emplace_back(new char[kBlock]);
        std::memset(blocks.back().get(), 1, kBlock);
    }
    for (std::size_t i = 0; i < kBlocks; i += 2)
        blocks[i].reset();
    REQUIRE(::mallinfo2().fordblks >= kBlocks / 2 * kBlock);

    // Above the threshold nothing happens; below it the free pages leave the process.
    CHECK(trim_allocator(1ULL << 40) == 0);
    CHECK(allocator_counter("citygate_allocator_trims_total") == trims_before);
    const std::uint64_t released = trim_allocator(16 << 20);
    CHECK(released >= kBlocks / 2 * kBlock / 2);  // most of the 32 MiB, whole pages only
    CHECK(allocator_counter("citygate_allocator_trims_total") == trims_before + 1);
    CHECK(allocator_counter("citygate_allocator_trimmed_bytes_total") ==
          bytes_before + static_cast<double>(released));
#endif
}
