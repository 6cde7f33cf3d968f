// A deterministic simulated city: sensors spread over Shanghai's 16 districts, each of a type
// with its measurements, reading a daily cycle plus seeded noise at the sensor's precision. The
// load generator publishes it over MQTT; the storage benchmark ingests it directly.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace citygate::loadgen {

enum class SensorType { air, weather, noise, traffic, water, power };

// The 16 districts, in topic form (lower case, ASCII): "huangpu", ..., "jingan", ...
std::span<const std::string_view> districts();
std::string_view type_name(SensorType type);
// Measurement names of a type: air -> pm25, pm10, no2; weather -> temperature, humidity;
// noise -> noise; traffic -> traffic; water -> level; power -> power.
std::span<const std::string_view> measurements(SensorType type);

struct Sensor {
    std::uint32_t index = 0;
    std::string district;
    SensorType type = SensorType::air;
    std::string device;  // e.g. "air-000042", unique in the city
};

// `city/{district}/{type}/{device}`, matching the gateway's default topic template.
std::string topic(const Sensor& sensor);

struct Reading {
    std::string_view measurement;
    double value = 0;
};

class CityModel {
  public:
    // The same (sensors, seed) always gives the same city and the same readings.
    CityModel(std::size_t sensors, std::uint64_t seed);

    const std::vector<Sensor>& sensors() const { return sensors_; }

    // The readings of one sensor at a time (ms since the epoch), appended to `out`. A pure
    // function of (seed, sensor, measurement, time): calls may come in any order or thread.
    void readings(std::size_t sensor, std::int64_t ts_ms, std::vector<Reading>& out) const;
    double value(std::size_t sensor, std::size_t measurement, std::int64_t ts_ms) const;

    // Points the city produces over [start, end) at one reading per `interval_ms` per sensor.
    std::uint64_t points_between(std::int64_t start_ms, std::int64_t end_ms,
                                 std::int64_t interval_ms) const;

  private:
    std::uint64_t seed_;
    std::vector<Sensor> sensors_;
};

}  // namespace citygate::loadgen
