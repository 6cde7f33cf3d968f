// MQTT topic filter matching (MQTT 3.1.1 §4.7, 5.0 §4.7): the one place that decides whether a
// topic name falls under a filter, for ACLs, payload format rules and subscriptions.
#pragma once

#include <string_view>

namespace citygate::mqtt {

// True when `topic` matches `filter`: `+` matches exactly one level, a trailing `#` the rest
// (including the parent level: "a/#" matches "a"). Topics starting with '$' are not matched by a
// filter that starts with a wildcard (MQTT-4.7.2-1). Both are taken as valid (see validation.hpp).
bool topic_matches(std::string_view filter, std::string_view topic);

}  // namespace citygate::mqtt
