// Body encodings of the HTTP write and read paths: snappy block format (Prometheus remote write
// and read) and gzip (InfluxDB line protocol). Each decoder refuses output beyond `max_bytes`
// before producing it (snappy states its length up front; gzip is inflated in steps).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace citygate::remote {

enum class DecodeStatus { ok, corrupt, too_large };

// Snappy block format (not the framed stream format).
DecodeStatus snappy_uncompress(std::string_view in, std::size_t max_bytes, std::string& out);
void snappy_compress(std::string_view in, std::string& out);

// gzip (RFC 1952), several members back to back accepted.
DecodeStatus gzip_uncompress(std::string_view in, std::size_t max_bytes, std::string& out);
// For tests and benchmarks: gzip of `in` at the default level.
std::string gzip_compress(std::string_view in);

}  // namespace citygate::remote
