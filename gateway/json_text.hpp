// JSON text for the gateway's hand-written responses and log lines.
#pragma once

#include <string>
#include <string_view>

namespace citygate::gateway {

// Appends `text` as a JSON string literal, quotes included; control characters are escaped.
void append_json_string(std::string& out, std::string_view text);

}  // namespace citygate::gateway
