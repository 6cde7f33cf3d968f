// Token file parsing, salted SHA-256 hashes and constant-time lookup.
#include "gateway/http/tokens.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include <toml++/toml.h>

namespace citygate::gateway {
namespace {

constexpr std::size_t salt_bytes = 16;
constexpr std::size_t hash_bytes = 32;

std::string hex(const std::vector<unsigned char>& bytes) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string text;
    for (unsigned char byte : bytes) {
        text += digits[byte >> 4];
        text += digits[byte & 15];
    }
    return text;
}

std::optional<std::vector<unsigned char>> unhex(std::string_view text) {
    if (text.size() % 2) return std::nullopt;
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    std::vector<unsigned char> bytes;
    for (std::size_t i = 0; i < text.size(); i += 2) {
        int high = nibble(text[i]), low = nibble(text[i + 1]);
        if (high < 0 || low < 0) return std::nullopt;
        bytes.push_back(static_cast<unsigned char>(high << 4 | low));
    }
    return bytes;
}

std::vector<unsigned char> salted_sha256(const std::vector<unsigned char>& salt,
                                         std::string_view token) {
    std::vector<unsigned char> digest(hash_bytes);
    EVP_MD_CTX* context = EVP_MD_CTX_new();
    unsigned length = 0;
    bool ok = context && EVP_DigestInit_ex(context, EVP_sha256(), nullptr) == 1 &&
              EVP_DigestUpdate(context, salt.data(), salt.size()) == 1 &&
              EVP_DigestUpdate(context, token.data(), token.size()) == 1 &&
              EVP_DigestFinal_ex(context, digest.data(), &length) == 1;
    EVP_MD_CTX_free(context);
    if (!ok || length != hash_bytes) throw std::runtime_error("SHA-256 failed");
    return digest;
}

}  // namespace

const char* scope_name(Scope scope) {
    switch (scope) {
        case Scope::open:
            return "open";
        case Scope::read:
            return "read";
        case Scope::write:
            return "write";
        case Scope::admin:
            return "admin";
    }
    return "?";
}

std::optional<Scope> parse_scope(std::string_view name) {
    for (Scope scope : {Scope::read, Scope::write, Scope::admin}) {
        if (name == scope_name(scope)) return scope;
    }
    return std::nullopt;
}

std::string hash_token(std::string_view token) {
    std::vector<unsigned char> salt(salt_bytes);
    if (RAND_bytes(salt.data(), static_cast<int>(salt.size())) != 1) {
        throw std::runtime_error("no random bytes for a salt");
    }
    return "sha256$" + hex(salt) + "$" + hex(salted_sha256(salt, token));
}

std::vector<Token> parse_token_file(std::string_view toml_text, std::string_view origin) {
    toml::table table;
    try {
        table = toml::parse(toml_text, origin);
    } catch (const toml::parse_error& error) {
        std::ostringstream message;
        message << origin << ": " << error.description() << " (" << error.source() << ")";
        throw std::runtime_error(message.str());
    }
    auto fail = [&](std::size_t index, const std::string& problem) {
        throw std::runtime_error(std::string(origin) + ": token " + std::to_string(index + 1) +
                                 ": " + problem);
    };
    for (const auto& [key, node] : table) {
        if (key.str() != "token") {
            throw std::runtime_error(std::string(origin) + ": unknown key \"" +
                                     std::string(key.str()) + "\" (expected [[token]] tables)");
        }
    }
    std::vector<Token> tokens;
    const toml::node* entries = table.get("token");
    if (!entries) return tokens;  // an empty file: no token lets anyone in
    const toml::array* array = entries->as_array();
    if (!array) throw std::runtime_error(std::string(origin) + ": expected [[token]] tables");
    std::set<std::string> names;
    for (std::size_t i = 0; i < array->size(); ++i) {
        const toml::table* entry = (*array)[i].as_table();
        if (!entry) fail(i, "expected a table");
        for (const auto& [key, node] : *entry) {
            if (key.str() != "name" && key.str() != "hash" && key.str() != "scopes") {
                fail(i, "unknown key \"" + std::string(key.str()) + "\"");
            }
        }
        Token token;
        auto name = (*entry)["name"].value<std::string>();
        if (!name || name->empty()) fail(i, "needs name = \"...\"");
        token.name = *name;
        if (!names.insert(token.name).second) fail(i, "name \"" + token.name + "\" used twice");
        auto hash = (*entry)["hash"].value<std::string>();
        if (!hash) fail(i, "(" + token.name + ") needs hash = \"sha256$...\"");
        std::string_view text = *hash;
        std::size_t dollar = text.find('$', 7);
        std::optional<std::vector<unsigned char>> salt, digest;
        if (text.starts_with("sha256$") && dollar != std::string_view::npos) {
            salt = unhex(text.substr(7, dollar - 7));
            digest = unhex(text.substr(dollar + 1));
        }
        if (!salt || salt->empty() || !digest || digest->size() != hash_bytes) {
            fail(i, "(" + token.name +
                        ") hash is not sha256$<salt hex>$<64 hex digits> (make one with "
                        "citygate --hash-token)");
        }
        token.salt = std::move(*salt);
        token.hash = std::move(*digest);
        const toml::array* scopes = (*entry)["scopes"].as_array();
        if (!scopes || scopes->empty()) {
            fail(i, "(" + token.name + ") needs scopes = [\"read\", \"write\" or \"admin\"]");
        }
        for (const toml::node& item : *scopes) {
            auto scope = parse_scope(item.value<std::string>().value_or(""));
            if (!scope) {
                fail(i, "(" + token.name + ") scopes are \"read\", \"write\" or \"admin\"");
            }
            token.scopes |= static_cast<unsigned>(*scope);
        }
        tokens.push_back(std::move(token));
    }
    return tokens;
}

TokenStore::TokenStore(std::filesystem::path file) : file_(std::move(file)) {
    if (auto error = reload()) throw std::runtime_error(*error);
}

std::optional<std::string> TokenStore::reload() {
    std::ifstream in(file_);
    if (!in) return "cannot read " + file_.string();
    std::stringstream text;
    text << in.rdbuf();
    try {
        auto tokens = std::make_shared<const std::vector<Token>>(
            parse_token_file(text.str(), file_.string()));
        std::lock_guard lock(mutex_);
        tokens_ = std::move(tokens);
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return std::nullopt;
}

std::optional<Token> TokenStore::find(std::string_view presented) const {
    std::shared_ptr<const std::vector<Token>> tokens;
    {
        std::lock_guard lock(mutex_);
        tokens = tokens_;
    }
    std::optional<Token> found;
    for (const Token& token : *tokens) {
        auto digest = salted_sha256(token.salt, presented);
        if (CRYPTO_memcmp(digest.data(), token.hash.data(), hash_bytes) == 0 && !found) {
            found = token;
        }
    }
    return found;
}

std::size_t TokenStore::size() const {
    std::lock_guard lock(mutex_);
    return tokens_->size();
}

}  // namespace citygate::gateway
