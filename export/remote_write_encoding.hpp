// Stored series as a Prometheus remote-write 1.0 request: label names made legal for
// Prometheus, a protobuf prometheus.WriteRequest, snappy block compression. Pure code.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace citygate::exports {

// One series of a batch: the stored series key, its samples in time order, and the suffix its
// metric name gets (":avg_1m" for a rollup series, empty for raw samples).
struct ExportSeries {
    std::string key;  // canonical storage key, measurement{tag="v",...}
    std::string name_suffix;
    std::vector<std::int64_t> timestamps_ms;
    std::vector<double> values;
};

// A citygate measurement or tag name as Prometheus accepts it: metric names
// [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]*. Any other character ('.', '-',
// and ':' in a label name) becomes '_', and a leading digit gets a '_' in front. Two names that
// differ only there meet in one Prometheus name: the receiver then sees one series.
std::string prometheus_metric_name(std::string_view name);
std::string prometheus_label_name(std::string_view name);

// Samples in `series`, all together.
std::size_t sample_count(std::span<const ExportSeries> series);

// The uncompressed protobuf WriteRequest of `series`: per series `__name__` (measurement plus
// suffix) and its tags, labels sorted by name as remote write 1.0 requires. A key that does not
// parse is skipped and counted in `skipped` (storage only holds canonical keys).
void encode_write_request(std::span<const ExportSeries> series, std::string& protobuf,
                          std::size_t* skipped = nullptr);

// encode_write_request, then snappy: the request body as sent.
std::string encode_remote_write_body(std::span<const ExportSeries> series,
                                     std::size_t* skipped = nullptr);

}  // namespace citygate::exports
