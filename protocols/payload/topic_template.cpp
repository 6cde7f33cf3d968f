// Topic templates: literal levels and `{tag}` levels.
#include "protocols/payload/topic_template.hpp"

#include <algorithm>
#include <cctype>

namespace citygate::payload {
namespace {

bool valid_tag_name(std::string_view name) {
    return !name.empty() && std::all_of(name.begin(), name.end(), [](unsigned char c) {
        return std::isalnum(c) || c == '_';
    });
}

}  // namespace

std::optional<TopicTemplate> TopicTemplate::parse(std::string_view pattern, std::string* error) {
    auto fail = [&](std::string why) -> std::optional<TopicTemplate> {
        if (error) *error = "topic template '" + std::string(pattern) + "': " + std::move(why);
        return std::nullopt;
    };
    if (pattern.empty()) return fail("is empty");

    TopicTemplate result;
    result.pattern_ = pattern;
    std::size_t start = 0;
    while (true) {
        std::size_t slash = pattern.find('/', start);
        std::string_view level = pattern.substr(
            start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
        if (level.find_first_of("+#") != std::string_view::npos) {
            return fail("wildcards are not allowed; use {name} levels");
        }
        if (level.size() >= 2 && level.front() == '{' && level.back() == '}') {
            std::string_view name = level.substr(1, level.size() - 2);
            if (!valid_tag_name(name)) return fail("bad tag name '" + std::string(name) + "'");
            bool duplicate =
                std::any_of(result.levels_.begin(), result.levels_.end(),
                            [&](const Level& l) { return l.is_tag && l.text == name; });
            if (duplicate) return fail("tag '" + std::string(name) + "' appears twice");
            result.levels_.push_back({std::string(name), true});
        } else if (level.find_first_of("{}") != std::string_view::npos) {
            return fail("a level is either a literal or a whole {name}");
        } else {
            result.levels_.push_back({std::string(level), false});
        }
        if (slash == std::string_view::npos) break;
        start = slash + 1;
    }
    return result;
}

bool TopicTemplate::match(std::string_view topic,
                          std::vector<std::pair<std::string_view, std::string_view>>& tags) const {
    std::size_t mark = tags.size();
    std::size_t start = 0;
    for (std::size_t i = 0; i < levels_.size(); ++i) {
        std::size_t slash = topic.find('/', start);
        bool last = i + 1 == levels_.size();
        // The topic must have exactly as many levels as the template.
        if (last != (slash == std::string_view::npos)) {
            tags.resize(mark);
            return false;
        }
        std::string_view level = topic.substr(start, last ? std::string_view::npos : slash - start);
        const Level& expected = levels_[i];
        if (expected.is_tag ? level.empty() : level != expected.text) {
            tags.resize(mark);
            return false;
        }
        if (expected.is_tag) tags.emplace_back(expected.text, level);
        start = slash + 1;
    }
    return true;
}

}  // namespace citygate::payload
