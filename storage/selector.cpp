// Canonical series keys and the Prometheus-style selector parser. Keys are what the index stores,
// so formatting must be stable: tags sorted by name, values quoted with \\ \" \n escaped.
#include "storage/selector.hpp"

#include "storage/detail/matcher.hpp"

#include <algorithm>

namespace citygate::storage {
namespace {

bool is_name_start(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}

// Measurements come from payload field names, which are not always Prometheus identifiers
// (`pm2.5`, `no-2`), so the key grammar admits '.' and '-' after the first character.
bool is_name_char(char c) {
    return is_name_start(c) || (c >= '0' && c <= '9') || c == '.' || c == '-';
}

void append_quoted(std::string& out, std::string_view value) {
    out.push_back('"');
    for (char c : value) {
        switch (c) {
            case '\\':
                out += "\\\\";
                break;
            case '"':
                out += "\\\"";
                break;
            case '\n':
                out += "\\n";
                break;
            default:
                out.push_back(c);
        }
    }
    out.push_back('"');
}

Status error_at(std::size_t position, std::string_view what) {
    return Status::error(
        Status::Code::invalid_argument,
        "selector: at position " + std::to_string(position) + ": " + std::string(what));
}

// A cursor over selector or key text; every parse step reports the position it failed at.
class Scanner {
  public:
    explicit Scanner(std::string_view text) : text_(text) {}

    void skip_space() {
        while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t'))
            ++pos_;
    }
    bool done() const { return pos_ >= text_.size(); }
    std::size_t position() const { return pos_; }
    char peek() const { return done() ? '\0' : text_[pos_]; }
    bool consume(char c) {
        if (peek() != c) return false;
        ++pos_;
        return true;
    }

    std::string name() {
        std::size_t begin = pos_;
        if (!done() && is_name_start(text_[pos_])) {
            ++pos_;
            while (!done() && is_name_char(text_[pos_]))
                ++pos_;
        }
        return std::string(text_.substr(begin, pos_ - begin));
    }

    // Parses a double-quoted string with \\, \" and \n escapes.
    Result<std::string> quoted() {
        if (!consume('"')) return error_at(pos_, "expected '\"'");
        std::string out;
        while (!done()) {
            char c = text_[pos_++];
            if (c == '"') return out;
            if (c != '\\') {
                out.push_back(c);
                continue;
            }
            if (done()) break;
            char e = text_[pos_++];
            if (e == 'n') {
                out.push_back('\n');
            } else if (e == '\\' || e == '"') {
                out.push_back(e);
            } else {
                return error_at(pos_ - 1, "unknown escape");
            }
        }
        return error_at(pos_, "unterminated string");
    }

  private:
    std::string_view text_;
    std::size_t pos_ = 0;
};

}  // namespace

bool is_valid_name(std::string_view name) {
    if (name.empty() || !is_name_start(name.front())) return false;
    return std::all_of(name.begin() + 1, name.end(), is_name_char);
}

std::string format_series_key(std::string_view measurement, std::vector<Tag> tags) {
    std::sort(tags.begin(), tags.end(),
              [](const Tag& a, const Tag& b) { return a.first < b.first; });
    std::string key(measurement);
    key.push_back('{');
    bool first = true;
    for (const auto& [name, value] : tags) {
        if (!first) key.push_back(',');
        first = false;
        key += name;
        key.push_back('=');
        append_quoted(key, value);
    }
    key.push_back('}');
    return key;
}

Result<std::pair<std::string, std::vector<Tag>>> parse_series_key(std::string_view key) {
    Scanner in(key);
    std::string measurement = in.name();
    if (measurement.empty()) return error_at(in.position(), "expected a measurement name");
    std::vector<Tag> tags;
    if (!in.consume('{')) return error_at(in.position(), "expected '{'");
    while (!in.consume('}')) {
        if (!tags.empty() && !in.consume(',')) return error_at(in.position(), "expected ','");
        std::string name = in.name();
        if (name.empty()) return error_at(in.position(), "expected a tag name");
        if (!in.consume('=')) return error_at(in.position(), "expected '='");
        auto value = in.quoted();
        if (!value.is_ok()) return value.status();
        tags.emplace_back(std::move(name), std::move(value.value()));
    }
    if (!in.done()) return error_at(in.position(), "trailing text after '}'");
    return std::pair{std::move(measurement), std::move(tags)};
}

Result<Selector> Selector::parse(std::string_view text) {
    Scanner in(text);
    Selector selector;
    in.skip_space();
    std::string measurement = in.name();
    if (!measurement.empty()) {
        selector.matchers.push_back({"__name__", Matcher::Op::equal, std::move(measurement)});
    }
    in.skip_space();
    if (in.consume('{')) {
        in.skip_space();
        bool need_comma = false;
        while (!in.consume('}')) {
            if (need_comma) {
                if (!in.consume(',')) return error_at(in.position(), "expected ',' or '}'");
                in.skip_space();
                if (in.consume('}')) break;  // a trailing comma is allowed, as in PromQL
            }
            std::string name = in.name();
            if (name.empty()) return error_at(in.position(), "expected a label name");
            in.skip_space();
            Matcher m;
            m.name = std::move(name);
            std::size_t op_position = in.position();
            if (in.consume('=')) {
                m.op = in.consume('~') ? Matcher::Op::regex : Matcher::Op::equal;
            } else if (in.consume('!')) {
                if (in.consume('=')) {
                    m.op = Matcher::Op::not_equal;
                } else if (in.consume('~')) {
                    m.op = Matcher::Op::not_regex;
                } else {
                    return error_at(in.position(), "expected '=' or '~' after '!'");
                }
            } else {
                return error_at(op_position, "expected one of =, !=, =~, !~");
            }
            in.skip_space();
            std::size_t value_position = in.position();
            auto value = in.quoted();
            if (!value.is_ok()) return value.status();
            m.value = std::move(value.value());
            if (m.op == Matcher::Op::regex || m.op == Matcher::Op::not_regex) {
                if (std::string why = detail::regex_error(m.value); !why.empty()) {
                    return error_at(value_position, "bad regex: " + why);
                }
            }
            selector.matchers.push_back(std::move(m));
            in.skip_space();
            need_comma = true;
        }
    } else if (selector.matchers.empty()) {
        return error_at(in.position(), "expected a measurement name or '{'");
    }
    in.skip_space();
    if (!in.done()) return error_at(in.position(), "unexpected trailing text");
    return selector;
}

}  // namespace citygate::storage
