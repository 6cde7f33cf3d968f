// Checkpoints under the backup directory: naming, pruning, logging and counting.
#include "gateway/ops/backups.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <system_error>

#include "gateway/ops/log.hpp"

namespace citygate::gateway {
namespace {

constexpr std::string_view kPrefix = "checkpoint-";

// checkpoint-20261122T163146.574Z: the UTC time to the millisecond.
std::string checkpoint_name(std::chrono::system_clock::time_point now) {
    std::time_t seconds = std::chrono::system_clock::to_time_t(now);
    std::tm utc{};
    ::gmtime_r(&seconds, &utc);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%S", &utc);
    auto millis =
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
    char name[64];
    std::snprintf(name, sizeof name, "%s%s.%03dZ", kPrefix.data(), stamp,
                  static_cast<int>(millis.count()));
    return name;
}

}  // namespace

Backups::Backups(const storage::Engine& engine, std::filesystem::path directory, std::size_t keep,
                 prometheus::Registry& registry)
    : engine_(engine), directory_(std::move(directory)), keep_(keep) {
    auto& family = prometheus::BuildCounter()
                       .Name("citygate_checkpoints_total")
                       .Help(
                           "Checkpoints (POST /api/v1/admin/checkpoint) by result: ok, or failed "
                           "(the reason is logged at error)")
                       .Register(registry);
    ok_ = &family.Add({{"result", "ok"}});
    failed_ = &family.Add({{"result", "failed"}});
}

std::vector<std::filesystem::path> Backups::list(const std::filesystem::path& directory) {
    std::vector<std::filesystem::path> found;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(directory, ec)) {
        std::error_code type_ec;
        if (entry.path().filename().string().starts_with(kPrefix) && entry.is_directory(type_ec)) {
            found.push_back(entry.path());
        }
    }
    std::sort(found.begin(), found.end());
    return found;
}

Backups::Taken Backups::take() const {
    Taken taken;
    auto fail = [&](storage::Status status) {
        failed_->Increment();
        CG_LOG(error).with("directory", directory_.string()).with("reason", status.message())
            << "checkpoint failed: " << status.message();
        taken.status = std::move(status);
        return taken;
    };
    std::error_code ec;
    std::filesystem::create_directories(directory_, ec);
    if (ec) {
        return fail(storage::Status::error(storage::Status::Code::io_error,
                                           "cannot create the backup directory " +
                                               directory_.string() + ": " + ec.message() +
                                               " (storage.backup_dir)"));
    }
    std::string name = checkpoint_name(std::chrono::system_clock::now());
    std::filesystem::path target = directory_ / name;
    // Two within one millisecond (one at a time, so only just after each other): a suffix keeps
    // them apart and in order.
    for (int n = 1; std::filesystem::exists(target, ec) && n < 1000; ++n) {
        char suffix[8];
        std::snprintf(suffix, sizeof suffix, "-%03d", n);
        target = directory_ / (name + suffix);
    }
    auto status = engine_.checkpoint(target);
    if (!status.is_ok()) {
        std::error_code remove_ec;
        std::filesystem::remove_all(target, remove_ec);  // what it wrote of an unusable copy
        return fail(std::move(status));
    }
    ok_->Increment();
    taken.path = target;
    if (keep_ > 0) {
        auto all = list(directory_);
        for (std::size_t i = 0; i + keep_ < all.size(); ++i) {
            std::error_code remove_ec;
            std::filesystem::remove_all(all[i], remove_ec);
            if (remove_ec) {
                // The new checkpoint is good; an old one that cannot go is worth a warning.
                CG_LOG(warn).with("path", all[i].string()).with("reason", remove_ec.message())
                    << "cannot prune old checkpoint " << all[i].string() << ": "
                    << remove_ec.message();
                continue;
            }
            taken.pruned.push_back(all[i]);
        }
    }
    CG_LOG(info).with("path", target.string()).with("pruned", taken.pruned.size())
        << "checkpoint written to " << target.string() << " (" << taken.pruned.size()
        << " older pruned, storage.backup_keep = " << keep_ << ")";
    return taken;
}

}  // namespace citygate::gateway
