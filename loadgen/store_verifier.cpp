// Comparison of acknowledged readings with stored points, and the HTTP queries behind it.
#include "loadgen/store_verifier.hpp"

#include <algorithm>
#include <cmath>

#include <simdjson.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

namespace citygate::loadgen {
namespace {

std::string series_name(std::string_view measurement, std::string_view device) {
    std::string key(measurement);
    key += ' ';
    key += device;
    return key;
}

std::string url_encode(std::string_view text) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : text) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

}  // namespace

StoreVerifier::StoreVerifier(const CityModel& city, std::int64_t start_ms, std::int64_t step_ms)
    : city_(city), start_ms_(start_ms), step_ms_(step_ms) {}

void StoreVerifier::expect(std::size_t sensor, const std::vector<std::uint64_t>& sequences) {
    if (sequences.empty()) return;
    const Sensor& s = city_.sensors()[sensor];
    auto names = measurements(s.type);
    std::vector<std::int64_t> stamps;
    stamps.reserve(sequences.size());
    for (auto sequence : sequences)
        stamps.push_back(start_ms_ + static_cast<std::int64_t>(sequence) * step_ms_);
    std::sort(stamps.begin(), stamps.end());
    first_ms_ = std::min(first_ms_, stamps.front());
    last_ms_ = std::max(last_ms_, stamps.back());
    for (std::size_t m = 0; m < names.size(); ++m) {
        SeriesState& state = series_[series_name(names[m], s.device)];
        state.sensor = sensor;
        state.measurement = m;
        state.expected.insert(state.expected.end(), stamps.begin(), stamps.end());
    }
}

void StoreVerifier::observe(std::string_view measurement, std::string_view device,
                            const std::vector<std::pair<std::int64_t, double>>& points) {
    auto found = series_.find(series_name(measurement, device));
    if (found == series_.end()) return;
    auto& stored = found->second.stored;
    stored.insert(stored.end(), points.begin(), points.end());
}

VerifyResult StoreVerifier::finish(std::size_t max_problems) const {
    VerifyResult result;
    auto problem = [&](std::string text) {
        if (result.problems.size() < max_problems) result.problems.push_back(std::move(text));
    };
    // Sorted by name so the report lists problems in a stable order.
    std::vector<const std::pair<const std::string, SeriesState>*> ordered;
    for (const auto& entry : series_)
        ordered.push_back(&entry);
    std::sort(ordered.begin(), ordered.end(), [](auto* a, auto* b) { return a->first < b->first; });
    for (const auto* entry : ordered) {
        const SeriesState& state = entry->second;
        auto stored = state.stored;
        std::sort(stored.begin(), stored.end());
        ++result.series_expected;
        result.readings_expected += state.expected.size();
        const Sensor& sensor = city_.sensors()[state.sensor];
        std::string label = std::string(measurements(sensor.type)[state.measurement]) +
                            "{device=\"" + sensor.device + "\",district=\"" + sensor.district +
                            "\",type=\"" + std::string(type_name(sensor.type)) + "\"}";
        if (stored.empty()) {
            ++result.series_missing;
            result.readings_missing += state.expected.size();
            problem("missing series " + label + ": none of " +
                    std::to_string(state.expected.size()) + " acknowledged readings stored");
            continue;
        }
        std::uint64_t missing = 0, mismatched = 0;
        std::int64_t first_missing = 0;
        for (std::int64_t ts : state.expected) {
            auto at = std::lower_bound(stored.begin(), stored.end(),
                                       std::pair<std::int64_t, double>(ts, -INFINITY));
            if (at == stored.end() || at->first != ts) {
                if (missing++ == 0) first_missing = ts;
                continue;
            }
            double want = city_.value(state.sensor, state.measurement, ts);
            ++result.values_checked;
            if (!(std::abs(at->second - want) <= 1e-9 * std::max(1.0, std::abs(want)))) {
                if (mismatched++ == 0) {
                    problem("wrong value in " + label + " at " + std::to_string(ts) + ": stored " +
                            std::to_string(at->second) + ", sent " + std::to_string(want));
                }
            }
        }
        result.readings_missing += missing;
        result.value_mismatches += mismatched;
        if (missing) {
            problem("missing readings in " + label + ": " + std::to_string(missing) + " of " +
                    std::to_string(state.expected.size()) + " (first at " +
                    std::to_string(first_missing) + ")");
        }
    }
    return result;
}

VerifyResult fetch_and_verify(const boost::asio::ip::tcp::endpoint& http, StoreVerifier& verifier) {
    namespace beast = boost::beast;
    VerifyResult failed;
    if (verifier.first_ms() > verifier.last_ms()) return verifier.finish();  // nothing acked
    boost::asio::io_context io;
    boost::asio::ip::tcp::socket socket(io);
    boost::system::error_code ec;
    socket.connect(http, ec);
    if (ec) {
        failed.error = "cannot connect to the gateway's HTTP API: " + ec.message();
        return failed;
    }
    beast::flat_buffer buffer;
    simdjson::dom::parser json;
    std::vector<std::pair<std::int64_t, double>> points;
    for (std::string_view district : districts()) {
        std::string selector = "{district=\"" + std::string(district) + "\"}";
        std::string target = "/api/v1/query_range?series=" + url_encode(selector) +
                             "&start=" + std::to_string(verifier.first_ms()) +
                             "&end=" + std::to_string(verifier.last_ms());
        beast::http::request<beast::http::empty_body> request(beast::http::verb::get, target, 11);
        request.set(beast::http::field::host, http.address().to_string());
        request.keep_alive(true);
        beast::http::write(socket, request, ec);
        beast::http::response_parser<beast::http::string_body> parser;
        parser.body_limit(std::uint64_t{4} << 30);
        if (!ec) beast::http::read(socket, buffer, parser, ec);
        if (ec) {
            failed.error = "query_range for " + std::string(district) + ": " + ec.message();
            return failed;
        }
        const auto& response = parser.get();
        if (response.result() != beast::http::status::ok) {
            failed.error = "query_range for " + std::string(district) + ": HTTP " +
                           std::to_string(response.result_int()) + " " + response.body();
            return failed;
        }
        simdjson::dom::element root;
        if (json.parse(response.body()).get(root)) {
            failed.error = "query_range for " + std::string(district) + ": not JSON";
            return failed;
        }
        simdjson::dom::array result;
        if (root["data"]["result"].get(result)) {
            failed.error = "query_range for " + std::string(district) + ": no data.result";
            return failed;
        }
        for (simdjson::dom::element series : result) {
            std::string_view name, device;
            if (series["metric"]["__name__"].get(name) || series["metric"]["device"].get(device))
                continue;  // not a city series
            points.clear();
            simdjson::dom::array values;
            if (series["values"].get(values)) continue;
            for (simdjson::dom::element pair : values) {
                std::int64_t ts = 0;
                double value = 0;
                simdjson::dom::array point = pair.get_array();
                if (point.at(0).get(ts) || point.at(1).get(value)) continue;
                points.emplace_back(ts, value);
            }
            verifier.observe(name, device, points);
        }
    }
    return verifier.finish();
}

}  // namespace citygate::loadgen
