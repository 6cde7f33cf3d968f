// The failing file system's writable files: each write call asks the file system first.
#include "tests/storage/failing_fs.hpp"

namespace citygate::storage::test {
namespace {

class FailingFile : public rocksdb::FSWritableFileOwnerWrapper {
  public:
    FailingFile(std::unique_ptr<rocksdb::FSWritableFile> file, FailingFileSystem& fs,
                std::string name)
        : FSWritableFileOwnerWrapper(std::move(file)), fs_(fs), name_(std::move(name)) {}

    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override {
        if (fs_.should_fail(name_, FailingFileSystem::append)) return no_space();
        return FSWritableFileOwnerWrapper::Append(data, options, dbg);
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                             const rocksdb::DataVerificationInfo& info,
                             rocksdb::IODebugContext* dbg) override {
        if (fs_.should_fail(name_, FailingFileSystem::append)) return no_space();
        return FSWritableFileOwnerWrapper::Append(data, options, info, dbg);
    }
    rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                       const rocksdb::IOOptions& options,
                                       rocksdb::IODebugContext* dbg) override {
        if (fs_.should_fail(name_, FailingFileSystem::append)) return no_space();
        return FSWritableFileOwnerWrapper::PositionedAppend(data, offset, options, dbg);
    }
    rocksdb::IOStatus Flush(const rocksdb::IOOptions& options,
                            rocksdb::IODebugContext* dbg) override {
        if (fs_.should_fail(name_, FailingFileSystem::flush)) return no_space();
        return FSWritableFileOwnerWrapper::Flush(options, dbg);
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
        if (fs_.should_fail(name_, FailingFileSystem::sync)) return no_space();
        return FSWritableFileOwnerWrapper::Sync(options, dbg);
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options,
                            rocksdb::IODebugContext* dbg) override {
        if (fs_.should_fail(name_, FailingFileSystem::sync)) return no_space();
        return FSWritableFileOwnerWrapper::Fsync(options, dbg);
    }
    rocksdb::IOStatus RangeSync(uint64_t offset, uint64_t nbytes, const rocksdb::IOOptions& options,
                                rocksdb::IODebugContext* dbg) override {
        if (fs_.should_fail(name_, FailingFileSystem::sync)) return no_space();
        return FSWritableFileOwnerWrapper::RangeSync(offset, nbytes, options, dbg);
    }

  private:
    static rocksdb::IOStatus no_space() {
        return rocksdb::IOStatus::NoSpace("injected by FailingFileSystem",
                                          "No space left on device");
    }
    FailingFileSystem& fs_;
    std::string name_;
};

bool ends_with(const std::string& s, const char* suffix) {
    std::string_view tail(suffix);
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace

bool FailingFileSystem::chosen(const std::string& name) const {
    switch (files_.load()) {
        case Files::wal:
            return ends_with(name, ".log") && name.find("LOG") == std::string::npos;
        case Files::sst:
            return ends_with(name, ".sst");
        case Files::all:
            return name.find("LOG") == std::string::npos;  // RocksDB's info log stays writable
    }
    return false;
}

bool FailingFileSystem::should_fail(const std::string& name, Operation operation) {
    if (!chosen(name)) return false;
    write_calls_.fetch_add(1);
    if ((operations_.load() & operation) == 0) return false;
    failed_calls_.fetch_add(1);
    return true;
}

rocksdb::IOStatus FailingFileSystem::wrap(const std::string& name, rocksdb::IOStatus status,
                                          std::unique_ptr<rocksdb::FSWritableFile>* result) {
    if (status.ok()) *result = std::make_unique<FailingFile>(std::move(*result), *this, name);
    return status;
}

rocksdb::IOStatus FailingFileSystem::NewWritableFile(
    const std::string& name, const rocksdb::FileOptions& options,
    std::unique_ptr<rocksdb::FSWritableFile>* result, rocksdb::IODebugContext* dbg) {
    return wrap(name, target()->NewWritableFile(name, options, result, dbg), result);
}

rocksdb::IOStatus FailingFileSystem::ReopenWritableFile(
    const std::string& name, const rocksdb::FileOptions& options,
    std::unique_ptr<rocksdb::FSWritableFile>* result, rocksdb::IODebugContext* dbg) {
    return wrap(name, target()->ReopenWritableFile(name, options, result, dbg), result);
}

rocksdb::IOStatus FailingFileSystem::ReuseWritableFile(
    const std::string& name, const std::string& old_name, const rocksdb::FileOptions& options,
    std::unique_ptr<rocksdb::FSWritableFile>* result, rocksdb::IODebugContext* dbg) {
    return wrap(name, target()->ReuseWritableFile(name, old_name, options, result, dbg), result);
}

std::shared_ptr<rocksdb::Env> env_on(const std::shared_ptr<FailingFileSystem>& fs) {
    return std::shared_ptr<rocksdb::Env>(rocksdb::NewCompositeEnv(fs).release());
}

}  // namespace citygate::storage::test
