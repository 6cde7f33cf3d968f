// The standard process_* metrics Prometheus clients export (CPU, memory, descriptors, start
// time), read from /proc at scrape time. prometheus-cpp has no collector for them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <prometheus/metric_family.h>

namespace citygate::gateway {

// Appends process_cpu_seconds_total, process_open_fds, process_max_fds,
// process_virtual_memory_bytes, process_resident_memory_bytes and process_start_time_seconds.
// A figure /proc does not give (another OS, a restricted /proc) is left out.
// Also appends collect_allocator_metrics().
void collect_process_metrics(std::vector<prometheus::MetricFamily>& families);

// citygate_allocator_{heap,in_use,free,releasable,mmapped}_bytes: glibc malloc's own view of
// its memory, to tell live data from fragmentation when RSS grows; and the trims below
// (citygate_allocator_trims_total, citygate_allocator_trimmed_bytes_total).
void collect_allocator_metrics(std::vector<prometheus::MetricFamily>& families);

// Resident memory of this process in bytes (/proc/self/statm); 0 when unreadable.
std::uint64_t resident_bytes();

// Gives the allocator's free memory back to the system (malloc_trim) when its arenas hold more
// than `threshold` bytes free. glibc returns only the top of each arena by itself, so memory
// freed below live blocks (a flushed head, a memtable, a query's answer) stays resident until a
// trim. Returns the resident bytes the trim released (0: no trim). Walks every arena under its
// lock (milliseconds): never on an I/O thread.
std::uint64_t trim_allocator(std::size_t threshold);

}  // namespace citygate::gateway
