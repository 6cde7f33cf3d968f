// Payloads a simulated sensor publishes: JSON (what the gateway decodes today), SenML (RFC 8428)
// and InfluxDB line protocol, all with the shortest decimal that round-trips each value.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "city/city_model.hpp"

namespace citygate::loadgen {

enum class PayloadFormat { json, senml, line };

// "json", "senml", "line" <-> the enum; nothing for an unknown name.
std::optional<PayloadFormat> parse_payload_format(std::string_view name);
std::string_view payload_format_name(PayloadFormat format);

// {"ts":1732262400000,"pm25":35.2,"pm10":60.1}: shortest round-trip decimal for every value.
void format_json(std::int64_t ts_ms, std::span<const Reading> readings, std::string& out);

// RFC 8428 JSON: a base name per device and a base time in seconds, one record per reading:
// [{"bn":"urn:dev:city:air-000042:","bt":1732262400.5,"n":"pm25","u":"ug/m3","v":35.2},
//  {"n":"pm10","u":"ug/m3","v":60.1}]
void format_senml(const Sensor& sensor, std::int64_t ts_ms, std::span<const Reading> readings,
                  std::string& out);

// One line, the sensor type as measurement, topic levels as tags, readings as fields, time in
// nanoseconds: `air,district=pudong,device=air-000042 pm25=35.2,pm10=60.1 1732262400000000000`
void format_line_protocol(const Sensor& sensor, std::int64_t ts_ms,
                          std::span<const Reading> readings, std::string& out);

// Dispatches on `format`.
void format_payload(PayloadFormat format, const Sensor& sensor, std::int64_t ts_ms,
                    std::span<const Reading> readings, std::string& out);

// The SenML unit of a city measurement ("ug/m3", "Cel", "%RH", "dB", "count/min", "m", "kW").
std::string_view senml_unit(std::string_view measurement);

}  // namespace citygate::loadgen
