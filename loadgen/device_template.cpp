// Template expansion for per-device credentials.
#include "loadgen/device_template.hpp"

namespace citygate::loadgen {

std::string expand_device_template(std::string_view pattern, const Sensor& sensor) {
    std::string out;
    out.reserve(pattern.size() + 16);
    while (!pattern.empty()) {
        std::size_t open = pattern.find('{');
        out += pattern.substr(0, open);
        if (open == std::string_view::npos) break;
        pattern.remove_prefix(open);
        std::size_t close = pattern.find('}');
        std::string_view name =
            close == std::string_view::npos ? std::string_view{} : pattern.substr(1, close - 1);
        if (name == "device") {
            out += sensor.device;
        } else if (name == "district") {
            out += sensor.district;
        } else if (name == "type") {
            out += type_name(sensor.type);
        } else if (name == "index") {
            out += std::to_string(sensor.index);
        } else {
            out += '{';
            pattern.remove_prefix(1);
            continue;
        }
        pattern.remove_prefix(close + 1);
    }
    return out;
}

}  // namespace citygate::loadgen
