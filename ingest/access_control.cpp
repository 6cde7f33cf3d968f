// Credentials and their verification off the I/O threads, failure throttling, topic ACLs and
// their reload.
#include "ingest/access_control.hpp"

#include "protocols/mqtt/topic_filter.hpp"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <fstream>
#include <stdexcept>

#include <toml++/toml.h>

namespace citygate::ingest {
namespace {

std::string cache_key(const std::string& hash_line, std::string_view password) {
    std::string material = hash_line;
    material += '\0';
    material.append(password);
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(material.data()), material.size(), digest);
    return std::string(reinterpret_cast<const char*>(digest), sizeof digest);
}

std::string substitute(std::string_view filter, std::string_view user, std::string_view client) {
    std::string out;
    for (std::size_t i = 0; i < filter.size(); ++i) {
        if (filter[i] == '%' && i + 1 < filter.size() &&
            (filter[i + 1] == 'u' || filter[i + 1] == 'c')) {
            out += filter[i + 1] == 'u' ? user : client;
            ++i;
        } else {
            out += filter[i];
        }
    }
    return out;
}

bool has_wildcard(std::string_view text) {
    return text.find_first_of("+#") != std::string_view::npos;
}

}  // namespace

// citygate_auth_* metrics, registered when AccessOptions::registry is set.
struct AccessControl::AuthMetrics {
    explicit AuthMetrics(prometheus::Registry& registry)
        : throttled(prometheus::BuildCounter()
                        .Name("citygate_auth_throttled_total")
                        .Help("CONNECTs refused without hashing: too many recent failures from "
                              "the source address or for the user")
                        .Register(registry)),
          throttled_source(throttled.Add({{"by", "source"}})),
          throttled_user(throttled.Add({{"by", "user"}})),
          queue_full(prometheus::BuildCounter()
                         .Name("citygate_auth_queue_full_total")
                         .Help("CONNECTs refused (server busy): the verification queue was full")
                         .Register(registry)
                         .Add({})),
          verifications(prometheus::BuildCounter()
                            .Name("citygate_auth_verifications_total")
                            .Help("Password hashes computed, by scheme (cache hits excluded)")
                            .Register(registry)),
          pbkdf2(verifications.Add({{"scheme", "pbkdf2-sha256"}})),
          hmac(verifications.Add({{"scheme", "hmac-sha256"}})),
          queued(prometheus::BuildGauge()
                     .Name("citygate_auth_pending")
                     .Help("CONNECTs waiting for the verification pool")
                     .Register(registry)
                     .Add({})) {}

    prometheus::Family<prometheus::Counter>& throttled;
    prometheus::Counter& throttled_source;
    prometheus::Counter& throttled_user;
    prometheus::Counter& queue_full;
    prometheus::Family<prometheus::Counter>& verifications;
    prometheus::Counter& pbkdf2;
    prometheus::Counter& hmac;
    prometheus::Gauge& queued;
};

AccessControl::AccessControl(AccessOptions options)
    : options_(std::move(options)),
      source_failures_(options_.max_failures, options_.failure_window, options_.throttle_entries),
      user_failures_(options_.max_failures, options_.failure_window, options_.throttle_entries),
      metrics_(options_.registry ? std::make_unique<AuthMetrics>(*options_.registry) : nullptr),
      pool_(options_.verify_threads, options_.verify_queue) {
    state_ = load();
}

AccessControl::~AccessControl() {
    pool_.stop();
}

void AccessControl::stop_verification() {
    pool_.stop();
}

std::uint64_t AccessControl::verifications(HashScheme scheme) const {
    return verifications_[static_cast<std::size_t>(scheme)].load();
}

std::uint64_t AccessControl::pbkdf2_iterations() const {
    return pbkdf2_iterations_.load();
}

std::shared_ptr<const AccessControl::State> AccessControl::load() const {
    auto state = std::make_shared<State>();
    if (!options_.credentials_file.empty()) {
        std::ifstream in(options_.credentials_file);
        if (!in) throw std::runtime_error("cannot read " + options_.credentials_file.string());
        std::string line;
        for (int number = 1; std::getline(in, line); ++number) {
            if (line.empty() || line.front() == '#') continue;
            std::size_t colon = line.find(':');
            std::string where = options_.credentials_file.string() + ":" + std::to_string(number);
            if (colon == std::string::npos || colon == 0) {
                throw std::runtime_error(where +
                                         ": expected user:pbkdf2-sha256$... or "
                                         "user:hmac-sha256$...");
            }
            std::string text = line.substr(colon + 1);
            auto hash = PasswordHash::parse(text);
            if (!hash) {
                throw std::runtime_error(where +
                                         ": not a pbkdf2-sha256 hash with >= 1000 iterations "
                                         "nor an hmac-sha256 hash (make one with citygate "
                                         "--hash-password [--scheme device])");
            }
            state->credentials[line.substr(0, colon)] = {std::move(text), std::move(*hash)};
        }
    }
    std::size_t pbkdf2_count = 0;
    unsigned iterations = 0;
    for (const auto& [user, credential] : state->credentials) {
        if (credential.hash.scheme != HashScheme::pbkdf2_sha256) continue;
        ++pbkdf2_count;
        iterations = std::max(iterations, credential.hash.iterations);
    }
    // An empty file keeps the old default cost, so probing it learns nothing either.
    const bool devices = pbkdf2_count * 2 < state->credentials.size();
    state->dummy.hash =
        PasswordHash::dummy(devices ? HashScheme::hmac_sha256 : HashScheme::pbkdf2_sha256,
                            iterations ? iterations : 100'000);
    if (!options_.acl_file.empty()) {
        toml::table table;
        try {
            table = toml::parse_file(options_.acl_file.string());
        } catch (const toml::parse_error& e) {
            throw std::runtime_error(options_.acl_file.string() + ": " +
                                     std::string(e.description()));
        }
        const toml::array* rules = table["rule"].as_array();
        if (!rules)
            throw std::runtime_error(options_.acl_file.string() + ": expected [[rule]] entries");
        for (const toml::node& node : *rules) {
            const toml::table* rule = node.as_table();
            auto user = rule ? (*rule)["user"].value<std::string>() : std::nullopt;
            const toml::array* publish = rule ? (*rule)["publish"].as_array() : nullptr;
            if (!user || !publish) {
                throw std::runtime_error(
                    options_.acl_file.string() +
                    ": every [[rule]] needs user = \"...\" and publish = [...]");
            }
            AclRule parsed{*user, {}};
            for (const toml::node& filter : *publish) {
                auto text = filter.value<std::string>();
                if (!text || text->empty()) {
                    throw std::runtime_error(options_.acl_file.string() +
                                             ": publish filters are "
                                             "non-empty strings");
                }
                parsed.publish.push_back(*text);
            }
            state->rules.push_back(std::move(parsed));
        }
    }
    return state;
}

std::optional<std::string> AccessControl::reload() {
    try {
        auto fresh = load();
        std::atomic_store(&state_, fresh);
        std::lock_guard lock(cache_mutex_);
        verified_.clear();
        return std::nullopt;
    } catch (const std::exception& e) {
        return std::string(e.what());
    }
}

bool AccessControl::cached(const Credential& credential, const std::string& user,
                           std::string_view password) const {
    std::string key = cache_key(credential.line, password);
    std::lock_guard lock(cache_mutex_);
    auto found = verified_.find(user);
    return found != verified_.end() &&
           CRYPTO_memcmp(found->second.data(), key.data(), key.size()) == 0;
}

void AccessControl::count_throttled(bool by_source) {
    if (metrics_) (by_source ? metrics_->throttled_source : metrics_->throttled_user).Increment();
}

std::optional<AuthResult> AccessControl::quick_answer(const State& state,
                                                      const AuthRequest& request) {
    if (request.certificate_user) {
        // A verified client certificate is the device's identity; a username, if sent, must not
        // claim another one.
        if (request.username && *request.username != *request.certificate_user) {
            return AuthResult{mqtt::reason_code::not_authorized, {}};
        }
        return AuthResult{mqtt::reason_code::success, {*request.certificate_user, false}};
    }
    if (!request.username) {
        bool allowed = options_.anonymous == AnonymousPolicy::always ||
                       (options_.anonymous == AnonymousPolicy::loopback && request.from_loopback);
        if (!allowed) return AuthResult{mqtt::reason_code::not_authorized, {}};
        return AuthResult{mqtt::reason_code::success, {}};
    }
    const std::string& user = *request.username;
    auto now = FailureThrottle::clock::now();
    // Refused without hashing, whether or not the password would match: otherwise guessing
    // would go on at the cost of a hash per guess.
    if (source_failures_.blocked(request.source, now)) {
        count_throttled(true);
        return AuthResult{mqtt::reason_code::banned, {}};
    }
    if (user_failures_.blocked(user, now)) {
        count_throttled(false);
        return AuthResult{mqtt::reason_code::banned, {}};
    }
    if (!request.password) {
        // Nothing to verify, known user or not: the answer leaks nothing and costs nothing.
        source_failures_.record_failure(request.source, now);
        user_failures_.record_failure(user, now);
        return AuthResult{mqtt::reason_code::bad_user_name_or_password, {}};
    }
    auto found = state.credentials.find(user);
    const bool known = found != state.credentials.end();
    // The dummy's line is never cached; looking it up keeps unknown users on the same path.
    if (cached(known ? found->second : state.dummy, user, *request.password) && known) {
        return AuthResult{mqtt::reason_code::success, {user, false}};
    }
    return std::nullopt;
}

AuthResult AccessControl::check_password(const State& state, const std::string& user,
                                         const std::string& password, const std::string& source) {
    auto found = state.credentials.find(user);
    const bool known = found != state.credentials.end();
    const Credential& credential = known ? found->second : state.dummy;
    // An unknown user is verified against the dummy, of the same scheme and cost: the answer
    // takes as long as for a known user with a wrong password.
    const bool matches = credential.hash.verify(password) && known;
    const auto scheme = credential.hash.scheme;
    verifications_[static_cast<std::size_t>(scheme)].fetch_add(1);
    if (scheme == HashScheme::pbkdf2_sha256) {
        pbkdf2_iterations_.fetch_add(credential.hash.iterations);
    }
    if (metrics_)
        (scheme == HashScheme::pbkdf2_sha256 ? metrics_->pbkdf2 : metrics_->hmac).Increment();
    if (!matches) {
        auto now = FailureThrottle::clock::now();
        source_failures_.record_failure(source, now);
        user_failures_.record_failure(user, now);
        return {mqtt::reason_code::bad_user_name_or_password, {}};
    }
    user_failures_.forget(user);
    if (scheme == HashScheme::pbkdf2_sha256) {
        // Cheap hashes are not worth a cache entry: the cache costs a hash too.
        std::string key = cache_key(credential.line, password);
        std::lock_guard lock(cache_mutex_);
        verified_[user] = std::move(key);
    }
    return {mqtt::reason_code::success, {user, false}};
}

std::optional<AuthResult> AccessControl::authenticate(AuthRequest request,
                                                      std::function<void(AuthResult)> done) {
    auto state = std::atomic_load(&state_);
    if (auto answer = quick_answer(*state, request)) return answer;
    auto found = state->credentials.find(*request.username);
    const Credential& credential = found != state->credentials.end() ? found->second : state->dummy;
    if (credential.hash.scheme == HashScheme::hmac_sha256) {
        // About a microsecond: cheaper than a trip to another thread and back.
        return check_password(*state, *request.username, *request.password, request.source);
    }
    bool queued = pool_.try_submit(
        [this, state, request = std::move(request), done = std::move(done)]() mutable {
            if (metrics_) metrics_->queued.Decrement();
            done(check_password(*state, *request.username, *request.password, request.source));
        });
    if (!queued) {
        if (metrics_) metrics_->queue_full.Increment();
        return AuthResult{mqtt::reason_code::server_busy, {}};
    }
    if (metrics_) metrics_->queued.Increment();
    return std::nullopt;
}

mqtt::reason_code AccessControl::authenticate(std::optional<std::string_view> username,
                                              std::optional<std::span<const std::uint8_t>> password,
                                              std::optional<std::string_view> certificate_user,
                                              bool from_loopback, Identity& identity) {
    AuthRequest request;
    if (username) request.username.emplace(*username);
    if (password) {
        request.password.emplace(reinterpret_cast<const char*>(password->data()), password->size());
    }
    if (certificate_user) request.certificate_user.emplace(*certificate_user);
    request.from_loopback = from_loopback;
    auto state = std::atomic_load(&state_);
    auto answer = quick_answer(*state, request);
    if (!answer) {
        answer = check_password(*state, *request.username, *request.password, request.source);
    }
    if (answer->verdict == mqtt::reason_code::success) identity = std::move(answer->identity);
    return answer->verdict;
}

bool AccessControl::may_publish(const Identity& identity, std::string_view client_id,
                                std::string_view topic) const {
    auto state = std::atomic_load(&state_);
    if (state->rules.empty()) return true;
    for (const AclRule& rule : state->rules) {
        bool applies = identity.anonymous ? rule.user == "anonymous"
                                          : rule.user == "*" || rule.user == identity.user;
        if (!applies) continue;
        for (const std::string& pattern : rule.publish) {
            // A user or client id holding wildcards must not widen its own pattern.
            if ((pattern.find("%u") != std::string::npos && has_wildcard(identity.user)) ||
                (pattern.find("%c") != std::string::npos && has_wildcard(client_id))) {
                continue;
            }
            if (mqtt::topic_matches(substitute(pattern, identity.user, client_id), topic))
                return true;
        }
    }
    return false;
}

}  // namespace citygate::ingest
