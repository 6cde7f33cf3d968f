// Maps topic levels to tags: the template `city/{district}/{type}/{device}` turns the topic
// `city/pudong/air/a-0001` into district=pudong, type=air, device=a-0001.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace citygate::payload {

class TopicTemplate {
  public:
    // Parses a template: levels separated by '/', each either a literal or `{name}` with a
    // non-empty name of letters, digits and '_'. Returns nothing for a malformed template, with
    // the reason in `error` when given.
    static std::optional<TopicTemplate> parse(std::string_view pattern,
                                              std::string* error = nullptr);

    // Matches a topic name; on success appends (tag name, topic level) pairs, viewing into the
    // template and the topic, to `tags`. A level bound to a tag must not be empty.
    bool match(std::string_view topic,
               std::vector<std::pair<std::string_view, std::string_view>>& tags) const;

    const std::string& pattern() const { return pattern_; }

  private:
    struct Level {
        std::string text;  // the literal, or the tag name
        bool is_tag = false;
    };
    std::string pattern_;
    std::vector<Level> levels_;
};

}  // namespace citygate::payload
