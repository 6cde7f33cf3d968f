// The server's TLS context: certificate chain and key, optional client certificates verified
// against a CA (their CN becomes the device identity).
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>

namespace citygate::gateway {

struct TlsOptions {
    std::filesystem::path cert_file;  // PEM chain
    std::filesystem::path key_file;   // PEM private key
    std::filesystem::path ca_file;    // PEM CAs for client certificates; empty: none requested
    bool require_client_cert = false;
};

// Throws ConfigError naming the file when a certificate or key cannot be used.
boost::asio::ssl::context make_server_context(const TlsOptions& options);

// The common name of the peer's verified certificate, if it presented one.
std::optional<std::string> peer_common_name(SSL* ssl);

}  // namespace citygate::gateway
