// Per-device text from a template, for client ids, usernames and passwords:
// "dev-{device}" -> "dev-air-000042". Placeholders: {device}, {district}, {type}, {index}.
#pragma once

#include <string>
#include <string_view>

#include "city/city_model.hpp"

namespace citygate::loadgen {

// Expands every placeholder; anything else, unknown braces included, is copied as is.
std::string expand_device_template(std::string_view pattern, const Sensor& sensor);

}  // namespace citygate::loadgen
