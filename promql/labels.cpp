// Label sets and matchers.
#include "promql/labels.hpp"

#include <re2/re2.h>

#include <algorithm>

namespace citygate::promql {

Labels::Labels(std::vector<Label> labels) {
    std::stable_sort(labels.begin(), labels.end(),
                     [](const Label& a, const Label& b) { return a.name < b.name; });
    std::vector<Label> unique;
    unique.reserve(labels.size());
    for (auto& label : labels) {
        if (!unique.empty() && unique.back().name == label.name) {
            unique.back() = std::move(label);
        } else {
            unique.push_back(std::move(label));
        }
    }
    std::erase_if(unique, [](const Label& l) { return l.value.empty(); });
    if (!unique.empty()) labels_ = std::make_shared<std::vector<Label>>(std::move(unique));
}

const std::vector<Label>& Labels::empty_list() {
    static const std::vector<Label> none;
    return none;
}

std::vector<Label>& Labels::mutate() {
    if (!labels_) {
        labels_ = std::make_shared<std::vector<Label>>();
    } else if (labels_.use_count() > 1) {
        labels_ = std::make_shared<std::vector<Label>>(*labels_);
    }
    return *labels_;
}

std::string_view Labels::get(std::string_view name) const {
    const auto& list = items();
    auto it = std::lower_bound(list.begin(), list.end(), name,
                               [](const Label& l, std::string_view n) { return l.name < n; });
    if (it != list.end() && it->name == name) return it->value;
    return {};
}

void Labels::set(std::string_view name, std::string_view value) {
    {
        const auto& list = items();
        auto it = std::lower_bound(list.begin(), list.end(), name,
                                   [](const Label& l, std::string_view n) { return l.name < n; });
        const bool present = it != list.end() && it->name == name;
        if (!present && value.empty()) return;  // nothing to change: stay shared
        if (present && it->value == value) return;
    }
    auto& list = mutate();
    auto it = std::lower_bound(list.begin(), list.end(), name,
                               [](const Label& l, std::string_view n) { return l.name < n; });
    if (it != list.end() && it->name == name) {
        if (value.empty()) {
            list.erase(it);
        } else {
            it->value = value;
        }
    } else {
        list.insert(it, Label{std::string(name), std::string(value)});
    }
    if (list.empty()) labels_.reset();
}

void Labels::erase(std::string_view name) {
    set(name, {});
}

Labels Labels::without_name() const {
    Labels out = *this;
    out.erase(metric_name_label);
    return out;
}

Labels Labels::keep(const std::vector<std::string>& names) const {
    Labels out;
    for (const auto& label : items()) {
        if (std::find(names.begin(), names.end(), label.name) != names.end()) {
            out.mutate().push_back(label);
        }
    }
    return out;
}

Labels Labels::drop(const std::vector<std::string>& names) const {
    Labels out;
    for (const auto& label : items()) {
        if (std::find(names.begin(), names.end(), label.name) == names.end()) {
            out.mutate().push_back(label);
        }
    }
    return out;
}

namespace {
// 0xff never occurs in UTF-8, so name and value boundaries cannot be forged by label content.
void append_key(std::string& out, const Label& label) {
    out += label.name;
    out += '\xfe';
    out += label.value;
    out += '\xff';
}
}  // namespace

std::string Labels::key() const {
    std::string out;
    for (const auto& label : items())
        append_key(out, label);
    return out;
}

std::string Labels::key_for(const std::vector<std::string>& names, bool on) const {
    std::string out;
    for (const auto& label : items()) {
        const bool listed = std::find(names.begin(), names.end(), label.name) != names.end();
        if (listed == on) append_key(out, label);
    }
    return out;
}

namespace {
std::string quote(std::string_view value) {
    std::string out = "\"";
    for (char c : value) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            default:
                out += c;
        }
    }
    out += '"';
    return out;
}
}  // namespace

std::string Labels::to_string() const {
    std::string out = "{";
    const auto& list = items();
    for (std::size_t i = 0; i < list.size(); ++i) {
        if (i > 0) out += ", ";
        out += list[i].name;
        out += '=';
        out += quote(list[i].value);
    }
    out += '}';
    return out;
}

Matcher::Matcher(Type type, std::string name, std::string value)
    : type_(type), name_(std::move(name)), value_(std::move(value)) {
    if (type_ == Type::regex || type_ == Type::not_regex) {
        RE2::Options options;
        options.set_log_errors(false);
        // Bounded memory for hostile patterns; RE2's matching time is linear anyway.
        options.set_max_mem(8 << 20);
        auto regex = std::make_shared<RE2>("^(?:" + value_ + ")$", options);
        if (!regex->ok()) {
            error_ = "error parsing regexp: " + regex->error();
        } else {
            regex_ = std::move(regex);
        }
    }
}

bool Matcher::matches(std::string_view value) const {
    switch (type_) {
        case Type::equal:
            return value == value_;
        case Type::not_equal:
            return value != value_;
        case Type::regex:
            return regex_ && RE2::FullMatch(value, *regex_);
        case Type::not_regex:
            return regex_ && !RE2::FullMatch(value, *regex_);
    }
    return false;
}

std::string Matcher::to_string() const {
    static constexpr const char* ops[] = {"=", "!=", "=~", "!~"};
    return name_ + ops[static_cast<int>(type_)] + quote(value_);
}

bool matches_all(const std::vector<Matcher>& matchers, const Labels& labels) {
    return std::all_of(matchers.begin(), matchers.end(),
                       [&](const Matcher& m) { return m.matches(labels.get(m.name())); });
}

bool is_valid_label_name(std::string_view name) {
    if (name.empty()) return false;
    for (std::size_t i = 0; i < name.size(); ++i) {
        const char c = name[i];
        const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        const bool digit = c >= '0' && c <= '9';
        if (!alpha && !(digit && i > 0)) return false;
    }
    return true;
}

}  // namespace citygate::promql
