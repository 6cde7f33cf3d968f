// The standard process_* metrics Prometheus clients export (CPU, memory, descriptors, start
// time), read from /proc at scrape time. prometheus-cpp has no collector for them.
#pragma once

#include <vector>

#include <prometheus/metric_family.h>

namespace citygate::gateway {

// Appends process_cpu_seconds_total, process_open_fds, process_max_fds,
// process_virtual_memory_bytes, process_resident_memory_bytes and process_start_time_seconds.
// A figure /proc does not give (another OS, a restricted /proc) is left out.
// Also appends collect_allocator_metrics().
void collect_process_metrics(std::vector<prometheus::MetricFamily>& families);

// citygate_allocator_{heap,in_use,free,releasable,mmapped}_bytes: glibc malloc's own view of
// its memory, to tell live data from fragmentation when RSS grows.
void collect_allocator_metrics(std::vector<prometheus::MetricFamily>& families);

}  // namespace citygate::gateway
