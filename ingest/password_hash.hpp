// Credential hash lines of the credentials file, one scheme per line:
//   pbkdf2-sha256$<iterations>$<salt base64>$<hash base64>  human passwords (slow on purpose)
//   hmac-sha256$<salt base64>$<mac base64>                   machine-generated device secrets
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace citygate::ingest {

enum class HashScheme : std::uint8_t { pbkdf2_sha256, hmac_sha256 };

// "pbkdf2-sha256" or "hmac-sha256": the line's prefix, also the metric label.
const char* hash_scheme_name(HashScheme scheme);

// Device secrets hashed with hmac-sha256 must be at least this long: the scheme is only safe
// for secrets with the entropy of a random key (see password_hash.cpp).
inline constexpr std::size_t minimum_device_secret_length = 16;

// A PBKDF2-HMAC-SHA256 hash line. Throws std::runtime_error when OpenSSL fails.
std::string hash_password(std::string_view password, unsigned iterations = 100'000);

// An HMAC-SHA256 hash line for a machine-generated device secret. Throws std::invalid_argument
// when the secret is shorter than minimum_device_secret_length, std::runtime_error when OpenSSL
// fails.
std::string hash_device_secret(std::string_view secret);

// One parsed hash line.
struct PasswordHash {
    HashScheme scheme = HashScheme::pbkdf2_sha256;
    unsigned iterations = 0;  // pbkdf2 only
    std::vector<unsigned char> salt, hash;

    // nullopt for an unknown scheme, a bad field, a salt under 8 bytes or pbkdf2 iterations
    // under 1000.
    static std::optional<PasswordHash> parse(std::string_view line);

    // A hash of the same scheme and cost that no password matches (random salt and hash), to
    // verify an unknown user against so that it takes as long as a known one. Throws
    // std::runtime_error when OpenSSL fails.
    static PasswordHash dummy(HashScheme scheme, unsigned iterations);

    // Whether `password` matches, compared in constant time. Costs what the scheme costs:
    // `iterations` HMACs for pbkdf2 (~22 ms at 100k), one for hmac-sha256 (~1 us). Thread safe.
    [[nodiscard]] bool verify(std::string_view password) const;
};

}  // namespace citygate::ingest
