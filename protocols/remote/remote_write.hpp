// Prometheus remote write 1.0: decodes a prometheus.WriteRequest (already snappy-decompressed)
// into series views without copying a label or allocating per series after warm-up. Fields this
// receiver does not store (metadata, exemplars, native histograms) and unknown fields are skipped;
// histograms are counted so the caller can say so.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include <boost/system/error_code.hpp>

#include "protocols/remote/error.hpp"

namespace citygate::remote {

struct Label {
    std::string_view name;
    std::string_view value;
};

struct Sample {
    double value = 0;
    std::int64_t timestamp_ms = 0;
};

struct WriteLimits {
    std::size_t max_series = 1'000'000;       // time series in one request
    std::size_t max_samples = 10'000'000;     // samples in one request, all series together
    std::size_t max_labels_per_series = 256;  // labels of one series
};

// One TimeSeries: views into the decoder's arrays, which view into the request bytes.
struct SeriesView {
    std::span<const Label> labels;
    std::span<const Sample> samples;
};

// Reusable; not thread safe. The views it returns live until the next decode() or the request
// bytes go, whichever is first.
class WriteRequestDecoder {
  public:
    explicit WriteRequestDecoder(WriteLimits limits = {}) : limits_(limits) {}

    // Decodes `request` (the protobuf bytes). On error series() is empty.
    boost::system::error_code decode(std::string_view request);

    std::span<const SeriesView> series() const { return views_; }
    std::size_t samples() const { return samples_.size(); }
    // TimeSeries entries that carried native histograms (not stored by this receiver).
    std::size_t histograms() const { return histograms_; }
    std::size_t exemplars() const { return exemplars_; }

  private:
    struct Extent {
        std::size_t first_label, labels, first_sample, samples;
    };
    bool decode_series(std::string_view bytes, boost::system::error_code& ec);

    WriteLimits limits_;
    std::vector<Label> labels_;
    std::vector<Sample> samples_;
    std::vector<Extent> extents_;
    std::vector<SeriesView> views_;
    std::size_t histograms_ = 0;
    std::size_t exemplars_ = 0;
};

// Encodes a WriteRequest (labels as given, no metadata): the sender side, for tests and the
// benchmark's clients.
void encode_write_request(std::string& out, std::span<const SeriesView> series);

}  // namespace citygate::remote
