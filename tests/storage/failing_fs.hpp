// Test-only RocksDB file system that fails writes on demand: IO errors on Append, Sync or Flush
// of the files chosen, so storage's error state is tested without filling a real disk.
#pragma once

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

namespace citygate::storage::test {

class FailingFileSystem : public rocksdb::FileSystemWrapper {
  public:
    enum Operation : unsigned { append = 1, sync = 2, flush = 4 };
    enum class Files { wal, sst, all };

    explicit FailingFileSystem(
        std::shared_ptr<rocksdb::FileSystem> base = rocksdb::FileSystem::Default())
        : FileSystemWrapper(std::move(base)) {}

    static const char* kClassName() { return "CitygateFailingFileSystem"; }
    const char* Name() const override { return kClassName(); }

    // From now on the operations in `operations` (a mask) on `files` fail with "No space left".
    void fail(unsigned operations, Files files = Files::wal) {
        files_ = files;
        operations_ = operations;
    }
    void heal() { operations_ = 0; }
    // Calls that reached a chosen file while failing was on (each one failed).
    std::uint64_t failed_calls() const { return failed_calls_.load(); }
    // Write calls (Append, Sync, Flush) of the chosen files since the start, failed or not.
    std::uint64_t write_calls() const { return write_calls_.load(); }

    rocksdb::IOStatus NewWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                      std::unique_ptr<rocksdb::FSWritableFile>* result,
                                      rocksdb::IODebugContext* dbg) override;
    rocksdb::IOStatus ReopenWritableFile(const std::string& name,
                                         const rocksdb::FileOptions& options,
                                         std::unique_ptr<rocksdb::FSWritableFile>* result,
                                         rocksdb::IODebugContext* dbg) override;
    rocksdb::IOStatus ReuseWritableFile(const std::string& name, const std::string& old_name,
                                        const rocksdb::FileOptions& options,
                                        std::unique_ptr<rocksdb::FSWritableFile>* result,
                                        rocksdb::IODebugContext* dbg) override;

    // Whether a call of `operation` on the file `name` fails now; counts it.
    bool should_fail(const std::string& name, Operation operation);

  private:
    bool chosen(const std::string& name) const;
    rocksdb::IOStatus wrap(const std::string& name, rocksdb::IOStatus status,
                           std::unique_ptr<rocksdb::FSWritableFile>* result);

    std::atomic<Files> files_{Files::wal};
    std::atomic<unsigned> operations_{0};
    std::atomic<std::uint64_t> failed_calls_{0};
    std::atomic<std::uint64_t> write_calls_{0};
};

// An Env on `fs`, for EngineOptions::test_env.
std::shared_ptr<rocksdb::Env> env_on(const std::shared_ptr<FailingFileSystem>& fs);

}  // namespace citygate::storage::test
