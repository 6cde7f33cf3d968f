// Bearer tokens for the HTTP API: a TOML file of named tokens, each stored as a salted SHA-256
// hash with the scopes it grants, reloadable while the gateway runs.
//
//   [[token]]
//   name = "grafana"
//   hash = "sha256$<salt, 32 hex digits>$<SHA-256(salt || token), 64 hex digits>"
//   scopes = ["read"]
//
// Tokens are high-entropy secrets (`citygate --hash-token` refuses short ones), so one salted
// SHA-256 is enough: a stolen file does not give a token back, and checking costs microseconds.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace citygate::gateway {

// What a route needs. `open` routes need nothing (probes, Prometheus scrapes).
enum class Scope : std::uint8_t { open = 0, read = 1, write = 2, admin = 4 };
const char* scope_name(Scope scope);
std::optional<Scope> parse_scope(std::string_view name);

// The fewest characters a token must have (`--hash-token` refuses shorter ones).
inline constexpr std::size_t min_token_length = 16;

// A hash line for the token file: `sha256$<salt hex>$<hash hex>`, with a fresh random salt.
std::string hash_token(std::string_view token);

struct Token {
    std::string name;
    std::vector<unsigned char> salt;
    std::vector<unsigned char> hash;  // SHA-256(salt || token)
    unsigned scopes = 0;              // bits of Scope
};

// Parses a token file's text; `origin` names it in errors. Throws std::runtime_error naming the
// entry and what is wrong with it.
std::vector<Token> parse_token_file(std::string_view toml_text, std::string_view origin);

// The token table. Thread safe: lookups and reloads may run on any thread.
class TokenStore {
  public:
    // Loads `file`; throws std::runtime_error when it cannot be read or parsed.
    explicit TokenStore(std::filesystem::path file);

    // Reads the file again; on an error keeps the tokens it had and returns the reason.
    std::optional<std::string> reload();

    // The token that `presented` is, or nothing. Every entry is checked, each with a
    // constant-time comparison, so the time taken does not say which entry nearly matched.
    std::optional<Token> find(std::string_view presented) const;

    std::size_t size() const;

  private:
    std::filesystem::path file_;
    mutable std::mutex mutex_;
    std::shared_ptr<const std::vector<Token>> tokens_;
};

}  // namespace citygate::gateway
