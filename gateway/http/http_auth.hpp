// Who may call which HTTP route: bearer tokens with scopes when a token file is configured, else
// admin routes from trusted networks only (loopback by default); and a gate that rate-limits an
// expensive admin call.
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/registry.h>
#include <boost/asio/ip/address.hpp>

#include "gateway/http/http_server.hpp"
#include "gateway/http/tokens.hpp"
#include "gateway/ops/log.hpp"

namespace citygate::gateway {

// An address block, "10.0.0.0/8" or "::1/128"; a bare address is a block of one.
struct Network {
    boost::asio::ip::address base;
    unsigned prefix = 0;

    static std::optional<Network> parse(std::string_view text);
    // IPv4-mapped IPv6 peers (::ffff:a.b.c.d) are matched as IPv4.
    bool contains(const boost::asio::ip::address& peer) const;
};

struct HttpAuthOptions {
    std::filesystem::path tokens_file;  // empty: no tokens; reads open, admin by network
    // Without a token file, the only peers admin (and write) routes answer.
    std::vector<Network> admin_from = {*Network::parse("127.0.0.0/8"), *Network::parse("::1")};
};

class HttpAuth {
  public:
    // Loads the token file; throws std::runtime_error when it cannot be read or parsed.
    // `registry` (optional) gets citygate_http_requests_refused_total{reason}.
    explicit HttpAuth(HttpAuthOptions options, prometheus::Registry* registry = nullptr);

    // Nothing when a request from `peer` may call a route needing `needed`; else the answer:
    // 401 with WWW-Authenticate: Bearer for a missing or unknown token, 403 for a token without
    // the scope or (no token file) an admin call from outside admin_from. Thread safe.
    std::optional<HttpResponse> check(const HttpRequest& request,
                                      const boost::asio::ip::address& peer, Scope needed) const;

    // Re-reads the token file (nothing to do without one); on an error keeps the tokens it had
    // and returns the reason.
    std::optional<std::string> reload();

    bool has_tokens() const { return tokens_ != nullptr; }
    std::size_t token_count() const { return tokens_ ? tokens_->size() : 0; }

    // Counts a request refused with 429 (see CallGate).
    void count_rate_limited() const;

  private:
    HttpAuthOptions options_;
    std::unique_ptr<TokenStore> tokens_;
    prometheus::Counter* unauthenticated_ = nullptr;
    prometheus::Counter* forbidden_ = nullptr;
    prometheus::Counter* rate_limited_ = nullptr;
    mutable log::RateLimit refusals_log_{std::chrono::seconds(10)};
};

// One call at a time and at most one start per `interval`: a call while one runs is answered 409
// Conflict, one too soon after the last start 429 with Retry-After (whole seconds), neither
// running. Thread safe.
class CallGate {
  public:
    explicit CallGate(std::chrono::milliseconds interval, std::function<void()> on_refused = {})
        : interval_(interval), on_refused_(std::move(on_refused)) {}

    HttpResponse run(const std::function<HttpResponse()>& call);

  private:
    std::chrono::milliseconds interval_;
    std::function<void()> on_refused_;
    std::mutex mutex_;
    bool running_ = false;
    std::optional<std::chrono::steady_clock::time_point> last_start_;
};

}  // namespace citygate::gateway
