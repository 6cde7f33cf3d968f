// Bearer-token and network checks for HTTP routes, and the admin call gate.
#include "gateway/http/http_auth.hpp"

#include <charconv>

#include "gateway/http/router.hpp"

namespace citygate::gateway {
namespace {

namespace http = boost::beast::http;

// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive).
std::optional<std::string_view> bearer_token(const HttpRequest& request) {
    auto header = request.find(http::field::authorization);
    if (header == request.end()) return std::nullopt;
    std::string_view value(header->value().data(), header->value().size());
    // "Bearer <token>", or "Token <token>" as InfluxDB 2 clients (Telegraf's
    // outputs.influxdb_v2) send it.
    auto has_scheme = [&value](std::string_view scheme) {
        if (value.size() <= scheme.size()) return false;
        for (std::size_t i = 0; i < scheme.size(); ++i) {
            if (std::tolower(static_cast<unsigned char>(value[i])) != scheme[i]) return false;
        }
        value.remove_prefix(scheme.size());
        return true;
    };
    if (!has_scheme("bearer ") && !has_scheme("token ")) return std::nullopt;
    while (!value.empty() && value.front() == ' ')
        value.remove_prefix(1);
    while (!value.empty() && value.back() == ' ')
        value.remove_suffix(1);
    if (value.empty()) return std::nullopt;
    return value;
}

HttpResponse unauthorized(std::string_view message, bool token_presented) {
    HttpResponse response = json_error(http::status::unauthorized, message);
    response.set(http::field::www_authenticate,
                 token_presented ? "Bearer realm=\"citygate\", error=\"invalid_token\""
                                 : "Bearer realm=\"citygate\"");
    return response;
}

}  // namespace

std::optional<Network> Network::parse(std::string_view text) {
    std::size_t slash = text.find('/');
    boost::system::error_code ec;
    auto base = boost::asio::ip::make_address(std::string(text.substr(0, slash)), ec);
    if (ec) return std::nullopt;
    unsigned bits = base.is_v4() ? 32 : 128;
    unsigned prefix = bits;
    if (slash != std::string_view::npos) {
        std::string_view digits = text.substr(slash + 1);
        auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), prefix);
        if (error != std::errc() || end != digits.data() + digits.size() || prefix > bits) {
            return std::nullopt;
        }
    }
    return Network{base, prefix};
}

bool Network::contains(const boost::asio::ip::address& peer) const {
    boost::asio::ip::address address = peer;
    if (address.is_v6() && address.to_v6().is_v4_mapped()) {
        address = boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, address.to_v6());
    }
    if (address.is_v4() != base.is_v4()) return false;
    auto bytes_of = [](const boost::asio::ip::address& a) {
        std::vector<unsigned char> bytes;
        if (a.is_v4()) {
            auto b = a.to_v4().to_bytes();
            bytes.assign(b.begin(), b.end());
        } else {
            auto b = a.to_v6().to_bytes();
            bytes.assign(b.begin(), b.end());
        }
        return bytes;
    };
    auto want = bytes_of(base), have = bytes_of(address);
    unsigned left = prefix;
    for (std::size_t i = 0; i < want.size() && left > 0; ++i) {
        unsigned take = left >= 8 ? 8 : left;
        auto mask = static_cast<unsigned char>(0xff00u >> take);
        if ((want[i] & mask) != (have[i] & mask)) return false;
        left -= take;
    }
    return true;
}

HttpAuth::HttpAuth(HttpAuthOptions options, prometheus::Registry* registry)
    : options_(std::move(options)) {
    if (!options_.tokens_file.empty()) {
        tokens_ = std::make_unique<TokenStore>(options_.tokens_file);
    }
    if (registry) {
        auto& family = prometheus::BuildCounter()
                           .Name("citygate_http_requests_refused_total")
                           .Help("HTTP requests refused before their handler ran, by reason")
                           .Register(*registry);
        unauthenticated_ = &family.Add({{"reason", "unauthenticated"}});
        forbidden_ = &family.Add({{"reason", "forbidden"}});
        rate_limited_ = &family.Add({{"reason", "rate_limited"}});
    }
}

std::optional<HttpResponse> HttpAuth::check(const HttpRequest& request,
                                            const boost::asio::ip::address& peer,
                                            Scope needed) const {
    if (needed == Scope::open) return std::nullopt;
    std::string_view target(request.target().data(), request.target().size());
    target = target.substr(0, target.find('?'));
    if (!tokens_) {
        if (needed == Scope::read) return std::nullopt;
        for (const Network& network : options_.admin_from) {
            if (network.contains(peer)) return std::nullopt;
        }
        if (forbidden_) forbidden_->Increment();
        CG_LOG_LIMITED(refusals_log_, warn).with("peer", peer.to_string())
            << "http: refused " << target << " from " << peer.to_string()
            << " (not in http.admin_from)";
        return json_error(http::status::forbidden,
                          std::string(scope_name(needed)) +
                              " endpoints answer only from http.admin_from (default loopback) "
                              "while no http.tokens_file is configured");
    }
    auto presented = bearer_token(request);
    std::optional<Token> token;
    if (presented) token = tokens_->find(*presented);
    if (!token) {
        if (unauthenticated_) unauthenticated_->Increment();
        CG_LOG_LIMITED(refusals_log_, warn).with("peer", peer.to_string())
            << "http: refused " << target << " from " << peer.to_string()
            << (presented ? " (unknown token)" : " (no bearer token)");
        return unauthorized(presented ? "unknown token" : "needs Authorization: Bearer <token>",
                            presented.has_value());
    }
    if (!(token->scopes & static_cast<unsigned>(needed))) {
        if (forbidden_) forbidden_->Increment();
        CG_LOG_LIMITED(refusals_log_, warn).with("peer", peer.to_string())
            << "http: refused " << target << " to token " << token->name << " (no "
            << scope_name(needed) << " scope)";
        return json_error(http::status::forbidden, "token \"" + token->name + "\" lacks the " +
                                                       scope_name(needed) + " scope");
    }
    return std::nullopt;
}

std::optional<std::string> HttpAuth::reload() {
    if (!tokens_) return std::nullopt;
    return tokens_->reload();
}

void HttpAuth::count_rate_limited() const {
    if (rate_limited_) rate_limited_->Increment();
}

HttpResponse CallGate::run(const std::function<HttpResponse()>& call) {
    using clock = std::chrono::steady_clock;
    {
        std::lock_guard lock(mutex_);
        auto now = clock::now();
        if (running_) {
            // Not a rate: the same call is in progress. 409 so a caller does not mistake it for
            // a limit to wait out; retrying after it finished is fine.
            if (on_refused_) on_refused_();
            HttpResponse response = json_error(
                http::status::conflict, "one is already running; try again once it has finished");
            response.set(http::field::retry_after, "1");
            return response;
        }
        if (last_start_ && now - *last_start_ < interval_) {
            auto wait = interval_ - (now - *last_start_);
            if (on_refused_) on_refused_();
            auto seconds = std::chrono::ceil<std::chrono::seconds>(wait).count();
            HttpResponse response =
                json_error(http::status::too_many_requests,
                           "at most one per " + std::to_string(interval_.count()) +
                               " ms; try again in " + std::to_string(seconds) + " s");
            response.set(http::field::retry_after, std::to_string(std::max<long long>(1, seconds)));
            return response;
        }
        running_ = true;
        last_start_ = now;
    }
    struct Done {
        CallGate& gate;
        ~Done() {
            std::lock_guard lock(gate.mutex_);
            gate.running_ = false;
        }
    } done{*this};
    return call();
}

}  // namespace citygate::gateway
