// Payloads a simulated sensor publishes, in the formats the gateway decodes.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "loadgen/city_model.hpp"

namespace citygate::loadgen {

// {"ts":1732262400000,"pm25":35.2,"pm10":60.1}: shortest round-trip decimal for every value.
void format_json(std::int64_t ts_ms, std::span<const Reading> readings, std::string& out);

}  // namespace citygate::loadgen
