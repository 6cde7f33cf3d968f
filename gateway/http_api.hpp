// The HTTP API over storage and the gateway's state: queries, health, readiness and metrics.
// Errors are JSON objects {"status":"error","error":"..."} with a 4xx/5xx status.
#pragma once

#include <atomic>
#include <optional>
#include <string>
#include <string_view>

#include "gateway/http_server.hpp"
#include "gateway/metrics.hpp"
#include "storage/engine.hpp"

namespace citygate::gateway {

class HttpApi {
  public:
    HttpApi(const storage::Engine& engine, Metrics& metrics, const std::atomic<bool>& ready,
            storage::QueryLimits limits = {});

    // Thread safe.
    HttpResponse handle(const HttpRequest& request) const;

  private:
    HttpResponse query_range(std::string_view query) const;
    HttpResponse aggregate(std::string_view query, storage::Selector selector, std::int64_t start,
                           std::int64_t end) const;
    HttpResponse series(std::string_view query) const;
    HttpResponse label_values(std::string_view name, std::string_view query) const;
    HttpResponse export_points(std::string_view query) const;
    HttpResponse bad_request(std::string_view message) const;
    std::optional<HttpResponse> range_parameters(std::string_view query,
                                                 storage::Selector& selector, std::int64_t& start,
                                                 std::int64_t& end) const;

    const storage::Engine& engine_;
    Metrics& metrics_;
    const std::atomic<bool>& ready_;
    storage::QueryLimits limits_;
};

// Decodes a percent-encoded query component ('+' is a space). Returns false on a bad escape.
bool url_decode(std::string_view in, std::string& out);

// Finds `name` in a query string and decodes its value; returns false when absent or malformed.
bool query_parameter(std::string_view query, std::string_view name, std::string& value);

// Appends `text` as a JSON string literal, quotes included.
void append_json_string(std::string& out, std::string_view text);

}  // namespace citygate::gateway
