// Prometheus' HTTP API wire format: the JSON envelope (status, data, errorType, error, warnings),
// values and timestamps written as Prometheus writes them, and its request parameters (times as
// seconds with fractions or RFC 3339, durations as seconds or "5m"; GET query string and POST
// form bodies together).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/http/http_server.hpp"
#include "promql/value.hpp"

namespace citygate::gateway {

// A float as Prometheus' JSON writes it (Go's strconv.FormatFloat(v, 'f', -1, 64)): the shortest
// fixed-notation text that reads back to the same double; "NaN", "+Inf", "-Inf".
void append_prom_float(std::string& out, double value);
// A timestamp in ms as seconds with up to three decimals (1435781451.781, 1435781451.5, 12).
void append_prom_time(std::string& out, std::int64_t ms);
// {"__name__":"up","job":"x"}, names in label order.
void append_prom_metric(std::string& out, const promql::Labels& labels);
// {"resultType":"vector","result":[...]} for any PromQL value.
void append_prom_value(std::string& out, const promql::Value& value);
// An upper bound of what append_prom_value writes for `value`, to charge a budget beforehand.
std::size_t prom_value_json_bytes(const promql::Value& value);

// Prometheus' error types and the status code each is answered with.
enum class PromError { bad_data, execution, timeout, canceled, internal, unavailable, not_found };
const char* prom_error_type(PromError error);  // "bad_data", ...
boost::beast::http::status prom_error_status(PromError error);

// {"status":"success","data":DATA[,"warnings":[...]]}.
HttpResponse prom_success(std::string_view data_json,
                          const std::vector<std::string>& warnings = {});
// {"status":"error","errorType":"...","error":"..."} with the type's status code.
HttpResponse prom_failure(PromError error, std::string_view message);

// The parameters of one request: the query string and, for a POST with
// application/x-www-form-urlencoded, its body (query string first, as Go's ParseForm).
class PromParams {
  public:
    // Nothing, with `error` set, when a parameter is not validly percent-encoded.
    static std::optional<PromParams> parse(const HttpRequest& request, std::string_view query,
                                           std::string& error);
    // The first value of `name`, or nothing.
    std::optional<std::string> get(std::string_view name) const;
    // Every value of `name` ("match[]" repeats), in order.
    std::vector<std::string> all(std::string_view name) const;
    bool has(std::string_view name) const { return get(name).has_value(); }

  private:
    std::multimap<std::string, std::string, std::less<>> values_;
    std::vector<std::pair<std::string, std::string>> ordered_;
};

// Whether a request's parameters are Prometheus' (`query=`, `match[]=`) rather than citygate's
// own API on the same path (`series=`, `match=`); a POST is always Prometheus'.
bool is_prometheus_request(const HttpRequest& request, std::string_view query);

// Prometheus' parseTime: seconds since the epoch with a fraction ("1700000000.5"), or RFC 3339
// ("2023-11-14T22:13:20.5Z", "...+01:00"); in ms. Nothing when neither.
std::optional<std::int64_t> parse_prom_time(std::string_view text);
// Prometheus' parseDuration: seconds with a fraction ("30", "0.5"), or a PromQL duration ("5m",
// "1h30m"); in ms. Nothing when neither (or negative).
std::optional<std::int64_t> parse_prom_duration(std::string_view text);

}  // namespace citygate::gateway
