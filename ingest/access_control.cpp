// Credentials (PBKDF2-HMAC-SHA256 via OpenSSL), topic ACLs and their reload.
#include "ingest/access_control.hpp"

#include "protocols/mqtt/topic_filter.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <charconv>
#include <fstream>
#include <stdexcept>

#include <toml++/toml.h>

namespace citygate::ingest {
namespace {

std::string base64(std::span<const unsigned char> bytes) {
    std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes.data(),
                            static_cast<int>(bytes.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

std::optional<std::vector<unsigned char>> unbase64(std::string_view text) {
    if (text.empty() || text.size() % 4 != 0) return std::nullopt;
    std::vector<unsigned char> out(text.size() / 4 * 3);
    int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(text.data()),
                            static_cast<int>(text.size()));
    if (n < 0) return std::nullopt;
    std::size_t padding = text.ends_with("==") ? 2 : text.ends_with('=') ? 1 : 0;
    out.resize(static_cast<std::size_t>(n) - padding);
    return out;
}

struct ParsedHash {
    unsigned iterations = 0;
    std::vector<unsigned char> salt, hash;
};

std::optional<ParsedHash> parse_hash(std::string_view line) {
    constexpr std::string_view scheme = "pbkdf2-sha256$";
    if (!line.starts_with(scheme)) return std::nullopt;
    line.remove_prefix(scheme.size());
    std::size_t first = line.find('$'), second = line.find('$', first + 1);
    if (first == std::string_view::npos || second == std::string_view::npos) return std::nullopt;
    ParsedHash parsed;
    auto [end, ec] = std::from_chars(line.data(), line.data() + first, parsed.iterations);
    if (ec != std::errc() || end != line.data() + first || parsed.iterations < 1000) {
        return std::nullopt;
    }
    auto salt = unbase64(line.substr(first + 1, second - first - 1));
    auto hash = unbase64(line.substr(second + 1));
    if (!salt || !hash || salt->size() < 8 || hash->size() != 32) return std::nullopt;
    parsed.salt = std::move(*salt);
    parsed.hash = std::move(*hash);
    return parsed;
}

std::vector<unsigned char> pbkdf2(std::string_view password, std::span<const unsigned char> salt,
                                  unsigned iterations) {
    std::vector<unsigned char> out(32);
    if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), salt.data(),
                          static_cast<int>(salt.size()), static_cast<int>(iterations), EVP_sha256(),
                          static_cast<int>(out.size()), out.data()) != 1) {
        throw std::runtime_error("PBKDF2 failed");
    }
    return out;
}

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

std::string hash_password(std::string_view password, unsigned iterations) {
    unsigned char salt[16];
    if (RAND_bytes(salt, sizeof salt) != 1) throw std::runtime_error("RAND_bytes failed");
    auto hash = pbkdf2(password, salt, iterations);
    return "pbkdf2-sha256$" + std::to_string(iterations) + "$" + base64(salt) + "$" + base64(hash);
}

AccessControl::AccessControl(AccessOptions options) : options_(std::move(options)) {
    state_ = load();
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
                throw std::runtime_error(where + ": expected user:pbkdf2-sha256$...");
            }
            std::string hash = line.substr(colon + 1);
            if (!parse_hash(hash)) {
                throw std::runtime_error(where +
                                         ": not a pbkdf2-sha256 hash with >= 1000 "
                                         "iterations (make one with citygate "
                                         "--hash-password)");
            }
            state->hashes[line.substr(0, colon)] = std::move(hash);
        }
    }
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

bool AccessControl::verify(const State& state, const std::string& user, std::string_view password) {
    auto found = state.hashes.find(user);
    if (found == state.hashes.end()) return false;
    std::string key = cache_key(found->second, password);
    {
        std::lock_guard lock(cache_mutex_);
        auto cached = verified_.find(user);
        if (cached != verified_.end() &&
            CRYPTO_memcmp(cached->second.data(), key.data(), key.size()) == 0) {
            return true;
        }
    }
    auto parsed = parse_hash(found->second);
    if (!parsed) return false;
    auto computed = pbkdf2(password, parsed->salt, parsed->iterations);
    if (CRYPTO_memcmp(computed.data(), parsed->hash.data(), computed.size()) != 0) return false;
    std::lock_guard lock(cache_mutex_);
    verified_[user] = std::move(key);
    return true;
}

mqtt::reason_code AccessControl::authenticate(std::optional<std::string_view> username,
                                              std::optional<std::span<const std::uint8_t>> password,
                                              std::optional<std::string_view> certificate_user,
                                              bool from_loopback, Identity& identity) {
    auto state = std::atomic_load(&state_);
    if (certificate_user) {
        // A verified client certificate is the device's identity; a username, if sent, must not
        // claim another one.
        if (username && *username != *certificate_user) return mqtt::reason_code::not_authorized;
        identity = {std::string(*certificate_user), false};
        return mqtt::reason_code::success;
    }
    if (username) {
        std::string user(*username);
        std::string_view secret;
        if (password) secret = {reinterpret_cast<const char*>(password->data()), password->size()};
        if (!password || !verify(*state, user, secret)) {
            return mqtt::reason_code::bad_user_name_or_password;
        }
        identity = {std::move(user), false};
        return mqtt::reason_code::success;
    }
    bool allowed = options_.anonymous == AnonymousPolicy::always ||
                   (options_.anonymous == AnonymousPolicy::loopback && from_loopback);
    if (!allowed) return mqtt::reason_code::not_authorized;
    identity = {};
    return mqtt::reason_code::success;
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
