// Restoring a checkpoint written by Engine::checkpoint() into a data directory: checks that the
// source is one, that the target holds nothing, then links or copies the files.
#include "storage/engine.hpp"

#include <system_error>

#include "storage/detail/layout.hpp"

namespace citygate::storage {
namespace {

namespace fs = std::filesystem;

Status invalid(std::string message) {
    return Status::error(Status::Code::invalid_argument, "restore: " + std::move(message));
}

Status io_failure(const std::string& what, const std::error_code& ec) {
    return Status::error(Status::Code::io_error, "restore failed: " + what + ": " + ec.message());
}

// SST files are immutable, so the restored directory may share them with the checkpoint (a hard
// link, where both are on one file system); every other file is copied, because RocksDB writes
// to its MANIFEST, WAL and CURRENT files once the restored engine opens.
Status link_or_copy(const fs::path& from, const fs::path& to) {
    std::error_code ec;
    if (from.extension() == ".sst") {
        fs::create_hard_link(from, to, ec);
        if (!ec) return Status::ok();
    }
    fs::copy_file(from, to, ec);
    if (ec) return io_failure("copy " + from.string() + " to " + to.string(), ec);
    return Status::ok();
}

Status restore_shard(const fs::path& from, const fs::path& to) {
    std::error_code ec;
    fs::create_directory(to, ec);
    if (ec) return io_failure("create " + to.string(), ec);
    for (const auto& entry : fs::directory_iterator(from, ec)) {
        if (!entry.is_regular_file()) {
            return invalid(entry.path().string() + " is not a file; not a checkpoint shard");
        }
        if (auto s = link_or_copy(entry.path(), to / entry.path().filename()); !s.is_ok()) return s;
    }
    if (ec) return io_failure("list " + from.string(), ec);
    return Status::ok();
}

}  // namespace

Status restore_checkpoint(const fs::path& checkpoint, const fs::path& data_dir) {
    std::error_code ec;
    auto shards = detail::read_shard_count(checkpoint);
    if (!shards) {
        return invalid(checkpoint.string() + " is not a checkpoint (no " +
                       std::string(detail::kMetaFile) + ")");
    }
    for (unsigned i = 0; i < *shards; ++i) {
        if (!fs::exists(detail::shard_directory(checkpoint, i) / "CURRENT", ec)) {
            return invalid(checkpoint.string() + " is not a complete checkpoint (" +
                           detail::shard_directory(checkpoint, i).string() + " has no CURRENT)");
        }
    }
    const bool existed = fs::exists(data_dir, ec);
    if (existed && !fs::is_empty(data_dir, ec)) {
        return invalid("data directory " + data_dir.string() +
                       " is not empty; restore into an empty one (move the old one away)");
    }
    if (ec) return io_failure("inspect " + data_dir.string(), ec);
    fs::create_directories(data_dir, ec);
    if (ec) return io_failure("create " + data_dir.string(), ec);
    Status status;
    for (unsigned i = 0; i < *shards && status.is_ok(); ++i) {
        status = restore_shard(detail::shard_directory(checkpoint, i),
                               detail::shard_directory(data_dir, i));
    }
    // The metadata goes last: a directory without it is not taken for a restored engine.
    if (status.is_ok()) {
        status = link_or_copy(checkpoint / detail::kMetaFile, data_dir / detail::kMetaFile);
    }
    if (!status.is_ok()) {
        // Everything under data_dir is ours (it was empty): leave it as it was.
        std::error_code cleanup;
        for (const auto& entry : fs::directory_iterator(data_dir, cleanup))
            fs::remove_all(entry.path(), cleanup);
        if (!existed) fs::remove(data_dir, cleanup);
    }
    return status;
}

}  // namespace citygate::storage
