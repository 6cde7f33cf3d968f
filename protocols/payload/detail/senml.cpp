// RFC 8428 SenML JSON packs resolved into readings (base fields carried forward, §4.6).
#include <cmath>
#include <optional>

#include "protocols/payload/detail/json_document.hpp"
#include "protocols/payload/detail/names.hpp"
#include "protocols/payload/error.hpp"

namespace citygate::payload::detail {
namespace {

// §4.5.3: a resolved time below 2^28 s is relative to now (here: the arrival time).
constexpr double relative_time_limit = 268435456.0;
// The highest SenML version this decoder implements (RFC 8428 is version 10).
constexpr double supported_version = 10;

// §4.5.1: names use A-Z a-z 0-9 - : . / _ only.
bool is_senml_name_char(char c) {
    return is_ascii_letter(c) || is_ascii_digit(c) || c == '-' || c == ':' || c == '.' ||
           c == '/' || c == '_';
}

bool is_senml_name(std::string_view text) {
    for (char c : text)
        if (!is_senml_name_char(c)) return false;
    return true;
}

// The resolved name must also start with a letter or digit (§4.5.1).
bool is_resolved_name(std::string_view base, std::string_view name) {
    std::string_view whole_start = base.empty() ? name : base;
    if (whole_start.empty()) return false;
    char c = whole_start.front();
    return (is_ascii_letter(c) || is_ascii_digit(c)) && is_senml_name(base) && is_senml_name(name);
}

// Seconds (absolute, or relative when below 2^28) to ms since the epoch.
std::optional<std::int64_t> resolve_time(double seconds, std::int64_t arrival_ms) {
    if (!std::isfinite(seconds)) return std::nullopt;
    double ms = seconds * 1000.0;
    if (seconds < relative_time_limit) ms += static_cast<double>(arrival_ms);
    // 9.2e18 stays below 2^63 after rounding.
    if (!(ms >= 0 && ms < 9.2e18)) return std::nullopt;
    return std::llround(ms);
}

struct Record {
    std::optional<std::string_view> name, unit;
    std::optional<double> time, value, sum;
    bool other_value = false;  // vs, vb or vd, or a v that is not a number
};

struct Base {
    std::string_view name, unit;
    double time = 0, value = 0, sum = 0;
};

bool get_number(simdjson::dom::element value, double& out) {
    return value.is_number() && !value.get_double().get(out);
}

// Reads one record's fields, updating `base` with its base fields as it goes.
boost::system::error_code read_record(simdjson::dom::element element, Base& base, Record& record) {
    simdjson::dom::object object;
    if (element.get_object().get(object)) return errc::invalid_senml;
    for (auto [key, value] : object) {
        double number = 0;
        std::string_view text;
        if (key == "bn") {
            if (value.get_string().get(base.name)) return errc::invalid_senml;
        } else if (key == "bt") {
            if (!get_number(value, base.time)) return errc::invalid_senml;
        } else if (key == "bu") {
            if (value.get_string().get(base.unit)) return errc::invalid_senml;
        } else if (key == "bv") {
            if (!get_number(value, base.value)) return errc::invalid_senml;
        } else if (key == "bs") {
            if (!get_number(value, base.sum)) return errc::invalid_senml;
        } else if (key == "bver") {
            if (!get_number(value, number)) return errc::invalid_senml;
            if (number > supported_version) return errc::unsupported_senml;
        } else if (key == "n") {
            if (value.get_string().get(text)) return errc::invalid_senml;
            record.name = text;
        } else if (key == "u") {
            if (value.get_string().get(text)) return errc::invalid_senml;
            record.unit = text;
        } else if (key == "t") {
            if (!get_number(value, number)) return errc::invalid_senml;
            record.time = number;
        } else if (key == "v") {
            if (get_number(value, number)) {
                record.value = number;
            } else {
                record.other_value = true;
            }
        } else if (key == "s") {
            if (!get_number(value, number)) return errc::invalid_senml;
            record.sum = number;
        } else if (key == "vs" || key == "vb" || key == "vd") {
            record.other_value = true;
        } else if (!key.empty() && key.back() == '_') {
            // §4.4: a label ending in '_' must be understood, or the pack rejected.
            return errc::unsupported_senml;
        }
        // Other labels (ut, extensions) are ignored, as §4.4 allows.
    }
    return {};
}

}  // namespace

boost::system::error_code decode_senml(simdjson::dom::element root,
                                       std::string_view default_measurement,
                                       std::size_t max_records, std::int64_t arrival_ms,
                                       Readings& out, SkippedFields& skipped) {
    simdjson::dom::array pack;
    if (root.get_array().get(pack)) return errc::invalid_senml;
    if (pack.size() > max_records) return errc::too_many_records;

    const std::size_t first = out.size();
    auto fail = [&](boost::system::error_code ec) {
        out.resize(first);
        return ec;
    };
    SkippedFields found;
    Base base;
    for (simdjson::dom::element element : pack) {
        Record record;
        if (auto ec = read_record(element, base, record)) return fail(ec);
        if (record.other_value) ++found.non_numeric;
        // A record of base fields only (or only a string value) yields nothing.
        if (!record.value && !record.sum) continue;

        std::optional<std::int64_t> time =
            resolve_time(base.time + record.time.value_or(0), arrival_ms);
        if (!time) return fail(errc::bad_timestamp);

        // The measurement is built in place in the output, so a record costs no scratch string.
        const std::size_t at = out.size();
        std::string& measurement = out.emplace_back().measurement;
        std::string_view name = record.name.value_or(std::string_view());
        if (base.name.empty() && name.empty()) {
            // A nameless record is named as a plain number would be, by the topic.
            append_mapped_name(measurement, default_measurement);
            if (measurement.empty()) return fail(errc::no_measurement);
        } else if (is_resolved_name(base.name, name)) {
            append_mapped_name(measurement, base.name);
            append_mapped_name(measurement, name);
        }
        std::string_view unit = record.unit.value_or(base.unit);
        if (measurement.empty() || measurement.size() + 4 > max_name_length ||
            unit.size() > max_name_length) {
            found.bad_name += (record.value ? 1 : 0) + (record.sum ? 1 : 0);
            out.pop_back();
            continue;
        }
        if (!unit.empty()) out[at].tags.add("unit", unit);
        out[at].timestamp_ms = *time;

        if (record.sum) {
            double sum = base.sum + *record.sum;
            if (std::isfinite(sum)) {
                Reading reading = out[at];
                reading.measurement.append("_sum");
                reading.value = sum;
                out.push_back(std::move(reading));
            } else {
                ++found.out_of_range;
            }
        }
        if (record.value) {
            double value = base.value + *record.value;
            if (std::isfinite(value)) {
                out[at].value = value;
                continue;
            }
            ++found.out_of_range;
        }
        out.erase(out.begin() + static_cast<std::ptrdiff_t>(at));  // no value reading after all
    }
    if (out.size() == first) return errc::no_numeric_field;
    skipped.non_numeric += found.non_numeric;
    skipped.bad_name += found.bad_name;
    skipped.out_of_range += found.out_of_range;
    return {};
}

}  // namespace citygate::payload::detail
