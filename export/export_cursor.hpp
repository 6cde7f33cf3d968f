// The remote-write sender's durable cursor: per stream, the timestamp before which every
// selected sample was acknowledged by the receiver. A small text file beside the shards,
// replaced atomically (write a temporary file, fsync it, rename it over, fsync the directory),
// so a crash leaves either the old cursor or the new one, never a torn one.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace citygate::exports {

struct ExportCursor {
    std::optional<std::int64_t> raw_ms;        // next raw sample to send is stamped >= this
    std::optional<std::int64_t> rollup_1m_ms;  // next 1-minute bucket starts >= this
    bool operator==(const ExportCursor&) const = default;
};

// Reads `file`. A missing file is an empty cursor (nothing sent yet); a file that is there but
// cannot be read or parsed sets `error` and returns nothing (the sender then refuses to guess).
std::optional<ExportCursor> load_cursor(const std::filesystem::path& file, std::string& error);

// Replaces `file` with `cursor`, durably, creating its directory. False with `error` set when
// any step fails (the previous file is then still in place).
bool save_cursor(const std::filesystem::path& file, const ExportCursor& cursor, std::string& error);

}  // namespace citygate::exports
