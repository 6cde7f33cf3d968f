// InfluxDB line protocol: measurement[,tag=value...] field=value[,field=value...] [timestamp],
// one point per line, parsed in one pass without copying the payload.
#include <array>
#include <charconv>
#include <cmath>
#include <limits>
#include <optional>

#include "protocols/payload/detail/names.hpp"
#include "protocols/payload/detail/text_formats.hpp"
#include "protocols/payload/error.hpp"

namespace citygate::payload::detail {
namespace {

bool is_boolean(std::string_view token) {
    for (std::string_view literal :
         {"t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"}) {
        if (token == literal) return true;
    }
    return false;
}

// Removes the escapes of a measurement, tag or field key, or tag value: a backslash before a
// character in `special` (always including the backslash) stands for that character; before
// any other character it is itself.
void unescape(std::string_view raw, std::string_view special, std::string& out) {
    if (raw.find('\\') == std::string_view::npos) {
        out.assign(raw);  // most names and values have no escapes
        return;
    }
    out.clear();
    for (std::size_t i = 0; i < raw.size(); ++i) {
        if (raw[i] == '\\' && i + 1 < raw.size() &&
            (raw[i + 1] == '\\' || special.find(raw[i + 1]) != std::string_view::npos))
            ++i;
        out.push_back(raw[i]);
    }
}

// ms since the epoch from a timestamp (>= 0) in `precision`; nothing when it would overflow.
std::optional<std::int64_t> to_ms(std::int64_t stamp, TimePrecision precision) {
    switch (precision) {
        case TimePrecision::ns:
            return stamp / 1'000'000;
        case TimePrecision::us:
            return stamp / 1'000;
        case TimePrecision::ms:
            return stamp;
        case TimePrecision::s:
            if (stamp > std::numeric_limits<std::int64_t>::max() / 1000) return std::nullopt;
            return stamp * 1000;
    }
    return std::nullopt;
}

// A set of characters by table: the parser asks one for every character of a line.
struct CharSet {
    constexpr explicit CharSet(std::string_view chars) {
        for (char c : chars)
            bits[static_cast<unsigned char>(c)] = true;
    }
    constexpr bool contains(char c) const { return bits[static_cast<unsigned char>(c)]; }
    std::array<bool, 256> bits{};
};

// Where tokens end, and what a backslash escapes in them.
constexpr CharSet key_stops("=, \n\r");  // tag keys and values, field keys
constexpr CharSet key_escapes(",= ");
constexpr CharSet measurement_stops(", \n\r");  // the measurement, field values
constexpr CharSet measurement_escapes(", ");
constexpr CharSet stamp_stops(" \n\r");
constexpr CharSet no_escapes("");

enum class Value { number, non_numeric, out_of_range, invalid };

// Classifies an unquoted field value: float, integer (`i`), unsigned (`u`) or boolean.
Value parse_field_value(std::string_view token, double& number) {
    if (token.empty()) return Value::invalid;
    const char* first = token.data();
    const char* last = token.data() + token.size();
    char suffix = token.back();
    if (suffix == 'i' || suffix == 'u') {
        --last;
        std::from_chars_result result{};
        if (suffix == 'i') {
            std::int64_t integer = 0;
            result = std::from_chars(first, last, integer);
            number = static_cast<double>(integer);
        } else {
            std::uint64_t integer = 0;
            result = std::from_chars(first, last, integer);
            number = static_cast<double>(integer);
        }
        if (first == last || result.ptr != last) return Value::invalid;
        return result.ec == std::errc::result_out_of_range ? Value::out_of_range : Value::number;
    }
    if (is_boolean(token)) return Value::non_numeric;
    if (*first == '+' && last - first > 1 && *(first + 1) != '-') ++first;
    auto result = std::from_chars(first, last, number);
    if (result.ptr != last) return Value::invalid;
    if (result.ec == std::errc::result_out_of_range) return Value::out_of_range;
    if (result.ec != std::errc()) return Value::invalid;
    return std::isfinite(number) ? Value::number : Value::out_of_range;
}

class LineParser {
  public:
    LineParser(std::string_view text, TimePrecision precision, std::int64_t arrival_ms,
               Readings& out, SkippedFields& found, LineScratch& scratch)
        : text_(text),
          precision_(precision),
          arrival_ms_(arrival_ms),
          out_(out),
          found_(found),
          scratch_(scratch) {}

    // Parses one line starting at `pos_` (not blank, not a comment).
    boost::system::error_code line() {
        const std::size_t first = out_.size();
        std::string_view measurement = token(measurement_stops, measurement_escapes);
        if (measurement.empty()) return fail("expected a measurement");
        unescape(measurement, ", ", scratch_.unescaped);
        scratch_.measurement.clear();
        append_mapped_name(scratch_.measurement, scratch_.unescaped);

        scratch_.tags.clear();
        std::size_t tag_count = 0;
        while (peek() == ',') {
            ++pos_;
            if (auto ec = tag(tag_count)) return ec;
        }
        if (peek() != ' ') return fail("expected a space and the field set");
        skip_spaces();

        while (true) {
            if (auto ec = field()) return ec;
            if (peek() != ',') break;
            ++pos_;
        }

        std::int64_t ts = arrival_ms_;
        if (peek() == ' ') {
            skip_spaces();
            if (!at_line_end()) {
                std::size_t at = pos_;
                std::string_view stamp = token(stamp_stops, no_escapes);
                std::int64_t value = 0;
                auto result = std::from_chars(stamp.data(), stamp.data() + stamp.size(), value);
                if (result.ptr != stamp.data() + stamp.size() || stamp.empty()) {
                    pos_ = at;
                    return fail("invalid timestamp");
                }
                // Negative stamps are refused before they are scaled (a large one in seconds
                // would overflow on the way).
                std::optional<std::int64_t> ms;
                if (result.ec == std::errc() && value >= 0) ms = to_ms(value, precision_);
                if (!ms) {
                    pos_ = at;
                    return fail(errc::bad_timestamp, "timestamp negative or out of range");
                }
                ts = *ms;
                skip_spaces();
            }
        }
        if (peek() == '\r') ++pos_;
        if (!done() && peek() != '\n') return fail("unexpected text after the point");
        for (std::size_t i = first; i < out_.size(); ++i)
            out_[i].timestamp_ms = ts;
        return {};
    }

    bool done() const { return pos_ >= text_.size(); }
    char peek() const { return done() ? '\0' : text_[pos_]; }
    std::size_t position() const { return pos_; }
    void skip(std::size_t n) { pos_ += n; }
    void skip_spaces() {
        while (peek() == ' ' || peek() == '\t')
            ++pos_;
    }
    void skip_to_next_line() {
        while (!done() && text_[pos_] != '\n')
            ++pos_;
        if (!done()) ++pos_;
    }
    void start_line(std::size_t number) {
        line_number_ = number;
        line_start_ = pos_;
    }
    bool at_line_end() const { return done() || peek() == '\n' || peek() == '\r'; }

    // What went wrong where: "line 3, column 12: expected '='".
    void describe(std::string_view what) {
        std::size_t column = pos_ - line_start_ + 1;
        char digits[24];
        detail_->assign("line ");
        auto end = std::to_chars(digits, digits + sizeof digits, line_number_).ptr;
        detail_->append(digits, end);
        detail_->append(", column ");
        end = std::to_chars(digits, digits + sizeof digits, column).ptr;
        detail_->append(digits, end);
        detail_->append(": ");
        detail_->append(what);
    }
    void set_detail(std::string& detail) { detail_ = &detail; }

  private:
    boost::system::error_code fail(std::string_view what) { return fail(errc::invalid_line, what); }
    boost::system::error_code fail(errc code, std::string_view what) {
        describe(what);
        return code;
    }

    // The raw text up to the first unescaped character of `stops` (or a newline or the end).
    // A backslash escapes the next character when it is in `escapable` or is a backslash.
    std::string_view token(const CharSet& stops, const CharSet& escapable) {
        std::size_t begin = pos_;
        while (!done()) {
            char c = text_[pos_];
            if (c == '\\' && pos_ + 1 < text_.size() && text_[pos_ + 1] != '\n' &&
                (text_[pos_ + 1] == '\\' || escapable.contains(text_[pos_ + 1]))) {
                pos_ += 2;
                continue;
            }
            if (c == '\n' || stops.contains(c)) break;
            ++pos_;
        }
        return text_.substr(begin, pos_ - begin);
    }

    boost::system::error_code tag(std::size_t& tag_count) {
        std::string_view key = token(key_stops, key_escapes);
        if (key.empty()) return fail("expected a tag key");
        if (peek() != '=') return fail("expected '=' after the tag key");
        ++pos_;
        std::size_t value_at = pos_;
        std::string_view value = token(key_stops, key_escapes);
        if (value.empty()) return fail("expected a tag value");
        if (peek() == '=') return fail("unescaped '=' in a tag value");
        if (++tag_count > max_line_tags) return fail("too many tags");

        unescape(key, ",= ", scratch_.unescaped);
        std::string& name = scratch_.tag_key;
        name.clear();
        append_mapped_name(name, scratch_.unescaped);
        if (name.size() > max_name_length) return fail("tag key too long");
        unescape(value, ",= ", scratch_.unescaped);
        if (scratch_.unescaped.size() > max_tag_value_length) {
            pos_ = value_at;
            return fail("tag value too long");
        }
        if (scratch_.tags.find(name)) return fail("tag key given twice");
        scratch_.tags.add(name, scratch_.unescaped);
        return {};
    }

    boost::system::error_code field() {
        std::string_view key = token(key_stops, key_escapes);
        if (key.empty()) return fail("expected a field key");
        if (peek() != '=') return fail("expected '=' after the field key");
        ++pos_;

        if (peek() == '"') {
            // A string field: counted, never stored. It may hold escaped quotes and newlines.
            ++pos_;
            while (!done() && text_[pos_] != '"')
                pos_ += (text_[pos_] == '\\' && pos_ + 1 < text_.size()) ? 2 : 1;
            if (done()) return fail("unterminated string field");
            ++pos_;
            ++found_.non_numeric;
            return {};
        }
        std::size_t value_at = pos_;
        std::string_view token_text = token(measurement_stops, no_escapes);
        double number = 0;
        switch (parse_field_value(token_text, number)) {
            case Value::invalid:
                pos_ = value_at;
                return fail(token_text.empty() ? "expected a field value" : "invalid field value");
            case Value::non_numeric:
                ++found_.non_numeric;
                return {};
            case Value::out_of_range:
                ++found_.out_of_range;
                return {};
            case Value::number:
                break;
        }

        unescape(key, ",= ", scratch_.unescaped);
        Reading& reading = out_.emplace_back();
        reading.measurement.reserve(scratch_.measurement.size() + 1 + scratch_.unescaped.size());
        reading.measurement = scratch_.measurement;
        // `value` is InfluxDB's name for a point's only field: the measurement alone, as the
        // InfluxDB and Telegraf Prometheus outputs name it.
        if (scratch_.unescaped != "value") {
            reading.measurement.push_back('_');
            append_mapped_name(reading.measurement, scratch_.unescaped);
        }
        if (reading.measurement.size() > max_name_length) {
            out_.pop_back();
            ++found_.bad_name;
            return {};
        }
        reading.value = number;
        reading.tags = scratch_.tags;
        return {};
    }

    std::string_view text_;
    TimePrecision precision_;
    std::int64_t arrival_ms_;
    Readings& out_;
    SkippedFields& found_;
    LineScratch& scratch_;
    std::string* detail_ = nullptr;
    std::size_t pos_ = 0;
    std::size_t line_number_ = 0;
    std::size_t line_start_ = 0;
};

}  // namespace

boost::system::error_code decode_line_protocol(std::string_view text, TimePrecision precision,
                                               std::size_t max_lines, std::int64_t arrival_ms,
                                               Readings& out, SkippedFields& skipped,
                                               LineScratch& scratch, std::string& detail) {
    const std::size_t first = out.size();
    SkippedFields found;
    LineParser parser(text, precision, arrival_ms, out, found, scratch);
    parser.set_detail(detail);
    std::size_t line_number = 0;
    std::size_t lines = 0;
    while (!parser.done()) {
        ++line_number;
        parser.start_line(line_number);
        parser.skip_spaces();
        if (parser.peek() == '#' || parser.at_line_end()) {  // a comment or a blank line
            parser.skip_to_next_line();
            continue;
        }
        if (++lines > max_lines) {
            parser.describe("more lines than the limit");
            out.resize(first);
            return errc::too_many_lines;
        }
        if (auto ec = parser.line()) {
            out.resize(first);
            return ec;
        }
        parser.skip_to_next_line();
    }
    if (out.size() == first) return errc::no_numeric_field;
    skipped.non_numeric += found.non_numeric;
    skipped.bad_name += found.bad_name;
    skipped.out_of_range += found.out_of_range;
    return {};
}

boost::system::error_code decode_number(std::string_view text, std::string_view measurement,
                                        std::int64_t arrival_ms, Readings& out) {
    auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
    while (!text.empty() && is_space(text.front()))
        text.remove_prefix(1);
    while (!text.empty() && is_space(text.back()))
        text.remove_suffix(1);
    if (text.empty()) return errc::empty_payload;
    if (text.size() > 1 && text.front() == '+' && text[1] != '-') text.remove_prefix(1);
    double number = 0;
    auto result = std::from_chars(text.data(), text.data() + text.size(), number);
    if (result.ptr != text.data() + text.size()) return errc::not_a_number;
    if (result.ec == std::errc::result_out_of_range || !std::isfinite(number))
        return errc::invalid_number;
    if (result.ec != std::errc()) return errc::not_a_number;

    Reading& reading = out.emplace_back();
    append_mapped_name(reading.measurement, measurement);
    if (reading.measurement.empty() || reading.measurement.size() > max_name_length) {
        out.pop_back();
        return errc::no_measurement;
    }
    reading.value = number;
    reading.timestamp_ms = arrival_ms;
    return {};
}

}  // namespace citygate::payload::detail
