// Prometheus remote read: decodes a prometheus.ReadRequest (already snappy-decompressed) and
// encodes a ReadResponse of SAMPLES (one QueryResult per query, in order).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/system/error_code.hpp>

#include "protocols/remote/error.hpp"
#include "protocols/remote/remote_write.hpp"

namespace citygate::remote {

struct LabelMatcher {
    enum class Type : std::uint8_t { equal = 0, not_equal = 1, regex = 2, not_regex = 3 };
    Type type = Type::equal;
    std::string_view name;
    std::string_view value;
};

struct Query {
    std::int64_t start_ms = 0;  // inclusive
    std::int64_t end_ms = 0;    // inclusive
    std::vector<LabelMatcher> matchers;
};

enum class ResponseType : std::uint8_t { samples = 0, streamed_xor_chunks = 1 };

struct ReadRequest {
    std::vector<Query> queries;
    std::vector<ResponseType> accepted;  // empty: SAMPLES
    // Whether the client takes a SAMPLES answer (it lists none, or lists SAMPLES).
    bool accepts_samples() const;
};

struct ReadLimits {
    std::size_t max_queries = 64;
    std::size_t max_matchers = 64;
};

// Decodes `request`; views into its bytes. Unknown fields (hints) are skipped.
boost::system::error_code decode_read_request(std::string_view request, ReadRequest& out,
                                              ReadLimits limits = {});

// One series of a QueryResult: labels sorted by name, and its samples.
struct ResultSeries {
    std::vector<Label> labels;
    std::span<const std::int64_t> timestamps_ms;
    std::span<const double> values;
};

// Appends one QueryResult (field 1 of ReadResponse) holding `series` to `out`: call once per
// query, in query order, and `out` is the whole ReadResponse.
void append_query_result(std::string& out, std::span<const ResultSeries> series);
// The bytes append_query_result adds for `series`, to charge a budget before encoding.
std::size_t query_result_size(std::span<const ResultSeries> series);

}  // namespace citygate::remote
