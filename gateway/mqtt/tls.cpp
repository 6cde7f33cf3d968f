// OpenSSL through Asio: TLS 1.2+ only, no session tickets (nothing to resume across restarts).
#include "gateway/mqtt/tls.hpp"

#include <openssl/x509.h>

#include "gateway/config.hpp"

namespace citygate::gateway {

boost::asio::ssl::context make_server_context(const TlsOptions& options) {
    namespace ssl = boost::asio::ssl;
    ssl::context context(ssl::context::tls_server);
    context.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                        ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                        ssl::context::single_dh_use);
    SSL_CTX_set_num_tickets(context.native_handle(), 0);
    boost::system::error_code ec;
    context.use_certificate_chain_file(options.cert_file.string(), ec);
    if (ec)
        throw ConfigError("tls.cert_file: cannot use " + options.cert_file.string() + ": " +
                          ec.message());
    context.use_private_key_file(options.key_file.string(), ssl::context::pem, ec);
    if (ec)
        throw ConfigError("tls.key_file: cannot use " + options.key_file.string() + ": " +
                          ec.message());
    if (SSL_CTX_check_private_key(context.native_handle()) != 1) {
        throw ConfigError("tls.key_file: the key does not match the certificate");
    }
    if (!options.ca_file.empty()) {
        context.load_verify_file(options.ca_file.string(), ec);
        if (ec)
            throw ConfigError("tls.ca_file: cannot use " + options.ca_file.string() + ": " +
                              ec.message());
        context.set_verify_mode(
            ssl::verify_peer |
            (options.require_client_cert ? ssl::verify_fail_if_no_peer_cert : 0));
    } else if (options.require_client_cert) {
        throw ConfigError("tls.require_client_cert needs tls.ca_file");
    }
    return context;
}

std::optional<std::string> peer_common_name(SSL* ssl) {
    X509* certificate = SSL_get1_peer_certificate(ssl);
    if (!certificate) return std::nullopt;
    std::optional<std::string> name;
    if (SSL_get_verify_result(ssl) == X509_V_OK) {
        char buffer[256];
        int n = X509_NAME_get_text_by_NID(X509_get_subject_name(certificate), NID_commonName,
                                          buffer, sizeof buffer);
        if (n > 0) name.emplace(buffer, static_cast<std::size_t>(n));
    }
    X509_free(certificate);
    return name;
}

}  // namespace citygate::gateway
