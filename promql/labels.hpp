// Label sets and label matchers: what a PromQL series is named by and what a selector asks for.
#pragma once

#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace re2 {
class RE2;
}

namespace citygate::promql {

inline constexpr std::string_view metric_name_label = "__name__";

struct Label {
    std::string name;
    std::string value;
    friend bool operator==(const Label&, const Label&) = default;
    friend auto operator<=>(const Label&, const Label&) = default;
};

// A label set, kept sorted by name with unique names and no empty values (an empty value is an
// absent label, as in Prometheus).
class Labels {
  public:
    Labels() = default;
    // Sorts `labels` and drops empty values; a later duplicate name wins.
    explicit Labels(std::vector<Label> labels);
    Labels(std::initializer_list<Label> labels) : Labels(std::vector<Label>(labels)) {}

    const std::vector<Label>& items() const { return labels_ ? *labels_ : empty_list(); }
    bool empty() const { return !labels_; }
    std::size_t size() const { return labels_ ? labels_->size() : 0; }
    // What copies of this set share until one changes (null when empty): equal identities mean
    // equal sets while both live.
    const void* identity() const { return labels_.get(); }
    // The value of `name`, or "" when absent.
    std::string_view get(std::string_view name) const;
    bool has(std::string_view name) const { return !get(name).empty(); }

    // Sets `name` (removes it when `value` is empty).
    void set(std::string_view name, std::string_view value);
    void erase(std::string_view name);
    Labels without_name() const;
    // Only the labels named in `names` (sorted or not).
    Labels keep(const std::vector<std::string>& names) const;
    // All labels but those in `names`.
    Labels drop(const std::vector<std::string>& names) const;

    // An unambiguous byte string of the set, usable as a map key.
    std::string key() const;
    // The key of only the named labels (`on`) or of all but them (`!on`).
    std::string key_for(const std::vector<std::string>& names, bool on) const;
    // Prometheus' text form: name{a="b", c="d"}; {} when empty.
    std::string to_string() const;

    friend bool operator==(const Labels& a, const Labels& b) {
        return a.labels_ == b.labels_ || a.items() == b.items();
    }
    friend auto operator<=>(const Labels& a, const Labels& b) { return a.items() <=> b.items(); }

  private:
    static const std::vector<Label>& empty_list();
    // The labels (null when there are none), shared by copies: results copy a series' labels
    // into every step's sample, so a copy is a reference count, and a change copies first.
    std::vector<Label>& mutate();
    std::shared_ptr<std::vector<Label>> labels_;
};

// One label matcher of a selector. Regexes are RE2, fully anchored like Prometheus'.
class Matcher {
  public:
    enum class Type { equal, not_equal, regex, not_regex };

    // Throws nothing; an invalid regex leaves the matcher invalid: check error().
    Matcher(Type type, std::string name, std::string value);

    Type type() const { return type_; }
    const std::string& name() const { return name_; }
    const std::string& value() const { return value_; }
    // Empty when the matcher is usable; otherwise why the regex does not compile.
    const std::string& error() const { return error_; }
    // Whether a label value (empty for an absent label) matches.
    bool matches(std::string_view value) const;
    std::string to_string() const;

  private:
    Type type_;
    std::string name_;
    std::string value_;
    std::shared_ptr<const re2::RE2> regex_;  // shared: matchers are copied into every selection
    std::string error_;
};

// Whether a label set satisfies every matcher.
bool matches_all(const std::vector<Matcher>& matchers, const Labels& labels);

// Prometheus label name syntax: [a-zA-Z_][a-zA-Z0-9_]*.
bool is_valid_label_name(std::string_view name);

}  // namespace citygate::promql
