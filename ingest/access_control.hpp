// Who may connect and what they may publish: anonymous policy, a credentials file of salted
// PBKDF2 hashes, TLS client certificates, and an ACL of topic patterns per user with %u (user)
// and %c (client id) substitution. Reloadable (SIGHUP) while connections keep running.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "protocols/mqtt/types.hpp"

namespace citygate::ingest {

enum class AnonymousPolicy { never, loopback, always };

// A PBKDF2-HMAC-SHA256 hash line: `pbkdf2-sha256$<iterations>$<salt base64>$<hash base64>`.
// Throws std::runtime_error when OpenSSL fails.
std::string hash_password(std::string_view password, unsigned iterations = 100'000);

struct AclRule {
    std::string user;                  // a user name, "*" for any authenticated user, "anonymous"
    std::vector<std::string> publish;  // topic filters, %u and %c substituted before matching
};

// What a client proved about itself when it connected.
struct Identity {
    std::string user;  // empty when anonymous
    bool anonymous = true;
};

struct AccessOptions {
    AnonymousPolicy anonymous = AnonymousPolicy::loopback;
    std::filesystem::path credentials_file;  // empty: no password users
    std::filesystem::path acl_file;          // empty: every client may publish anywhere
};

class AccessControl {
  public:
    // Loads the files; throws std::runtime_error naming the file and line on a bad one.
    explicit AccessControl(AccessOptions options);

    // Re-reads the files; on error keeps the previous state and returns the message. Thread safe.
    std::optional<std::string> reload();

    // Decides a CONNECT. `certificate_user` is the verified client certificate's CN, if any.
    // Thread safe; a first password check costs the hash's iterations, later ones for the same
    // user and password hit a cache.
    mqtt::reason_code authenticate(std::optional<std::string_view> username,
                                   std::optional<std::span<const std::uint8_t>> password,
                                   std::optional<std::string_view> certificate_user,
                                   bool from_loopback, Identity& identity);

    // Whether the client may publish to `topic`. Thread safe.
    bool may_publish(const Identity& identity, std::string_view client_id,
                     std::string_view topic) const;

  private:
    struct State {
        std::unordered_map<std::string, std::string> hashes;  // user -> hash line
        std::vector<AclRule> rules;                           // empty: allow all
    };
    std::shared_ptr<const State> load() const;
    bool verify(const State& state, const std::string& user, std::string_view password);

    AccessOptions options_;
    std::shared_ptr<const State> state_;  // read with std::atomic_load
    // user -> SHA-256 of (hash line, password) for passwords already verified the slow way.
    mutable std::mutex cache_mutex_;
    std::unordered_map<std::string, std::string> verified_;
};

}  // namespace citygate::ingest
