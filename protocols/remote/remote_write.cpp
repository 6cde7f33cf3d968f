// prometheus.WriteRequest decoding (types.proto / remote.proto field numbers in comments).
#include "protocols/remote/remote_write.hpp"

#include "protocols/remote/wire.hpp"

namespace citygate::remote {
namespace {

class Category : public boost::system::error_category {
  public:
    const char* name() const noexcept override { return "remote"; }
    std::string message(int value) const override {
        switch (static_cast<errc>(value)) {
            case errc::truncated:
                return "protobuf: a field runs past the end of its message";
            case errc::bad_varint:
                return "protobuf: varint longer than 10 bytes";
            case errc::bad_wire_type:
                return "protobuf: unexpected wire type";
            case errc::too_many_series:
                return "too many time series in one request";
            case errc::too_many_samples:
                return "too many samples in one request";
            case errc::too_many_labels:
                return "too many labels on one series";
            case errc::bad_matcher_type:
                return "unknown label matcher type";
            case errc::bad_field_number:
                return "protobuf: field number 0";
        }
        return "remote: unknown error";
    }
};

}  // namespace

const boost::system::error_category& remote_category() {
    static const Category category;
    return category;
}

bool WriteRequestDecoder::decode_series(std::string_view bytes, boost::system::error_code& ec) {
    // TimeSeries: 1 labels (Label), 2 samples (Sample), 3 exemplars, 4 histograms.
    Extent extent{labels_.size(), 0, samples_.size(), 0};
    bool histogram = false;
    wire::Reader reader(bytes);
    wire::Reader::Field field;
    while (reader.next(field)) {
        if ((field.number == 1 || field.number == 2) && field.type != wire::WireType::length) {
            ec = errc::bad_wire_type;
            return false;
        }
        if (field.number == 1) {
            if (++extent.labels > limits_.max_labels_per_series) {
                ec = errc::too_many_labels;
                return false;
            }
            // Label: 1 name, 2 value.
            Label label;
            wire::Reader inner(field.bytes);
            wire::Reader::Field part;
            while (inner.next(part)) {
                if (part.number != 1 && part.number != 2) continue;
                if (part.type != wire::WireType::length) {
                    inner.fail(errc::bad_wire_type);
                    break;
                }
                (part.number == 1 ? label.name : label.value) = part.bytes;
            }
            if (!inner.ok()) {
                ec = inner.error();
                return false;
            }
            labels_.push_back(label);
        } else if (field.number == 2) {
            if (samples_.size() >= limits_.max_samples) {
                ec = errc::too_many_samples;
                return false;
            }
            // Sample: 1 value (double), 2 timestamp (int64 ms).
            Sample sample;
            wire::Reader inner(field.bytes);
            wire::Reader::Field part;
            while (inner.next(part)) {
                if (part.number == 1) {
                    if (part.type != wire::WireType::fixed64) {
                        inner.fail(errc::bad_wire_type);
                        break;
                    }
                    sample.value = wire::as_double(part.integer);
                } else if (part.number == 2) {
                    if (part.type != wire::WireType::varint) {
                        inner.fail(errc::bad_wire_type);
                        break;
                    }
                    sample.timestamp_ms = static_cast<std::int64_t>(part.integer);
                }
            }
            if (!inner.ok()) {
                ec = inner.error();
                return false;
            }
            samples_.push_back(sample);
            ++extent.samples;
        } else if (field.number == 3) {
            ++exemplars_;
        } else if (field.number == 4) {
            histogram = true;
        }
    }
    if (!reader.ok()) {
        ec = reader.error();
        return false;
    }
    if (histogram) ++histograms_;
    extents_.push_back(extent);
    return true;
}

boost::system::error_code WriteRequestDecoder::decode(std::string_view request) {
    labels_.clear();
    samples_.clear();
    extents_.clear();
    views_.clear();
    histograms_ = 0;
    exemplars_ = 0;
    boost::system::error_code ec;
    // WriteRequest: 1 timeseries (repeated TimeSeries), 3 metadata (skipped).
    wire::Reader reader(request);
    wire::Reader::Field field;
    while (reader.next(field)) {
        if (field.number != 1) continue;
        if (field.type != wire::WireType::length) {
            reader.fail(errc::bad_wire_type);
            break;
        }
        if (extents_.size() >= limits_.max_series) {
            ec = errc::too_many_series;
            break;
        }
        if (!decode_series(field.bytes, ec)) break;
    }
    if (!ec && !reader.ok()) ec = reader.error();
    if (ec) {
        labels_.clear();
        samples_.clear();
        extents_.clear();
        return ec;
    }
    // Views once every array stopped growing.
    views_.reserve(extents_.size());
    for (const Extent& e : extents_) {
        views_.push_back({std::span<const Label>(labels_.data() + e.first_label, e.labels),
                          std::span<const Sample>(samples_.data() + e.first_sample, e.samples)});
    }
    return {};
}

void encode_write_request(std::string& out, std::span<const SeriesView> series) {
    for (const SeriesView& one : series) {
        std::size_t size = 0;
        for (const Label& label : one.labels) {
            size += wire::length_field_size(wire::length_field_size(label.name.size()) +
                                            wire::length_field_size(label.value.size()));
        }
        for (const Sample& sample : one.samples) {
            size += wire::length_field_size(
                9 + 1 + wire::varint_size(static_cast<std::uint64_t>(sample.timestamp_ms)));
        }
        wire::put_key(out, 1, wire::WireType::length);
        wire::put_varint(out, size);
        for (const Label& label : one.labels) {
            wire::put_key(out, 1, wire::WireType::length);
            wire::put_varint(out, wire::length_field_size(label.name.size()) +
                                      wire::length_field_size(label.value.size()));
            wire::put_bytes(out, 1, label.name);
            wire::put_bytes(out, 2, label.value);
        }
        for (const Sample& sample : one.samples) {
            auto ts = static_cast<std::uint64_t>(sample.timestamp_ms);
            wire::put_key(out, 2, wire::WireType::length);
            wire::put_varint(out, 9 + 1 + wire::varint_size(ts));
            wire::put_key(out, 1, wire::WireType::fixed64);
            wire::put_fixed64(out, std::bit_cast<std::uint64_t>(sample.value));
            wire::put_key(out, 2, wire::WireType::varint);
            wire::put_varint(out, ts);
        }
    }
}

}  // namespace citygate::remote
