// Durable cursor file of the remote-write sender.
#include "export/export_cursor.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

namespace citygate::exports {
namespace {

constexpr std::string_view kHeader = "citygate remote-write cursor v1";

bool fsync_path(const std::filesystem::path& path, int flags, std::string& error) {
    int fd = ::open(path.c_str(), flags | O_CLOEXEC);
    if (fd < 0) {
        error = "open " + path.string() + ": " + std::strerror(errno);
        return false;
    }
    bool ok = ::fsync(fd) == 0;
    if (!ok) error = "fsync " + path.string() + ": " + std::strerror(errno);
    ::close(fd);
    return ok;
}

}  // namespace

std::optional<ExportCursor> load_cursor(const std::filesystem::path& file, std::string& error) {
    std::ifstream in(file);
    if (!in) {
        std::error_code ec;
        if (!std::filesystem::exists(file, ec) && !ec) return ExportCursor{};
        error = "cannot read " + file.string();
        return std::nullopt;
    }
    std::string line;
    if (!std::getline(in, line) || line != kHeader) {
        error = file.string() + ": not a cursor file (first line must be \"" +
                std::string(kHeader) + "\")";
        return std::nullopt;
    }
    ExportCursor cursor;
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        auto space = line.find(' ');
        std::string_view name(line.data(), space == std::string::npos ? line.size() : space);
        std::int64_t value = 0;
        const char* first = line.data() + (space == std::string::npos ? line.size() : space + 1);
        const char* last = line.data() + line.size();
        auto [end, ec] = std::from_chars(first, last, value);
        if (space == std::string::npos || ec != std::errc() || end != last) {
            error = file.string() + ": bad line \"" + line + "\"";
            return std::nullopt;
        }
        if (name == "raw_ms") {
            cursor.raw_ms = value;
        } else if (name == "rollup_1m_ms") {
            cursor.rollup_1m_ms = value;
        }  // unknown names: a newer version's streams, kept out of this one's way
    }
    return cursor;
}

bool save_cursor(const std::filesystem::path& file, const ExportCursor& cursor,
                 std::string& error) {
    std::error_code ec;
    std::filesystem::create_directories(file.parent_path(), ec);
    if (ec) {
        error = "create " + file.parent_path().string() + ": " + ec.message();
        return false;
    }
    std::ostringstream text;
    text << kHeader << '\n';
    if (cursor.raw_ms) text << "raw_ms " << *cursor.raw_ms << '\n';
    if (cursor.rollup_1m_ms) text << "rollup_1m_ms " << *cursor.rollup_1m_ms << '\n';
    std::string bytes = text.str();

    std::filesystem::path temporary = file;
    temporary += ".tmp";
    int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        error = "open " + temporary.string() + ": " + std::strerror(errno);
        return false;
    }
    std::size_t written = 0;
    while (written < bytes.size()) {
        ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            error = "write " + temporary.string() + ": " + std::strerror(errno);
            ::close(fd);
            return false;
        }
        written += static_cast<std::size_t>(n);
    }
    if (::fsync(fd) != 0) {
        error = "fsync " + temporary.string() + ": " + std::strerror(errno);
        ::close(fd);
        return false;
    }
    ::close(fd);
    if (::rename(temporary.c_str(), file.c_str()) != 0) {
        error = "rename " + temporary.string() + ": " + std::strerror(errno);
        return false;
    }
    return fsync_path(file.parent_path(), O_RDONLY | O_DIRECTORY, error);
}

}  // namespace citygate::exports
