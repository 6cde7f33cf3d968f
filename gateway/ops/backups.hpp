// Checkpoints of the engine under one backup directory: named by the UTC time they were taken,
// pruned to the newest `keep` after each success, every outcome logged and counted in
// citygate_checkpoints_total{result}.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include "storage/engine.hpp"

namespace citygate::gateway {

class Backups {
  public:
    // `directory` is created on the first checkpoint. keep 0: never prune. `registry` gets the
    // counter.
    Backups(const storage::Engine& engine, std::filesystem::path directory, std::size_t keep,
            prometheus::Registry& registry);

    struct Taken {
        storage::Status status;                     // of the checkpoint itself
        std::filesystem::path path;                 // the new checkpoint, when ok
        std::vector<std::filesystem::path> pruned;  // removed after it, oldest first
    };
    // Writes a checkpoint (every write acknowledged before the call is in it), then removes the
    // oldest checkpoints beyond `keep`. A failure is logged at error with its reason and
    // counted; a checkpoint that fails half-way is removed again. Not to be called twice at once
    // (HttpApi runs it behind a CallGate); slow (flushes memtables): never on an I/O thread.
    Taken take() const;

    const std::filesystem::path& directory() const { return directory_; }

    // The checkpoints under `directory` (its subdirectories named checkpoint-*), oldest first:
    // names are UTC times, so they sort by age.
    static std::vector<std::filesystem::path> list(const std::filesystem::path& directory);

  private:
    const storage::Engine& engine_;
    std::filesystem::path directory_;
    std::size_t keep_;
    prometheus::Counter* ok_;
    prometheus::Counter* failed_;
};

}  // namespace citygate::gateway
