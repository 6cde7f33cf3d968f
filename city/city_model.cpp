// City model: sensor placement and the reading function. Noise comes from a hash of (seed,
// sensor, measurement, time step), not from a stateful generator, so any subset of readings can
// be produced in any order and still match a full run.
#include "city/city_model.hpp"

#include <cmath>
#include <cstdio>
#include <numbers>

namespace citygate::loadgen {
namespace {

constexpr std::array<std::string_view, 16> kDistricts = {
    "huangpu", "xuhui",   "changning", "jingan",  "putuo",     "hongkou", "yangpu",   "minhang",
    "baoshan", "jiading", "pudong",    "jinshan", "songjiang", "qingpu",  "fengxian", "chongming"};

constexpr std::array<std::string_view, 3> kAir = {"pm25", "pm10", "no2"};
constexpr std::array<std::string_view, 2> kWeather = {"temperature", "humidity"};
constexpr std::array<std::string_view, 1> kNoise = {"noise"};
constexpr std::array<std::string_view, 1> kTraffic = {"traffic"};
constexpr std::array<std::string_view, 1> kWater = {"level"};
constexpr std::array<std::string_view, 1> kPower = {"power"};

// Per measurement: typical level, daily swing, noise, decimals reported, and the hour of the
// daily peak. Noise is a random walk around the cycle (real readings drift, they do not jump).
struct Profile {
    double base, swing, noise;
    int decimals;
    double peak_hour;
    double floor;
};

Profile profile(std::string_view m) {
    if (m == "pm25") return {35, 15, 0.4, 1, 8, 0};
    if (m == "pm10") return {60, 20, 0.6, 1, 8, 0};
    if (m == "no2") return {40, 18, 0.5, 1, 18, 0};
    if (m == "temperature") return {18, 5, 0.05, 1, 14, -20};
    if (m == "humidity") return {70, 15, 0.2, 0, 4, 0};
    if (m == "noise") return {55, 12, 0.5, 1, 17, 20};
    if (m == "traffic") return {40, 35, 2.0, 0, 18, 0};
    if (m == "level") return {3.2, 0.4, 0.005, 2, 3, 0};
    return {120, 60, 1.5, 1, 20, 0};  // power, kW
}

std::uint64_t mix(std::uint64_t x) {  // splitmix64 finaliser
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

double unit(std::uint64_t h) {
    return static_cast<double>(h >> 11) * 0x1.0p-53;
}

// A smooth random walk: the sum of a few hashed sine waves per series, so the noise at time t
// is a pure function of t yet consecutive readings are close.
double wander(std::uint64_t key, double t_seconds) {
    double v = 0;
    for (int k = 0; k < 4; ++k) {
        std::uint64_t h = mix(key * 31 + static_cast<std::uint64_t>(k));
        double period = 120.0 * (1 << (2 * k)) * (0.5 + unit(h));  // 1 min .. 4 h
        double phase = unit(mix(h)) * 2 * std::numbers::pi;
        v += std::sin(2 * std::numbers::pi * t_seconds / period + phase) / (k + 1);
    }
    return v;
}

SensorType type_for(std::uint64_t h) {
    // Shares of the fleet: air 30%, weather 15%, noise 15%, traffic 15%, water 10%, power 15%.
    unsigned p = static_cast<unsigned>(h % 100);
    if (p < 30) return SensorType::air;
    if (p < 45) return SensorType::weather;
    if (p < 60) return SensorType::noise;
    if (p < 75) return SensorType::traffic;
    if (p < 85) return SensorType::water;
    return SensorType::power;
}

}  // namespace

std::span<const std::string_view> districts() {
    return kDistricts;
}

std::string_view type_name(SensorType type) {
    switch (type) {
        case SensorType::air:
            return "air";
        case SensorType::weather:
            return "weather";
        case SensorType::noise:
            return "noise";
        case SensorType::traffic:
            return "traffic";
        case SensorType::water:
            return "water";
        case SensorType::power:
            return "power";
    }
    return "air";
}

std::span<const std::string_view> measurements(SensorType type) {
    switch (type) {
        case SensorType::air:
            return kAir;
        case SensorType::weather:
            return kWeather;
        case SensorType::noise:
            return kNoise;
        case SensorType::traffic:
            return kTraffic;
        case SensorType::water:
            return kWater;
        case SensorType::power:
            return kPower;
    }
    return kAir;
}

std::string topic(const Sensor& sensor) {
    std::string t = "city/";
    t += sensor.district;
    t += '/';
    t += type_name(sensor.type);
    t += '/';
    t += sensor.device;
    return t;
}

CityModel::CityModel(std::size_t sensors, std::uint64_t seed) : seed_(seed) {
    sensors_.reserve(sensors);
    for (std::size_t i = 0; i < sensors; ++i) {
        std::uint64_t h = mix(seed ^ mix(i));
        Sensor s;
        s.index = static_cast<std::uint32_t>(i);
        s.district = std::string(kDistricts[i % kDistricts.size()]);
        s.type = type_for(h);
        char device[32];
        std::snprintf(device, sizeof device, "%s-%06zu", std::string(type_name(s.type)).c_str(), i);
        s.device = device;
        sensors_.push_back(std::move(s));
    }
}

double CityModel::value(std::size_t sensor, std::size_t measurement, std::int64_t ts_ms) const {
    const Sensor& s = sensors_[sensor];
    auto name = measurements(s.type)[measurement];
    Profile p = profile(name);
    std::uint64_t key = mix(seed_ ^ mix(sensor * 8 + measurement));
    double t = static_cast<double>(ts_ms) / 1000.0;
    double hour = std::fmod(t / 3600.0 + 8.0, 24.0);  // Shanghai is UTC+8
    double level = p.base * (0.8 + 0.4 * unit(key));  // sensors differ by location
    double cycle = p.swing * std::cos(2 * std::numbers::pi * (hour - p.peak_hour) / 24.0);
    double v = level + cycle + p.noise * 4 * wander(key, t);
    v = std::max(v, p.floor);
    double scale = std::pow(10.0, p.decimals);
    // m / scale: the value a sensor reporting `decimals` digits sends, exact in decimal.
    return std::round(v * scale) / scale;
}

void CityModel::readings(std::size_t sensor, std::int64_t ts_ms, std::vector<Reading>& out) const {
    auto names = measurements(sensors_[sensor].type);
    for (std::size_t m = 0; m < names.size(); ++m)
        out.push_back({names[m], value(sensor, m, ts_ms)});
}

std::uint64_t CityModel::points_between(std::int64_t start_ms, std::int64_t end_ms,
                                        std::int64_t interval_ms) const {
    std::uint64_t per_step = 0;
    for (const auto& s : sensors_)
        per_step += measurements(s.type).size();
    std::uint64_t steps =
        static_cast<std::uint64_t>((end_ms - start_ms + interval_ms - 1) / interval_ms);
    return per_step * steps;
}

}  // namespace citygate::loadgen
