// Who may connect and what they may publish: anonymous policy, a credentials file of salted
// hashes (PBKDF2 for people, HMAC for device secrets: password_hash.hpp), TLS client
// certificates, and an ACL of topic patterns per user with %u (user) and %c (client id)
// substitution. Reloadable (SIGHUP) while connections keep running. Slow hashes run on a small
// verification pool, never on the caller's (I/O) thread; failures are throttled per source
// address and per user; unknown users are verified against a dummy hash of the same cost.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ingest/auth_throttle.hpp"
#include "ingest/password_hash.hpp"
#include "ingest/verification_pool.hpp"
#include "protocols/mqtt/types.hpp"

namespace prometheus {
class Counter;
class Gauge;
class Registry;
}  // namespace prometheus

namespace citygate::ingest {

enum class AnonymousPolicy { never, loopback, always };

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
    unsigned verify_threads = 1;             // the verification pool
    std::size_t verify_queue = 10'000;       // CONNECTs waiting for it; beyond: server busy
    // Failed attempts per source address and per user within failure_window before further
    // attempts are refused (0x8A) without hashing until the window ends; 0: no throttle.
    std::size_t max_failures = 10;
    std::chrono::milliseconds failure_window = std::chrono::seconds(60);
    std::size_t throttle_entries = 65'536;     // keys tracked per table (addresses, users)
    prometheus::Registry* registry = nullptr;  // citygate_auth_* metrics when set
};

// One CONNECT to decide; owns its strings so it can wait for the verification pool.
struct AuthRequest {
    std::optional<std::string> username;
    std::optional<std::string> password;
    std::optional<std::string> certificate_user;  // CN of a verified client certificate
    bool from_loopback = false;
    std::string source;  // the peer's address, the key of the per-source throttle
};

struct AuthResult {
    mqtt::reason_code verdict = mqtt::reason_code::not_authorized;
    Identity identity;
};

class AccessControl {
  public:
    // Loads the files; throws std::runtime_error naming the file and line on a bad one.
    explicit AccessControl(AccessOptions options);

    // Re-reads the files; on error keeps the previous state and returns the message. Thread safe.
    std::optional<std::string> reload();

    ~AccessControl();

    // Decides a CONNECT. Answers at once (returns the result; `done` is not called) when no slow
    // hash is needed: a certificate, anonymous, a throttled source or user, a password already
    // verified (cache), a cheap hmac-sha256 credential. Otherwise queues the PBKDF2 check on the
    // verification pool and returns nullopt; `done` is then called once, on a pool thread (or
    // never, if stop_verification() drops it first). A full queue answers server_busy at once.
    // Thread safe.
    std::optional<AuthResult> authenticate(AuthRequest request,
                                           std::function<void(AuthResult)> done);

    // The same, answered on the calling thread whatever it costs (tools and tests).
    // `certificate_user` is the verified client certificate's CN, if any. Thread safe.
    mqtt::reason_code authenticate(std::optional<std::string_view> username,
                                   std::optional<std::span<const std::uint8_t>> password,
                                   std::optional<std::string_view> certificate_user,
                                   bool from_loopback, Identity& identity);

    // Whether the client may publish to `topic`. Thread safe.
    bool may_publish(const Identity& identity, std::string_view client_id,
                     std::string_view topic) const;

    // Stops the verification pool: queued checks are dropped unanswered, later ones answered
    // server_busy at once. Call before whatever `done` callbacks post to goes away.
    void stop_verification();

    // Hashes computed so far per scheme, and PBKDF2 iterations in all (thread safe): what an
    // unknown user costs is visible here, for tests and the citygate_auth_* metrics.
    [[nodiscard]] std::uint64_t verifications(HashScheme scheme) const;
    [[nodiscard]] std::uint64_t pbkdf2_iterations() const;
    [[nodiscard]] std::size_t throttled_sources() const { return source_failures_.size(); }
    [[nodiscard]] std::size_t throttled_users() const { return user_failures_.size(); }

  private:
    struct Credential {
        std::string line;  // as in the file: the cache key covers it
        PasswordHash hash;
    };
    struct State {
        std::unordered_map<std::string, Credential> credentials;  // by user
        // What unknown users are checked against: the scheme most credentials use, at the
        // highest PBKDF2 cost in the file (pbkdf2 at 100k iterations for an empty file).
        Credential dummy;
        std::vector<AclRule> rules;  // empty: allow all
    };
    struct AuthMetrics;
    std::shared_ptr<const State> load() const;
    // The check proper: verifies against the user's hash (or the dummy) and records the outcome.
    AuthResult check_password(const State& state, const std::string& user,
                              const std::string& password, const std::string& source);
    // Before any hashing: a throttled source or user, or a password already verified.
    std::optional<AuthResult> quick_answer(const State& state, const AuthRequest& request);
    bool cached(const Credential& credential, const std::string& user,
                std::string_view password) const;
    void count_throttled(bool by_source);

    AccessOptions options_;
    std::shared_ptr<const State> state_;  // read with std::atomic_load
    // user -> SHA-256 of (hash line, password) for passwords already verified the slow way.
    mutable std::mutex cache_mutex_;
    std::unordered_map<std::string, std::string> verified_;

    FailureThrottle source_failures_;
    FailureThrottle user_failures_;
    std::array<std::atomic<std::uint64_t>, 2> verifications_{};
    std::atomic<std::uint64_t> pbkdf2_iterations_{0};
    std::unique_ptr<AuthMetrics> metrics_;
    VerificationPool pool_;  // last: its threads stop before the members they use go away
};

}  // namespace citygate::ingest
