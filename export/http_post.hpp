// A small synchronous HTTP/1.1 client for the remote-write sender: one keep-alive connection,
// the whole exchange (resolve aside: connect, TLS handshake, write, read) bounded by a timeout.
// Blocking: it runs on the sender's own thread, never on an I/O thread. Not thread safe. https
// verifies the receiver's certificate (chain and host name) against the system's CAs or a file.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace citygate::exports {

// http://host[:port][/path] or https://... Nothing, with `error` set, for anything else.
struct HttpUrl {
    bool tls = false;
    std::string host;
    std::string port = "80";
    std::string target = "/";
    static std::optional<HttpUrl> parse(std::string_view url, std::string& error);
};

struct HttpReply {
    unsigned status = 0;  // 0: no answer (connect, write or read failed or timed out)
    std::string error;    // why there was no answer
    std::string retry_after;
    std::string body;  // at most the first 1 KiB, for the log
};

class HttpPost {
  public:
    // `ca_file` (PEM) for https; empty: the system's CAs. Throws std::invalid_argument when the
    // CA certificates cannot be loaded.
    HttpPost(HttpUrl url, std::chrono::milliseconds timeout,
             const std::filesystem::path& ca_file = {});
    ~HttpPost();
    HttpPost(const HttpPost&) = delete;
    HttpPost& operator=(const HttpPost&) = delete;

    // POSTs `body` with `headers` (name, value); reconnects when the connection was closed. The
    // whole exchange, connecting included, must finish within the timeout.
    HttpReply post(const std::string& body,
                   const std::vector<std::pair<std::string, std::string>>& headers);

    // Thread safe: makes a post() in progress, and every later one, return at once without an
    // answer (status 0, error "cancelled").
    void cancel();

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace citygate::exports
