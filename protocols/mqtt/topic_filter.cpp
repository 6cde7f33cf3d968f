// Topic filter matching, level by level, without allocating.
#include "protocols/mqtt/topic_filter.hpp"

namespace citygate::mqtt {

bool topic_matches(std::string_view filter, std::string_view topic) {
    if (!topic.empty() && topic.front() == '$' && !filter.empty() &&
        (filter.front() == '+' || filter.front() == '#')) {
        return false;
    }
    while (true) {
        std::size_t fslash = filter.find('/');
        std::string_view flevel = filter.substr(0, fslash);
        if (flevel == "#") return true;
        std::size_t tslash = topic.find('/');
        std::string_view tlevel = topic.substr(0, tslash);
        if (flevel != "+" && flevel != tlevel) return false;
        if (fslash == std::string_view::npos || tslash == std::string_view::npos) {
            // "a/#" also matches "a" (the parent level).
            return fslash == tslash ||
                   (tslash == std::string_view::npos && filter.substr(fslash + 1) == "#");
        }
        filter.remove_prefix(fslash + 1);
        topic.remove_prefix(tslash + 1);
    }
}

}  // namespace citygate::mqtt
