// --verify: proves that every reading the broker acknowledged is stored, by comparing what the
// deterministic city model says each acknowledged reading was with what the gateway's HTTP API
// returns. The comparison is pure (StoreVerifier); fetch_and_verify() does the HTTP.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/ip/tcp.hpp>

#include "city/city_model.hpp"

namespace citygate::loadgen {

struct VerifyResult {
    std::uint64_t series_expected = 0;
    std::uint64_t series_missing = 0;  // no point of an expected series came back
    std::uint64_t readings_expected = 0;
    std::uint64_t readings_missing = 0;
    std::uint64_t values_checked = 0;
    std::uint64_t value_mismatches = 0;
    std::vector<std::string> problems;  // the first ones, human-readable
    std::string error;                  // the gateway could not be asked
    bool ok() const { return error.empty() && readings_missing == 0 && value_mismatches == 0; }
};

class StoreVerifier {
  public:
    // Reading number `sequence` of a sensor is stamped start_ms + sequence * step_ms.
    StoreVerifier(const CityModel& city, std::int64_t start_ms, std::int64_t step_ms);

    // The sequences of a sensor's acknowledged readings (any order).
    void expect(std::size_t sensor, const std::vector<std::uint64_t>& sequences);
    // One stored series of the city; series of devices not expected are ignored.
    void observe(std::string_view measurement, std::string_view device,
                 const std::vector<std::pair<std::int64_t, double>>& points);
    // Time range to query: every expected timestamp lies in [first_ms, last_ms].
    std::int64_t first_ms() const { return first_ms_; }
    std::int64_t last_ms() const { return last_ms_; }
    // Compares and explains; `max_problems` bounds the list.
    VerifyResult finish(std::size_t max_problems = 50) const;

  private:
    struct SeriesState {
        std::size_t sensor = 0;
        std::size_t measurement = 0;
        std::vector<std::int64_t> expected;  // sorted timestamps
        std::vector<std::pair<std::int64_t, double>> stored;
    };
    const CityModel& city_;
    std::int64_t start_ms_, step_ms_;
    std::int64_t first_ms_ = INT64_MAX, last_ms_ = INT64_MIN;
    std::unordered_map<std::string, SeriesState> series_;  // "measurement device"
};

// Queries `GET /api/v1/query_range?series={district="..."}` for each district over the expected
// time range on `http` and feeds the answers to `verifier`. Blocking; HTTP/1.1 keep-alive.
VerifyResult fetch_and_verify(const boost::asio::ip::tcp::endpoint& http, StoreVerifier& verifier);

}  // namespace citygate::loadgen
