// CPU time of the calling thread, for the writer's and the flush thread's busy figures.
#pragma once

#include <time.h>

#include <cstdint>

namespace citygate::storage::detail {

// CPU time of the calling thread: the writer's cost per point, unaffected by how many other
// threads share the cores (wall time would charge it for time it was not even running).
inline std::uint64_t thread_cpu_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
           static_cast<std::uint64_t>(ts.tv_nsec);
}

}  // namespace citygate::storage::detail
