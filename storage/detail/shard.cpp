// Shard: RocksDB setup, the writer loop (group commit, head, flush into chunks and rollups,
// retention) and the read paths.
#include "storage/detail/shard.hpp"

#include <rocksdb/filter_policy.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>
#include <rocksdb/utilities/checkpoint.h>
#include <rocksdb/write_buffer_manager.h>

#include <time.h>

#include <algorithm>
#include <future>

#include "storage/detail/coding.hpp"
#include "storage/detail/keys.hpp"

namespace citygate::storage::detail {
namespace {

constexpr std::int64_t kMinute = static_cast<std::int64_t>(Resolution::minute);
constexpr std::int64_t kHour = static_cast<std::int64_t>(Resolution::hour);
const std::string kIndexCf = "index";
const std::string kWindowPrefix = "window-";

Status from_rocks(const rocksdb::Status& s, const char* what) {
    if (s.ok()) return Status::ok();
    auto code = s.IsCorruption() ? Status::Code::corruption
                : s.IsBusy()     ? Status::Code::busy
                                 : Status::Code::io_error;
    return Status::error(code, std::string(what) + ": " + s.ToString());
}

// Sorts by time and keeps the last-arrived sample of each timestamp (stable sort keeps arrival
// order among equal timestamps).
void sort_keep_last(std::vector<Sample>& v) {
    std::stable_sort(v.begin(), v.end(),
                     [](const Sample& a, const Sample& b) { return a.ts < b.ts; });
    std::size_t out = 0;
    for (std::size_t i = 0; i < v.size(); ++i) {
        if (i + 1 < v.size() && v[i + 1].ts == v[i].ts) continue;
        v[out++] = v[i];
    }
    v.resize(out);
}

// Merges sorted, duplicate-free `newer` into sorted, duplicate-free `base`; `newer` wins ties.
std::vector<Sample> merge_samples(const std::vector<Sample>& base,
                                  const std::vector<Sample>& newer) {
    std::vector<Sample> out;
    out.reserve(base.size() + newer.size());
    std::size_t i = 0, j = 0;
    while (i < base.size() || j < newer.size()) {
        if (j == newer.size() || (i < base.size() && base[i].ts < newer[j].ts)) {
            out.push_back(base[i++]);
        } else {
            if (i < base.size() && base[i].ts == newer[j].ts) ++i;
            out.push_back(newer[j++]);
        }
    }
    return out;
}

// CPU time of the calling thread: the writer's cost per point, unaffected by how many other
// threads share the cores (wall time would charge it for time it was not even running).
std::uint64_t thread_cpu_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
           static_cast<std::uint64_t>(ts.tv_nsec);
}

// RAII for a RocksDB snapshot.
class SnapshotGuard {
  public:
    explicit SnapshotGuard(rocksdb::DB* db) : db_(db), snapshot_(db->GetSnapshot()) {}
    ~SnapshotGuard() { db_->ReleaseSnapshot(snapshot_); }
    SnapshotGuard(const SnapshotGuard&) = delete;
    SnapshotGuard& operator=(const SnapshotGuard&) = delete;
    const rocksdb::Snapshot* get() const { return snapshot_; }

  private:
    rocksdb::DB* db_;
    const rocksdb::Snapshot* snapshot_;
};

// The head of one series in [start, end): handed-off points, then pending ones, which is
// arrival order, so sort_keep_last() keeps the newest of duplicates.
template <typename State>
void copy_head(const State& st, std::int64_t start, std::int64_t end, std::vector<Sample>& out) {
    if (st.flushing) {
        for (const auto& p : *st.flushing) {
            if (p.ts >= start && p.ts < end) out.push_back(p);
        }
    }
    for (const auto& p : st.pending) {
        if (p.ts >= start && p.ts < end) out.push_back(p);
    }
}

rocksdb::CompressionType compression_of(StorageTuning::Compression c) {
    switch (c) {
        case StorageTuning::Compression::none:
            return rocksdb::kNoCompression;
        case StorageTuning::Compression::lz4:
            return rocksdb::kLZ4Compression;
        case StorageTuning::Compression::zstd:
            return rocksdb::kZSTD;
    }
    return rocksdb::kNoCompression;
}

Status limit_error(const char* what, std::int64_t limit) {
    return Status::error(Status::Code::limit_exceeded,
                         std::string("query: more than ") + std::to_string(limit) + " " + what);
}

}  // namespace

Shard::Shard(ShardOptions options) : options_(std::move(options)), index_(options_.max_series) {}

Result<std::unique_ptr<Shard>> Shard::open(ShardOptions options) {
    std::unique_ptr<Shard> shard(new Shard(std::move(options)));
    if (auto s = shard->open_db(); !s.is_ok()) return s;
    if (auto s = shard->recover(); !s.is_ok()) return s;
    shard->last_flush_ = std::chrono::steady_clock::now();
    shard->flusher_ = std::thread([raw = shard.get()] { raw->run_flusher(); });
    shard->writer_ = std::thread([raw = shard.get()] { raw->run(); });
    return shard;
}

Status Shard::open_db() {
    // Options for this workload. Figures: citygate-storage-bench on the city dataset (17,356
    // series, 6.25 M points, 2 shards, fsync none), A/B one flag at a time; commands and the
    // full table in storage/README.md. Ingest rates on the shared 2-core test box move +-30%
    // from run to run, so only differences beyond that are read as effects.
    // - one writer, big sequential batches: no pipelined/unordered write needed; WAL on always.
    // - the batch log lives in the default CF with a write buffer larger than two heads (the
    //   one being flushed and the next), so log records are normally deleted while still in
    //   the memtable and never reach an SST file (the flush drops range-deleted entries).
    // - the window CFs (chunks, rollups) are configured from StorageTuning; see there and
    //   below for what each choice measured.
    db_options_.create_if_missing = true;
    db_options_.create_missing_column_families = true;
    db_options_.max_background_jobs = 2;
    db_options_.bytes_per_sync = 1 << 20;
    db_options_.max_total_wal_size = 256 << 20;
    db_options_.keep_log_file_num = 4;
    db_options_.max_manifest_file_size = 64 << 20;
    if (options_.write_buffer_manager)
        db_options_.write_buffer_manager = options_.write_buffer_manager;

    const StorageTuning& tuning = options_.tuning;
    rocksdb::BlockBasedTableOptions table;
    table.block_cache = options_.block_cache;
    // 32 KiB blocks: bytes/point after compaction 1.530 at 4 KiB, 1.425 at 32 KiB, 1.373 at
    // 128 KiB; 4 KiB also slowed the by-district queries (27 vs 18-24 ms from rollups, 83-92 vs
    // 52-55 ms from raw). 128 KiB saves 3.6% more disk but every point read in the flush (the
    // newest chunk, rollup blocks) then decompresses 128 KiB.
    table.block_size = tuning.block_bytes;
    // A 10 bits/key filter on the 9-byte (kind, series id) prefix. Measured: no effect on a
    // one-series-day query of a live shard (1 MiB memtables so the window has many SST files:
    // 0.076 ms with it, 0.072 ms without, 0.068 ms with a whole-key filter; 15 M points) since
    // every flush writes every active series into each file; it costs 0.6% of disk
    // (1.425 vs 1.414 bytes/point). Kept because it is what skips files for sparse series (a
    // device that went quiet, a window a series has no data in), which this dataset lacks.
    if (tuning.bloom_bits_per_key > 0) {
        table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(tuning.bloom_bits_per_key));
    }
    // With the series prefix filter, whole keys need no filter: the only exact-key reads are of
    // a series' rollup blocks and newest chunk, whose prefix the filter already answers for.
    table.whole_key_filtering = !tuning.series_prefix_bloom;
    table.format_version = 5;

    // 32 MiB memtables per window CF: bytes/point after compaction is the same at 1, 4, 32 and
    // 128 MiB (1.425), ingest did not differ beyond noise (writer-thread rates 2.5-3.7 M
    // points/s across all four). A memtable absorbs the rewrites of a series' newest chunk and
    // hour rollup block between flushes, so it should hold a few head flushes' worth (a 2 M
    // point head is about 3 MB of chunks and rollups); the price is up to 3 x 32 MiB per shard
    // for the window being written.
    window_options_.write_buffer_size = tuning.write_buffer_bytes;
    window_options_.max_write_buffer_number = 3;
    if (tuning.series_prefix_bloom) {
        window_options_.prefix_extractor.reset(rocksdb::NewFixedPrefixTransform(9));
        window_options_.memtable_prefix_bloom_size_ratio = 0.05;
    }
    window_options_.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
    // Level compaction with dynamic level sizes: universal compaction gave the same bytes/point
    // after a full compaction (1.425) and no ingest difference beyond noise, but needs up to
    // twice the space during its full merges; level bounds space amplification at ~1.1x, so
    // the bytes-per-point figure is what disk really holds.
    if (tuning.compaction == StorageTuning::Compaction::universal) {
        window_options_.compaction_style = rocksdb::kCompactionStyleUniversal;
    } else {
        window_options_.compaction_style = rocksdb::kCompactionStyleLevel;
        window_options_.level_compaction_dynamic_level_bytes = true;
    }
    // Compression: the bottommost level is where sealed data spends its life, and it decides
    // the size: bytes/point after compaction 3.573 with none, 1.990 with LZ4, 1.425 with ZSTD
    // (level 3) everywhere or only at the bottommost. Chunks are delta/XOR coded, yet ZSTD
    // still halves them (rollup blocks and key prefixes compress well). Upper levels hold
    // short-lived data: LZ4 or none there changed neither size nor ingest beyond noise; LZ4 is
    // kept as cheap insurance for shards whose upper levels grow large.
    window_options_.compression = compression_of(tuning.compression);
    window_options_.bottommost_compression = compression_of(tuning.bottommost_compression);
    if (tuning.bottommost_compression == StorageTuning::Compression::zstd) {
        window_options_.bottommost_compression_opts.level = 3;
        window_options_.bottommost_compression_opts.enabled = true;
    }

    rocksdb::ColumnFamilyOptions log_options;
    log_options.write_buffer_size = 128 << 20;
    log_options.max_write_buffer_number = 2;
    log_options.compression = rocksdb::kNoCompression;  // log records are transient

    rocksdb::ColumnFamilyOptions index_options;
    index_options.write_buffer_size = 8 << 20;
    index_options.compression = rocksdb::kLZ4Compression;
    index_options.bottommost_compression = rocksdb::kZSTD;

    auto path = options_.directory / ("shard-" + std::to_string(options_.index));
    std::error_code ec;
    std::filesystem::create_directories(path, ec);
    if (ec)
        return Status::error(Status::Code::io_error,
                             "create " + path.string() + ": " + ec.message());

    std::vector<std::string> names;
    auto listed = rocksdb::DB::ListColumnFamilies(db_options_, path.string(), &names);
    if (!listed.ok()) names = {rocksdb::kDefaultColumnFamilyName};  // a new database
    if (std::find(names.begin(), names.end(), kIndexCf) == names.end()) names.push_back(kIndexCf);

    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    for (const auto& name : names) {
        if (name == rocksdb::kDefaultColumnFamilyName) {
            descriptors.emplace_back(name, log_options);
        } else if (name == kIndexCf) {
            descriptors.emplace_back(name, index_options);
        } else {
            descriptors.emplace_back(name, window_options_);
        }
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    auto s = rocksdb::DB::Open(db_options_, path.string(), descriptors, &handles, &db);
    if (!s.ok()) return from_rocks(s, "open");
    db_.reset(db);
    auto wrap = [this](rocksdb::ColumnFamilyHandle* h) {
        return CfHandle(h, [db = db_.get()](rocksdb::ColumnFamilyHandle* p) {
            (void)db->DestroyColumnFamilyHandle(p);  // only fails for the default CF handle
        });
    };
    for (std::size_t i = 0; i < names.size(); ++i) {
        if (names[i] == rocksdb::kDefaultColumnFamilyName) {
            default_cf_ = wrap(handles[i]);
        } else if (names[i] == kIndexCf) {
            index_cf_ = wrap(handles[i]);
        } else if (names[i].starts_with(kWindowPrefix)) {
            windows_[std::stoll(names[i].substr(kWindowPrefix.size()))] = wrap(handles[i]);
        } else {
            return Status::error(Status::Code::corruption, "unknown column family " + names[i]);
        }
    }
    return Status::ok();
}

Status Shard::recover() {
    {
        std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, index_cf_.get()));
        for (it->Seek("s"); it->Valid() && it->key().starts_with("s"); it->Next()) {
            if (it->key().size() != 9) return Status::error(Status::Code::corruption, "index key");
            if (!index_.restore(get_u64_be(it->key().data() + 1), it->value().ToStringView())) {
                return Status::error(Status::Code::corruption, "index: ids not dense");
            }
        }
        if (!it->status().ok()) return from_rocks(it->status(), "index scan");
    }
    states_.resize(index_.size());
    // Replay the batch log: exactly the accepted points that are not in chunks yet.
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, default_cf_.get()));
    for (it->Seek("L"); it->Valid() && it->key().starts_with("L"); it->Next()) {
        if (it->key().size() != kLogKeySize)
            return Status::error(Status::Code::corruption, "log key");
        std::uint64_t sequence = get_u64_be(it->key().data() + 1);
        if (head_points_ == 0 && next_log_sequence_ == 0) first_log_sequence_ = sequence;
        next_log_sequence_ = sequence + 1;
        Reader in(it->value().ToStringView());
        std::int64_t ts = 0;
        while (!in.done()) {
            std::uint64_t id;
            std::int64_t delta;
            double value;
            if (!in.varint(id) || !in.svarint(delta) || !in.f64(value) || id >= states_.size()) {
                return Status::error(Status::Code::corruption, "log record");
            }
            ts += delta;
            auto& st = states_[id];
            if (!st.pending.empty() && ts <= st.pending.back().ts) st.pending_sorted = false;
            if (st.pending.empty()) dirty_.push_back(id);
            st.pending.push_back({ts, value});
            st.pending_late = true;  // persisted state unknown until the series is loaded
            st.max_ts = std::max(st.max_ts, ts);
            ++head_points_;
        }
    }
    if (!it->status().ok()) return from_rocks(it->status(), "log scan");
    head_points_visible_ = head_points_;
    return Status::ok();
}

Shard::~Shard() {
    {
        std::lock_guard lock(queue_mutex_);
        stop_ = true;
    }
    queue_cv_.notify_all();
    if (writer_.joinable()) writer_.join();  // its last act is a synchronous flush
    {
        std::lock_guard lock(flush_mutex_);
        flusher_stop_ = true;
    }
    flush_cv_.notify_all();
    if (flusher_.joinable()) flusher_.join();
    {
        std::unique_lock lock(windows_mutex_);
        windows_.clear();
    }
    default_cf_.reset();
    index_cf_.reset();
    if (db_) {
        // Best effort at close: every acknowledged point is already in the WAL.
        (void)db_->Close();
    }
}

bool Shard::try_reserve(std::size_t n) {
    std::size_t before = reserved_.fetch_add(n, std::memory_order_acq_rel);
    // A write bigger than the whole queue is let in when the queue is empty, so it can progress.
    if (before == 0 || before + n <= options_.queue_capacity) return true;
    reserved_.fetch_sub(n, std::memory_order_acq_rel);
    return false;
}

void Shard::unreserve(std::size_t n) {
    reserved_.fetch_sub(n, std::memory_order_acq_rel);
}

void Shard::push(QueuedWrite write) {
    {
        std::lock_guard lock(queue_mutex_);
        queue_.push_back(std::move(write));
    }
    queue_cv_.notify_one();
}

Status Shard::run_on_writer(std::function<Status()> task) {
    auto promise = std::make_shared<std::promise<Status>>();
    auto future = promise->get_future();
    {
        std::lock_guard lock(queue_mutex_);
        tasks_.push_back([promise, task = std::move(task)] { promise->set_value(task()); });
    }
    queue_cv_.notify_one();
    return future.get();
}

Status Shard::run_on_flusher(std::function<Status()> task) {
    auto promise = std::make_shared<std::promise<Status>>();
    auto future = promise->get_future();
    {
        std::lock_guard lock(flush_mutex_);
        flusher_tasks_.push_back([promise, task = std::move(task)] { promise->set_value(task()); });
    }
    flush_cv_.notify_all();
    return future.get();
}

Status Shard::flush_now() {
    return run_on_writer([this] { return flush_sync(); });
}

void Shard::enforce_retention_now() {
    (void)run_on_flusher([this] {
        drop_expired_windows();
        return Status::ok();
    });
}

Status Shard::compact_all() {
    if (auto s = flush_now(); !s.is_ok()) return s;
    rocksdb::FlushOptions fo;
    std::vector<CfHandle> cfs{default_cf_, index_cf_};
    {
        std::shared_lock lock(windows_mutex_);
        for (auto& [start, cf] : windows_)
            cfs.push_back(cf);
    }
    rocksdb::CompactRangeOptions co;
    co.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForceOptimized;
    for (auto& cf : cfs) {
        if (auto s = db_->Flush(fo, cf.get()); !s.ok()) return from_rocks(s, "flush");
        if (auto s = db_->CompactRange(co, cf.get(), nullptr, nullptr); !s.ok()) {
            return from_rocks(s, "compact");
        }
    }
    return Status::ok();
}

std::uint64_t Shard::disk_bytes() const {
    std::uint64_t total = 0;
    std::vector<CfHandle> cfs{default_cf_, index_cf_};
    {
        std::shared_lock lock(windows_mutex_);
        for (auto& [start, cf] : windows_)
            cfs.push_back(cf);
    }
    for (auto& cf : cfs) {
        std::uint64_t v = 0;
        if (db_->GetIntProperty(cf.get(), rocksdb::DB::Properties::kTotalSstFilesSize, &v)) {
            total += v;
        }
    }
    return total;
}

Status Shard::checkpoint(const std::filesystem::path& target) const {
    rocksdb::Checkpoint* raw = nullptr;
    if (auto s = rocksdb::Checkpoint::Create(db_.get(), &raw); !s.ok()) {
        return from_rocks(s, "checkpoint");
    }
    std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
    // log_size_for_flush 0: memtables are flushed first, so the copy needs no WAL replay beyond
    // what it carries; the batch log keeps points not yet in chunks, as in the live shard.
    if (auto s = checkpoint->CreateCheckpoint(target.string(), 0); !s.ok()) {
        return from_rocks(s, "checkpoint");
    }
    return Status::ok();
}

RocksDbFigures Shard::rocksdb_figures() const {
    RocksDbFigures figures;
    auto aggregated = [&](const std::string& property) {
        std::uint64_t value = 0;
        return db_->GetAggregatedIntProperty(property, &value) ? value : 0;
    };
    figures.memtable_bytes = aggregated(rocksdb::DB::Properties::kCurSizeAllMemTables);
    figures.pending_compaction_bytes =
        aggregated(rocksdb::DB::Properties::kEstimatePendingCompactionBytes);
    std::uint64_t value = 0;
    if (db_->GetIntProperty(rocksdb::DB::Properties::kActualDelayedWriteRate, &value)) {
        figures.delayed_write_rate = value;
    }
    if (db_->GetIntProperty(rocksdb::DB::Properties::kIsWriteStopped, &value)) {
        figures.writes_stopped = value != 0;
    }
    if (db_->GetIntProperty(rocksdb::DB::Properties::kNumRunningCompactions, &value)) {
        figures.running_compactions = value;
    }
    // Live WAL files are the *.log files of the shard's directory.
    std::error_code ec;
    auto path = options_.directory / ("shard-" + std::to_string(options_.index));
    for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
        if (entry.path().extension() == ".log") {
            std::error_code size_ec;
            auto size = entry.file_size(size_ec);
            if (!size_ec) figures.wal_bytes += size;
        }
    }
    return figures;
}

void Shard::run() {
    std::deque<QueuedWrite> work;
    std::deque<std::function<void()>> tasks;
    for (;;) {
        bool stopping;
        {
            std::unique_lock lock(queue_mutex_);
            queue_cv_.wait_for(lock, std::chrono::milliseconds(200),
                               [&] { return stop_ || !queue_.empty() || !tasks_.empty(); });
            work.swap(queue_);
            tasks.swap(tasks_);
            stopping = stop_;
        }
        const std::uint64_t woke = thread_cpu_ns();
        if (!work.empty()) {
            commit(work);
            work.clear();
        }
        for (auto& task : tasks)
            task();
        tasks.clear();

        auto now = std::chrono::steady_clock::now();
        const bool full = head_points_ >= options_.head_flush_points;
        if (full || (head_points_ > 0 && now - last_flush_ >= options_.head_flush_interval)) {
            std::unique_lock lock(flush_mutex_);
            if (full && flush_job_ && !flush_failed_) {
                // Backpressure: a full head waits for the running flush rather than letting a
                // third one pile up, so a shard holds at most about twice head_flush_points.
                // Waiting costs no CPU time, so busy_ns_ does not count it.
                flush_done_cv_.wait(lock, [&] { return !flush_job_ || flush_failed_; });
            }
            // A failed job stays with the flush thread, which retries it (the head and the log
            // are untouched); this head waits for it.
            if (!flush_job_) {
                lock.unlock();
                hand_off();
            }
        }
        busy_ns_.fetch_add(thread_cpu_ns() - woke, std::memory_order_relaxed);
        if (stopping) {
            std::lock_guard lock(queue_mutex_);
            if (queue_.empty() && tasks_.empty()) break;
        }
    }
    // Closing: put the head into chunks, so the next open replays no log. A failure leaves it
    // in the log, which is as durable.
    (void)flush_sync();
}

void Shard::hand_off() {
    last_flush_ = std::chrono::steady_clock::now();
    if (head_points_ == 0) return;
    auto job = std::make_unique<FlushJob>();
    job->series.reserve(dirty_.size());
    // A series replayed from the log at open is not loaded yet: learn what is on disk now, while
    // the flush thread is idle, so it never writes chunks of a series the writer is reading.
    for (std::uint64_t id : dirty_) {
        auto& st = states_[id];
        if (!st.loaded) {
            if (auto s = load_state(id, st); !s.is_ok()) return;  // retried at the next hand off
        }
    }
    {
        std::unique_lock lock(head_mutex_);
        for (std::uint64_t id : dirty_) {
            auto& st = states_[id];
            auto samples = std::make_shared<const std::vector<Sample>>(std::move(st.pending));
            job->series.push_back({id, samples, st.pending_sorted});
            st.flushing = std::move(samples);
            st.flushing_late = st.pending_late;
            st.pending = {};
            st.pending_sorted = true;
            st.pending_late = false;
            st.sealed_max_ts = std::max(st.sealed_max_ts, st.max_ts);
        }
    }
    job->log_end = next_log_sequence_;
    job->points = head_points_;
    dirty_.clear();
    head_points_ = 0;
    {
        std::lock_guard lock(flush_mutex_);
        flush_job_ = std::move(job);
        flush_failed_ = false;
    }
    flush_cv_.notify_all();
}

Status Shard::flush_sync() {
    std::unique_lock lock(flush_mutex_);
    flush_done_cv_.wait(lock, [&] { return !flush_job_ || flush_failed_; });
    if (flush_job_) return flush_status_;  // an earlier head could not be flushed
    lock.unlock();
    hand_off();
    lock.lock();
    flush_done_cv_.wait(lock, [&] { return !flush_job_ || flush_failed_; });
    return flush_job_ ? flush_status_ : Status::ok();
}

void Shard::run_flusher() {
    std::unique_lock lock(flush_mutex_);
    for (;;) {
        // Waking every 200 ms drives retention and retries a failed job.
        flush_cv_.wait_for(lock, std::chrono::milliseconds(200), [&] {
            return flusher_stop_ || !flusher_tasks_.empty() || (flush_job_ && !flush_failed_);
        });
        if (flusher_stop_ && flusher_tasks_.empty()) break;
        std::deque<std::function<void()>> tasks;
        tasks.swap(flusher_tasks_);
        FlushJob* job = flush_job_.get();  // only this thread resets it
        lock.unlock();
        const std::uint64_t woke = thread_cpu_ns();
        if (job) {
            auto status = write_job(*job);
            lock.lock();
            flush_status_ = status;
            flush_failed_ = !status.is_ok();
            if (status.is_ok()) flush_job_.reset();
            lock.unlock();
            flush_done_cv_.notify_all();
        }
        for (auto& task : tasks)
            task();
        if (options_.retention_ms > 0) drop_expired_windows();
        flusher_busy_ns_.fetch_add(thread_cpu_ns() - woke, std::memory_order_relaxed);
        lock.lock();
    }
}

std::int64_t Shard::retention_cutoff() const {
    if (options_.retention_ms <= 0) return INT64_MIN;
    return options_.clock() - options_.retention_ms;
}

void Shard::commit(std::deque<QueuedWrite>& work) {
    // Each queued write's part of the outcome; its status is the batch's.
    std::vector<WriteResult> parts(work.size());
    auto& staged = commit_staged_;
    staged.clear();
    std::size_t total = 0;
    for (auto& w : work)
        total += w.points.size();
    staged.reserve(total);

    auto& batch = commit_batch_;
    batch.Clear();
    auto& log = commit_log_;
    log.clear();
    log.reserve(total * 14);
    std::size_t new_series = 0;
    const std::int64_t cutoff = retention_cutoff();
    std::int64_t prev_ts = 0;
    Status status;

    for (std::size_t w = 0; w < work.size() && status.is_ok(); ++w) {
        for (auto& point : work[w].points) {
            std::uint64_t id;
            if (auto found = index_.find(point.series)) {
                id = *found;
            } else {
                auto added = index_.add(point.series, id);
                if (added == SeriesIndex::AddResult::limit_reached) {
                    ++parts[w].rejected_series_limit;
                    continue;
                }
                if (added == SeriesIndex::AddResult::bad_key) {
                    ++parts[w].rejected_invalid;
                    continue;
                }
                ++new_series;
                {
                    std::unique_lock lock(head_mutex_);
                    states_.emplace_back();
                }
                states_[id].loaded = true;  // a new series has nothing persisted
                auto s = batch.Put(index_cf_.get(), index_key(id), point.series);
                if (!s.ok()) {
                    status = from_rocks(s, "batch");
                    break;
                }
            }
            auto& st = states_[id];
            if (!st.loaded) {
                if (auto s = load_state(id, st); !s.is_ok()) {
                    status = s;
                    break;
                }
            }
            if (point.timestamp_ms < cutoff ||
                (st.max_ts != INT64_MIN &&
                 point.timestamp_ms < st.max_ts - options_.out_of_order_ms)) {
                ++parts[w].rejected_late;
                continue;
            }
            st.max_ts = std::max(st.max_ts, point.timestamp_ms);
            put_varint(log, id);
            put_svarint(log, point.timestamp_ms - prev_ts);
            put_double(log, point.value);
            prev_ts = point.timestamp_ms;
            staged.push_back(
                {id, {point.timestamp_ms, point.value}, point.timestamp_ms <= st.sealed_max_ts});
            ++parts[w].accepted;
        }
    }
    if (status.is_ok() && !staged.empty()) {
        auto s = batch.Put(default_cf_.get(), log_key(next_log_sequence_), log);
        if (!s.ok()) status = from_rocks(s, "batch");
    }
    auto started = std::chrono::steady_clock::now();
    if (status.is_ok() && batch.Count() > 0) {
        rocksdb::WriteOptions wo;
        wo.sync = options_.fsync == FsyncPolicy::batch;
        status = from_rocks(db_->Write(wo, &batch), "write");
    }
    auto latency = std::chrono::steady_clock::now() - started;

    if (status.is_ok()) {
        if (!staged.empty()) ++next_log_sequence_;
        // The new series are in the WAL: queries may list them (their states_ exist already).
        if (new_series > 0) index_.publish();
        std::unique_lock lock(head_mutex_);
        for (const auto& s : staged) {
            auto& st = states_[s.id];
            if (st.pending.empty()) {
                dirty_.push_back(s.id);
            } else if (s.sample.ts <= st.pending.back().ts) {
                st.pending_sorted = false;
            }
            st.pending.push_back(s.sample);
            st.pending_late = st.pending_late || s.late;
        }
        head_points_ += staged.size();
        head_points_visible_.fetch_add(staged.size(), std::memory_order_relaxed);
    } else {
        // Nothing of this batch reached the WAL: forget the series it introduced.
        for (std::size_t i = 0; i < new_series; ++i)
            index_.remove_last();
        std::unique_lock lock(head_mutex_);
        states_.resize(index_.size());
    }

    std::uint64_t late = 0, over = 0, invalid = 0;
    for (auto& p : parts) {
        late += p.rejected_late;
        over += p.rejected_series_limit;
        invalid += p.rejected_invalid;
    }
    if (status.is_ok()) {
        points_written_.fetch_add(staged.size(), std::memory_order_relaxed);
        rejected_late_.fetch_add(late, std::memory_order_relaxed);
        rejected_limit_.fetch_add(over, std::memory_order_relaxed);
        rejected_invalid_.fetch_add(invalid, std::memory_order_relaxed);
    }
    batches_.fetch_add(1, std::memory_order_relaxed);
    // Metrics first, so a caller that saw its callback also sees the batch counted.
    if (options_.on_batch) {
        options_.on_batch({options_.index, staged.size(),
                           std::chrono::duration_cast<std::chrono::nanoseconds>(latency)});
    }
    // Queue room is released before the callbacks run, so a producer retrying from a callback
    // (or from on_space_available) finds it.
    reserved_.fetch_sub(total, std::memory_order_acq_rel);
    for (std::size_t w = 0; w < work.size(); ++w) {
        // Nothing of a failed batch is in the WAL, so its parts carry no counts.
        if (!status.is_ok()) parts[w] = WriteResult{.status = status};
        work[w].join->complete(parts[w]);
    }
    if (options_.on_space_available) options_.on_space_available();
}

// The writer's view: everything on disk is sealed.
Status Shard::load_state(std::uint64_t id, SeriesState& st) {
    ChunkState chunks;
    if (auto s = read_last_chunk(id, chunks); !s.is_ok()) return s;
    st.sealed_max_ts = std::max(st.sealed_max_ts, chunks.persisted_max_ts);
    st.max_ts = std::max(st.max_ts, st.sealed_max_ts);
    st.loaded = true;
    return Status::ok();
}

Status Shard::read_last_chunk(std::uint64_t id, ChunkState& st) const {
    rocksdb::ReadOptions ro;
    ro.prefix_same_as_start = true;
    std::vector<std::pair<std::int64_t, CfHandle>> windows;
    {
        std::shared_lock lock(windows_mutex_);
        windows.assign(windows_.rbegin(), windows_.rend());
    }
    for (auto& [start, cf] : windows) {
        std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf.get()));
        it->SeekForPrev(record_key(RecordKind::chunk, id, INT64_MAX));
        RecordKey key;
        if (it->Valid() && parse_record_key(it->key().ToStringView(), key) &&
            key.kind == RecordKind::chunk && key.series_id == id) {
            ChunkHeader header;
            if (auto s = decode_chunk_header(it->value().ToStringView(), header); !s.is_ok()) {
                return s;
            }
            st.persisted_max_ts = header.last_ts;
            st.last_chunk_ts = key.ts;
            st.last_chunk_points = header.count;
            break;
        }
        if (!it->status().ok()) return from_rocks(it->status(), "load series");
    }
    st.loaded = true;
    return Status::ok();
}

Shard::CfHandle Shard::window(std::int64_t start) const {
    std::shared_lock lock(windows_mutex_);
    auto it = windows_.find(start);
    return it == windows_.end() ? nullptr : it->second;
}

Result<Shard::CfHandle> Shard::ensure_window(std::int64_t start) {
    if (auto cf = window(start)) return cf;
    rocksdb::ColumnFamilyHandle* handle = nullptr;
    auto s =
        db_->CreateColumnFamily(window_options_, kWindowPrefix + std::to_string(start), &handle);
    if (!s.ok()) return from_rocks(s, "create window");
    CfHandle cf(handle, [db = db_.get()](rocksdb::ColumnFamilyHandle* p) {
        (void)db->DestroyColumnFamilyHandle(p);
    });
    std::unique_lock lock(windows_mutex_);
    windows_[start] = cf;
    return cf;
}

std::vector<std::pair<std::int64_t, Shard::CfHandle>> Shard::windows_overlapping(
    std::int64_t start, std::int64_t end) const {
    std::vector<std::pair<std::int64_t, CfHandle>> out;
    std::shared_lock lock(windows_mutex_);
    for (auto& [ws, cf] : windows_) {
        if (ws < end && ws + options_.window_ms > start) out.emplace_back(ws, cf);
    }
    return out;
}

void Shard::drop_expired_windows() {
    std::int64_t cutoff = retention_cutoff();
    std::vector<CfHandle> expired;
    {
        std::unique_lock lock(windows_mutex_);
        for (auto it = windows_.begin();
             it != windows_.end() && it->first + options_.window_ms <= cutoff;) {
            expired.push_back(it->second);
            it = windows_.erase(it);
        }
    }
    for (auto& cf : expired) {
        // Readers holding the handle still read it; the files go when the last handle does.
        if (db_->DropColumnFamily(cf.get()).ok()) windows_dropped_.fetch_add(1);
    }
    if (!expired.empty()) {
        // Series whose newest chunk was in a dropped window must re-learn their state.
        for (auto& st : chunk_states_) {
            if (st.persisted_max_ts != INT64_MIN && st.persisted_max_ts < cutoff) st.loaded = false;
        }
    }
}

// Flush thread: the job's points into chunks and rollups, and its log records deleted, in one
// atomic write; then the handed-off points leave the head, under the lock readers take their
// snapshot in.
Status Shard::write_job(const FlushJob& job) {
    rocksdb::WriteBatch batch;
    Status status;
    for (const auto& series : job.series) {
        if (chunk_states_.size() <= series.id) chunk_states_.resize(series.id + 1);
        auto& cs = chunk_states_[series.id];
        if (!cs.loaded) status = read_last_chunk(series.id, cs);
        if (status.is_ok())
            status = flush_series(series.id, *series.samples, series.sorted, cs, batch);
        if (!status.is_ok()) break;
    }
    if (status.is_ok()) {
        auto d = batch.DeleteRange(default_cf_.get(), log_key(0), log_key(job.log_end));
        if (!d.ok()) status = from_rocks(d, "batch");
    }
    rocksdb::WriteOptions wo;
    wo.sync = options_.fsync == FsyncPolicy::batch;
    std::unique_lock lock(head_mutex_);
    if (status.is_ok()) status = from_rocks(db_->Write(wo, &batch), "flush write");
    if (!status.is_ok()) {
        lock.unlock();
        for (const auto& series : job.series) {
            if (series.id < chunk_states_.size()) chunk_states_[series.id].loaded = false;
        }
        return status;
    }
    for (const auto& series : job.series) {
        auto& st = states_[series.id];
        st.flushing.reset();
        st.flushing_late = false;
    }
    lock.unlock();
    head_points_visible_.fetch_sub(job.points, std::memory_order_relaxed);
    flushes_.fetch_add(1, std::memory_order_relaxed);
    return Status::ok();
}

// Writes one series' pending points into chunks and rollups. The in-memory state it updates
// (persisted_max_ts, last chunk) describes the batch about to be written; if that write fails the
// state is reloaded from disk before the next use.
Status Shard::flush_series(std::uint64_t id, const std::vector<Sample>& samples, bool sorted,
                           ChunkState& st, rocksdb::WriteBatch& batch) {
    std::vector<Sample> pending = samples;
    if (!sorted) sort_keep_last(pending);
    const std::int64_t cutoff = retention_cutoff();
    const std::size_t max_chunk = options_.target_chunk_points * 2;
    st.loaded = false;  // reset below on success of building the batch
    std::size_t i = 0;
    while (i < pending.size()) {
        std::int64_t ws = floor_to(pending[i].ts, options_.window_ms);
        std::size_t j = i;
        while (j < pending.size() && pending[j].ts < ws + options_.window_ms)
            ++j;
        std::vector<Sample> part(pending.begin() + static_cast<std::ptrdiff_t>(i),
                                 pending.begin() + static_cast<std::ptrdiff_t>(j));
        i = j;
        if (ws + options_.window_ms <= cutoff) continue;  // its window is already gone
        auto cf_result = ensure_window(ws);
        if (!cf_result.is_ok()) return cf_result.status();
        CfHandle cf = cf_result.value();

        std::vector<Sample> chunk_points;  // what gets (re)written as chunks
        std::vector<Sample> rollup_points;
        bool replace_rollups = false;
        if (part.front().ts > st.persisted_max_ts) {
            // Append: extend the newest chunk while it is small, so chunks stay big enough to
            // compress well even when the head is flushed often.
            chunk_points = part;
            rollup_points = std::move(part);
            if (st.last_chunk_ts != INT64_MIN && st.last_chunk_ts >= ws &&
                st.last_chunk_points < options_.target_chunk_points) {
                std::string value;
                auto key = record_key(RecordKind::chunk, id, st.last_chunk_ts);
                auto g = db_->Get({}, cf.get(), key, &value);
                if (g.ok()) {
                    std::vector<Sample> old;
                    if (auto s = decode_chunk(value, old); !s.is_ok()) return s;
                    old.insert(old.end(), chunk_points.begin(), chunk_points.end());
                    chunk_points = std::move(old);
                } else if (!g.IsNotFound()) {
                    return from_rocks(g, "read chunk");
                }
            }
        } else {
            // Late or duplicate samples: rewrite every chunk overlapping the hours they touch,
            // and recompute those hours' rollups from the merged raw points.
            std::int64_t lo = floor_to(part.front().ts, kHour);
            std::int64_t hi = floor_to(part.back().ts, kHour) + kHour;
            std::vector<Sample> old;
            rocksdb::ReadOptions ro;
            ro.prefix_same_as_start = true;
            std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf.get()));
            it->SeekForPrev(record_key(RecordKind::chunk, id, lo));
            RecordKey key;
            if (!it->Valid() || !parse_record_key(it->key().ToStringView(), key) ||
                key.kind != RecordKind::chunk || key.series_id != id) {
                it->Seek(record_key(RecordKind::chunk, id, lo));
            }
            for (; it->Valid(); it->Next()) {
                if (!parse_record_key(it->key().ToStringView(), key) ||
                    key.kind != RecordKind::chunk || key.series_id != id || key.ts >= hi) {
                    break;
                }
                ChunkHeader header;
                if (auto s = decode_chunk_header(it->value().ToStringView(), header); !s.is_ok()) {
                    return s;
                }
                if (header.last_ts < lo) continue;
                if (auto s = decode_chunk(it->value().ToStringView(), old); !s.is_ok()) return s;
                auto d = batch.Delete(cf.get(), it->key());
                if (!d.ok()) return from_rocks(d, "batch");
            }
            if (!it->status().ok()) return from_rocks(it->status(), "read chunks");
            chunk_points = merge_samples(old, part);
            for (const auto& p : chunk_points) {
                if (p.ts >= lo && p.ts < hi) rollup_points.push_back(p);
            }
            replace_rollups = true;
        }
        for (std::size_t c = 0; c < chunk_points.size(); c += max_chunk) {
            std::size_t n = std::min(max_chunk, chunk_points.size() - c);
            auto key = record_key(RecordKind::chunk, id, chunk_points[c].ts);
            auto p = batch.Put(cf.get(), key, encode_chunk(&chunk_points[c], n));
            if (!p.ok()) return from_rocks(p, "batch");
            if (chunk_points[c + n - 1].ts >= st.persisted_max_ts) {
                st.last_chunk_ts = chunk_points[c].ts;
                st.last_chunk_points = n;
            }
        }
        st.persisted_max_ts = std::max(st.persisted_max_ts, chunk_points.back().ts);
        if (auto s = write_rollups(id, ws, cf, rollup_points, replace_rollups, batch); !s.is_ok()) {
            return s;
        }
    }
    st.loaded = true;
    return Status::ok();
}

// 1-minute buckets of each touched hour go into that hour's block (merged with what is there,
// or replacing it when `raw` covers the hours completely); each touched hour's 1-hour bucket is
// then recomputed from its minute block, so the two resolutions never disagree.
Status Shard::write_rollups(std::uint64_t id, std::int64_t window, const CfHandle& cf,
                            const std::vector<Sample>& raw, bool replace,
                            rocksdb::WriteBatch& batch) {
    if (raw.empty()) return Status::ok();
    auto minutes = bucketize(raw.data(), raw.size(), kMinute);
    std::vector<RollupBucket> hours;
    std::size_t i = 0;
    while (i < minutes.size()) {
        std::int64_t hour = floor_to(minutes[i].start, kHour);
        std::size_t j = i;
        while (j < minutes.size() && minutes[j].start < hour + kHour)
            ++j;
        std::vector<RollupBucket> block(minutes.begin() + static_cast<std::ptrdiff_t>(i),
                                        minutes.begin() + static_cast<std::ptrdiff_t>(j));
        i = j;
        auto key = record_key(RecordKind::rollup_1m, id, hour);
        if (!replace) {
            std::string value;
            auto g = db_->Get({}, cf.get(), key, &value);
            if (g.ok()) {
                std::vector<RollupBucket> old;
                if (auto s = decode_rollups(value, hour, kMinute, old); !s.is_ok()) return s;
                merge_buckets(old, block, false);
                block = std::move(old);
            } else if (!g.IsNotFound()) {
                return from_rocks(g, "read rollup");
            }
        }
        auto p = batch.Put(cf.get(), key, encode_rollups(block, hour, kMinute));
        if (!p.ok()) return from_rocks(p, "batch");
        RollupBucket h;
        h.start = hour;
        for (const auto& m : block)
            h.merge_later(m);
        hours.push_back(h);
    }
    auto key = record_key(RecordKind::rollup_1h, id, window);
    std::string value;
    std::vector<RollupBucket> block;
    auto g = db_->Get({}, cf.get(), key, &value);
    if (g.ok()) {
        if (auto s = decode_rollups(value, window, kHour, block); !s.is_ok()) return s;
    } else if (!g.IsNotFound()) {
        return from_rocks(g, "read rollup");
    }
    merge_buckets(block, hours, true);
    auto p = batch.Put(cf.get(), key, encode_rollups(block, window, kHour));
    if (!p.ok()) return from_rocks(p, "batch");
    return Status::ok();
}

Status Shard::read_raw(const std::vector<std::uint64_t>& ids, std::int64_t start, std::int64_t end,
                       std::int64_t& budget, std::vector<SeriesSamples>& out) const {
    std::vector<std::vector<Sample>> head(ids.size());
    std::optional<SnapshotGuard> snapshot;
    {
        // Snapshot and head copy under one lock: a flush moves points from the head into chunks
        // under the exclusive lock, so each point is seen exactly once.
        std::shared_lock lock(head_mutex_);
        snapshot.emplace(db_.get());
        for (std::size_t i = 0; i < ids.size(); ++i)
            copy_head(states_[ids[i]], start, end, head[i]);
    }
    auto windows = windows_overlapping(start, end);
    rocksdb::ReadOptions ro;
    ro.snapshot = snapshot->get();
    ro.prefix_same_as_start = true;
    std::vector<Sample> decoded;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        std::uint64_t id = ids[i];
        SeriesSamples series{id, index_.key(id), {}};
        for (auto& [ws, cf] : windows) {
            std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf.get()));
            RecordKey key;
            it->SeekForPrev(record_key(RecordKind::chunk, id, start));
            if (!it->Valid() || !parse_record_key(it->key().ToStringView(), key) ||
                key.kind != RecordKind::chunk || key.series_id != id) {
                it->Seek(record_key(RecordKind::chunk, id, start));
            }
            for (; it->Valid(); it->Next()) {
                if (!parse_record_key(it->key().ToStringView(), key) ||
                    key.kind != RecordKind::chunk || key.series_id != id || key.ts >= end) {
                    break;
                }
                decoded.clear();
                if (auto s = decode_chunk(it->value().ToStringView(), decoded); !s.is_ok()) {
                    return s;
                }
                for (const auto& p : decoded) {
                    if (p.ts >= start && p.ts < end) series.samples.push_back(p);
                }
            }
            if (!it->status().ok()) return from_rocks(it->status(), "read chunks");
        }
        if (!head[i].empty()) {
            sort_keep_last(head[i]);
            series.samples = merge_samples(series.samples, head[i]);
        }
        budget -= static_cast<std::int64_t>(series.samples.size());
        if (budget < 0) return limit_error("points", 0);
        if (!series.samples.empty()) out.push_back(std::move(series));
    }
    return Status::ok();
}

Status Shard::read_rollups(const std::vector<std::uint64_t>& ids, Resolution resolution,
                           std::int64_t start, std::int64_t end, std::int64_t& budget,
                           std::vector<std::vector<RollupBucket>>& out) const {
    const std::int64_t width = static_cast<std::int64_t>(resolution);
    std::vector<std::vector<Sample>> head(ids.size());
    std::vector<bool> late_head(ids.size(), false);
    std::optional<SnapshotGuard> snapshot;
    {
        std::shared_lock lock(head_mutex_);
        snapshot.emplace(db_.get());
        for (std::size_t i = 0; i < ids.size(); ++i) {
            const auto& st = states_[ids[i]];
            copy_head(st, start, end, head[i]);
            late_head[i] = st.pending_late || st.flushing_late;
        }
    }
    auto windows = windows_overlapping(start, end);
    rocksdb::ReadOptions ro;
    ro.snapshot = snapshot->get();
    ro.prefix_same_as_start = true;
    out.assign(ids.size(), {});
    for (std::size_t i = 0; i < ids.size(); ++i) {
        std::uint64_t id = ids[i];
        auto& buckets = out[i];
        if (late_head[i]) {
            std::vector<SeriesSamples> raw;
            std::int64_t unlimited = INT64_MAX;
            if (auto s = read_raw({id}, start, end, unlimited, raw); !s.is_ok()) return s;
            if (!raw.empty()) {
                buckets = bucketize(raw[0].samples.data(), raw[0].samples.size(), width);
            }
        } else {
            for (auto& [ws, cf] : windows) {
                auto kind =
                    resolution == Resolution::hour ? RecordKind::rollup_1h : RecordKind::rollup_1m;
                std::int64_t block_width =
                    resolution == Resolution::hour ? options_.window_ms : kHour;
                std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf.get()));
                it->Seek(record_key(kind, id, floor_to(std::max(start, ws), block_width)));
                RecordKey key;
                std::vector<RollupBucket> block;
                for (; it->Valid(); it->Next()) {
                    if (!parse_record_key(it->key().ToStringView(), key) || key.kind != kind ||
                        key.series_id != id || key.ts >= end) {
                        break;
                    }
                    block.clear();
                    if (auto s = decode_rollups(it->value().ToStringView(), key.ts, width, block);
                        !s.is_ok()) {
                        return s;
                    }
                    for (const auto& b : block) {
                        if (b.start >= start && b.start < end) buckets.push_back(b);
                    }
                }
                if (!it->status().ok()) return from_rocks(it->status(), "read rollups");
            }
            if (!head[i].empty()) {
                sort_keep_last(head[i]);
                merge_buckets(buckets, bucketize(head[i].data(), head[i].size(), width), false);
            }
        }
        budget -= static_cast<std::int64_t>(buckets.size());
        if (budget < 0) return limit_error("points", 0);
    }
    return Status::ok();
}

ShardStats Shard::stats() const {
    ShardStats s;
    s.points_written = points_written_.load(std::memory_order_relaxed);
    s.points_rejected_late = rejected_late_.load(std::memory_order_relaxed);
    s.points_rejected_series_limit = rejected_limit_.load(std::memory_order_relaxed);
    s.points_rejected_invalid = rejected_invalid_.load(std::memory_order_relaxed);
    s.series = index_.size();
    s.batches = batches_.load(std::memory_order_relaxed);
    s.flushes = flushes_.load(std::memory_order_relaxed);
    s.windows_dropped = windows_dropped_.load(std::memory_order_relaxed);
    s.queue_depth = reserved_.load(std::memory_order_relaxed);
    s.head_points = head_points_visible_.load(std::memory_order_relaxed);
    s.writer_busy_ns = busy_ns_.load(std::memory_order_relaxed);
    s.flusher_busy_ns = flusher_busy_ns_.load(std::memory_order_relaxed);
    return s;
}

}  // namespace citygate::storage::detail
