// libFuzzer target for PayloadDecoder: the first byte picks the format, the line protocol
// precision and tight or default limits; the rest is the payload. Checks: an error appends and
// counts nothing; every stored value is finite, every name non-empty and within the length
// limit (and in the series key alphabet for the formats that map names), no time negative;
// a reused decoder gives the same answer twice; detect equals the format it detects.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "protocols/payload/payload_decoder.hpp"

using namespace citygate::payload;

namespace {

constexpr std::int64_t arrival = 1732262400000;

struct Outcome {
    boost::system::error_code ec;
    Readings readings;
    SkippedFields skipped;
};

Outcome run(PayloadDecoder& decoder, Format format, std::span<const std::uint8_t> payload,
            TimePrecision precision) {
    Outcome outcome;
    outcome.readings.resize(1);  // a reading already there must survive untouched
    outcome.readings[0].measurement = "sentinel";
    outcome.ec = decoder.decode(format, payload, "topic_level", arrival, outcome.readings,
                                outcome.skipped, precision);
    return outcome;
}

bool same(const Outcome& a, const Outcome& b) {
    if (a.ec != b.ec || a.readings.size() != b.readings.size()) return false;
    if (a.skipped.non_numeric != b.skipped.non_numeric ||
        a.skipped.bad_name != b.skipped.bad_name ||
        a.skipped.out_of_range != b.skipped.out_of_range)
        return false;
    for (std::size_t i = 0; i < a.readings.size(); ++i) {
        const Reading& x = a.readings[i];
        const Reading& y = b.readings[i];
        if (x.measurement != y.measurement || x.value != y.value ||
            x.timestamp_ms != y.timestamp_ms || !(x.tags == y.tags))
            return false;
    }
    return true;
}

bool is_key_name(const std::string& name) {
    auto letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
    if (name.empty() || !(letter(name[0]) || name[0] == '_')) return false;
    for (char c : name)
        if (!(letter(c) || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return false;
    return true;
}

void check(const Outcome& outcome, Format format) {
    if (outcome.readings.empty() || outcome.readings[0].measurement != "sentinel") std::abort();
    if (outcome.ec) {
        if (outcome.readings.size() != 1 || outcome.skipped.total() != 0) std::abort();
        return;
    }
    if (outcome.readings.size() < 2) std::abort();  // success means something stored
    for (std::size_t i = 1; i < outcome.readings.size(); ++i) {
        const Reading& reading = outcome.readings[i];
        if (!std::isfinite(reading.value) || reading.timestamp_ms < 0) std::abort();
        if (reading.measurement.empty() || reading.measurement.size() > 128) std::abort();
        if (format != Format::json && !is_key_name(reading.measurement)) std::abort();
        for (auto [name, value] : reading.tags) {
            if (format != Format::json && !is_key_name(std::string(name))) std::abort();
            if (value.empty() && format == Format::line) std::abort();
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::uint8_t config = data[0];
    static constexpr Format formats[] = {Format::json,   Format::senml,  Format::line,
                                         Format::number, Format::detect, Format::detect,
                                         Format::line,   Format::senml};
    const Format format = formats[config & 0x07];
    const TimePrecision precision = static_cast<TimePrecision>((config >> 3) & 0x03);
    const bool tight = (config & 0x20) != 0;
    std::span<const std::uint8_t> payload(data + 1, size - 1);

    static PayloadDecoder roomy;
    static PayloadDecoder strict(PayloadLimits{512, 4, 4});
    PayloadDecoder& decoder = tight ? strict : roomy;

    Outcome first = run(decoder, format, payload, precision);
    Format effective = format == Format::detect ? detect_format(payload) : format;
    check(first, effective);
    Outcome again = run(decoder, format, payload, precision);
    if (!same(first, again)) std::abort();
    if (format == Format::detect) {
        Outcome direct = run(decoder, effective, payload, precision);
        if (!same(first, direct)) std::abort();
    }
    return 0;
}
