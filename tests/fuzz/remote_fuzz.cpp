// libFuzzer target for the remote write and read decoders: the first byte picks the message (even:
// WriteRequest, odd: ReadRequest) and tight or default limits; the rest is the message. Checks:
// an error leaves no series; every label and string views into the input; limits hold; a decoded
// WriteRequest encoded again decodes to the same series.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "protocols/remote/remote_read.hpp"
#include "protocols/remote/remote_write.hpp"

using namespace citygate::remote;

namespace {

bool inside(std::string_view part, std::string_view whole) {
    return part.empty() || (part.data() >= whole.data() &&
                            part.data() + part.size() <= whole.data() + whole.size());
}

void check(bool condition) {
    if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
    bool tight = data[0] & 2;
    if (data[0] & 1) {
        ReadRequest read;
        ReadLimits limits = tight ? ReadLimits{2, 3} : ReadLimits{};
        if (decode_read_request(input, read, limits)) return 0;
        check(read.queries.size() <= limits.max_queries);
        for (const Query& query : read.queries) {
            check(query.matchers.size() <= limits.max_matchers);
            for (const LabelMatcher& m : query.matchers)
                check(inside(m.name, input) && inside(m.value, input));
        }
        return 0;
    }
    WriteLimits limits = tight ? WriteLimits{3, 5, 2} : WriteLimits{};
    WriteRequestDecoder decoder(limits);
    if (decoder.decode(input)) {
        check(decoder.series().empty());
        return 0;
    }
    check(decoder.series().size() <= limits.max_series);
    check(decoder.samples() <= limits.max_samples);
    for (const SeriesView& series : decoder.series()) {
        check(series.labels.size() <= limits.max_labels_per_series);
        for (const Label& label : series.labels)
            check(inside(label.name, input) && inside(label.value, input));
    }
    std::string again;
    encode_write_request(again, decoder.series());
    WriteRequestDecoder second(limits);
    check(!second.decode(again));
    check(second.series().size() == decoder.series().size());
    for (std::size_t i = 0; i < second.series().size(); ++i) {
        const SeriesView& a = decoder.series()[i];
        const SeriesView& b = second.series()[i];
        check(a.labels.size() == b.labels.size() && a.samples.size() == b.samples.size());
        for (std::size_t j = 0; j < a.labels.size(); ++j)
            check(a.labels[j].name == b.labels[j].name && a.labels[j].value == b.labels[j].value);
        for (std::size_t j = 0; j < a.samples.size(); ++j) {
            check(a.samples[j].timestamp_ms == b.samples[j].timestamp_ms);
            check(std::memcmp(&a.samples[j].value, &b.samples[j].value, sizeof(double)) == 0);
        }
    }
    return 0;
}
