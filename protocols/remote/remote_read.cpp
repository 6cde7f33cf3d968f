// prometheus.ReadRequest decoding and ReadResponse encoding (remote.proto field numbers in
// comments).
#include "protocols/remote/remote_read.hpp"

#include <bit>

#include "protocols/remote/wire.hpp"

namespace citygate::remote {
namespace {

// TimeSeries inside a QueryResult: 1 labels, 2 samples.
std::size_t series_body_size(const ResultSeries& series) {
    std::size_t size = 0;
    for (const Label& label : series.labels) {
        size += wire::length_field_size(wire::length_field_size(label.name.size()) +
                                        wire::length_field_size(label.value.size()));
    }
    std::size_t n = std::min(series.timestamps_ms.size(), series.values.size());
    for (std::size_t i = 0; i < n; ++i) {
        size += wire::length_field_size(
            9 + 1 + wire::varint_size(static_cast<std::uint64_t>(series.timestamps_ms[i])));
    }
    return size;
}

std::size_t result_body_size(std::span<const ResultSeries> series) {
    std::size_t size = 0;
    for (const ResultSeries& one : series)
        size += wire::length_field_size(series_body_size(one));
    return size;
}

boost::system::error_code decode_query(std::string_view bytes, Query& query,
                                       const ReadLimits& limits) {
    // Query: 1 start_timestamp_ms, 2 end_timestamp_ms, 3 matchers, 4 hints (skipped).
    wire::Reader reader(bytes);
    wire::Reader::Field field;
    while (reader.next(field)) {
        if (field.number == 1 || field.number == 2) {
            if (field.type != wire::WireType::varint) return errc::bad_wire_type;
            (field.number == 1 ? query.start_ms : query.end_ms) =
                static_cast<std::int64_t>(field.integer);
        } else if (field.number == 3) {
            if (field.type != wire::WireType::length) return errc::bad_wire_type;
            if (query.matchers.size() >= limits.max_matchers) return errc::too_many_labels;
            // LabelMatcher: 1 type, 2 name, 3 value.
            LabelMatcher matcher;
            wire::Reader inner(field.bytes);
            wire::Reader::Field part;
            while (inner.next(part)) {
                if (part.number == 1) {
                    if (part.type != wire::WireType::varint) return errc::bad_wire_type;
                    if (part.integer > 3) return errc::bad_matcher_type;
                    matcher.type = static_cast<LabelMatcher::Type>(part.integer);
                } else if (part.number == 2 || part.number == 3) {
                    if (part.type != wire::WireType::length) return errc::bad_wire_type;
                    (part.number == 2 ? matcher.name : matcher.value) = part.bytes;
                }
            }
            if (!inner.ok()) return inner.error();
            query.matchers.push_back(matcher);
        }
    }
    if (!reader.ok()) return reader.error();
    return {};
}

}  // namespace

bool ReadRequest::accepts_samples() const {
    if (accepted.empty()) return true;
    for (ResponseType type : accepted) {
        if (type == ResponseType::samples) return true;
    }
    return false;
}

boost::system::error_code decode_read_request(std::string_view request, ReadRequest& out,
                                              ReadLimits limits) {
    out = {};
    // ReadRequest: 1 queries, 2 accepted_response_types (repeated enum, packed or not).
    wire::Reader reader(request);
    wire::Reader::Field field;
    auto accept = [&out](std::uint64_t type) {
        // Types this server does not know are left out: they cannot be answered anyway.
        if (type <= 1)
            out.accepted.push_back(static_cast<ResponseType>(type));
        else
            out.accepted.push_back(static_cast<ResponseType>(0xFF));
    };
    while (reader.next(field)) {
        if (field.number == 1) {
            if (field.type != wire::WireType::length) return errc::bad_wire_type;
            if (out.queries.size() >= limits.max_queries) return errc::too_many_series;
            out.queries.emplace_back();
            if (auto ec = decode_query(field.bytes, out.queries.back(), limits)) return ec;
        } else if (field.number == 2) {
            if (field.type == wire::WireType::varint) {
                accept(field.integer);
            } else if (field.type == wire::WireType::length) {
                // Packed: varints back to back, read as fields of one number each.
                std::string_view packed = field.bytes;
                while (!packed.empty()) {
                    std::uint64_t value = 0;
                    std::size_t used = 0;
                    for (int shift = 0;; shift += 7) {
                        if (used == packed.size() || shift > 63) return errc::bad_varint;
                        auto byte = static_cast<std::uint8_t>(packed[used++]);
                        value |= static_cast<std::uint64_t>(byte & 0x7F) << shift;
                        if (!(byte & 0x80)) break;
                    }
                    packed.remove_prefix(used);
                    if (out.accepted.size() >= 16) return errc::too_many_labels;
                    accept(value);
                }
            } else {
                return errc::bad_wire_type;
            }
            if (out.accepted.size() > 16) return errc::too_many_labels;
        }
    }
    if (!reader.ok()) return reader.error();
    return {};
}

std::size_t query_result_size(std::span<const ResultSeries> series) {
    return wire::length_field_size(result_body_size(series));
}

void append_query_result(std::string& out, std::span<const ResultSeries> series) {
    // ReadResponse: 1 results (QueryResult); QueryResult: 1 timeseries (TimeSeries).
    out.reserve(out.size() + query_result_size(series));
    wire::put_key(out, 1, wire::WireType::length);
    wire::put_varint(out, result_body_size(series));
    for (const ResultSeries& one : series) {
        wire::put_key(out, 1, wire::WireType::length);
        wire::put_varint(out, series_body_size(one));
        for (const Label& label : one.labels) {
            wire::put_key(out, 1, wire::WireType::length);
            wire::put_varint(out, wire::length_field_size(label.name.size()) +
                                      wire::length_field_size(label.value.size()));
            wire::put_bytes(out, 1, label.name);
            wire::put_bytes(out, 2, label.value);
        }
        std::size_t n = std::min(one.timestamps_ms.size(), one.values.size());
        for (std::size_t i = 0; i < n; ++i) {
            auto ts = static_cast<std::uint64_t>(one.timestamps_ms[i]);
            wire::put_key(out, 2, wire::WireType::length);
            wire::put_varint(out, 9 + 1 + wire::varint_size(ts));
            wire::put_key(out, 1, wire::WireType::fixed64);
            wire::put_fixed64(out, std::bit_cast<std::uint64_t>(one.values[i]));
            wire::put_key(out, 2, wire::WireType::varint);
            wire::put_varint(out, ts);
        }
    }
}

}  // namespace citygate::remote
