// Shard life cycle: the RocksDB options and column families, recovery of the series index and
// of the head from the batch log at open, starting the threads, and the orderly close.
#include "storage/detail/shard.hpp"

#include <rocksdb/filter_policy.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>
#include <rocksdb/write_buffer_manager.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

#include "storage/detail/coding.hpp"
#include "storage/detail/keys.hpp"
#include "storage/detail/layout.hpp"
#include "storage/detail/rocks_status.hpp"

namespace citygate::storage::detail {
namespace {

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
    db_options_.keep_log_file_num = 4;
    if (options_.env) db_options_.env = options_.env.get();
    // Small volumes: RocksDB preallocates each WAL file at 1.1 x the largest write buffer (141 MB
    // with the batch log's 128 MiB, so a 64 MB volume failed on the first batch) and each
    // MANIFEST at 4 MiB. Files and buffers are capped from this shard's share of the volume;
    // on a volume of a few GiB per shard or more nothing changes. The WAL preallocation is
    // bounded by max_total_wal_size, which also makes RocksDB flush the memtables holding the
    // oldest WAL, so the WAL of a shard stays within about an eighth of its share.
    const std::uint64_t share =
        options_.volume_bytes / std::max(1u, options_.shard_count);  // 0: unknown volume
    auto capped = [share](std::uint64_t value, std::uint64_t divisor, std::uint64_t floor) {
        if (share == 0) return value;
        return std::min(value, std::max(floor, share / divisor));
    };
    constexpr std::uint64_t kMiB = 1 << 20;
    db_options_.max_total_wal_size = capped(256 * kMiB, 8, kMiB);
    // Nor is any WAL preallocated: its blocks count in du and in the volume's free space while
    // the file is open, up to 141 MB a shard for a few MB written (the data directory of a
    // gateway that had just taken the city's hour was 56 bytes/point allocated against 13
    // written). Blocks are allocated as the log is written instead.
    db_options_.allow_fallocate = false;
    db_options_.max_manifest_file_size = capped(64 * kMiB, 16, kMiB);
    db_options_.manifest_preallocation_size = capped(4 * kMiB, 64, 64 << 10);
    if (share > 0 && share < (std::uint64_t{4} << 30)) {
        db_options_.max_log_file_size = std::max<std::uint64_t>(share / 64, 256 << 10);
    }
    // One budget for the memtables of every column family of every shard (see
    // EngineOptions::memtable_budget_bytes): window families come and go with time, so per-family
    // write buffers alone do not bound memory.
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
    // Index and filter blocks live in the block cache, charged to it, not beside each open
    // file (where they grow with the data, uncounted): in its high-priority pool, so data
    // blocks give way first, and pinned for L0 files, which every flush reads.
    table.cache_index_and_filter_blocks = true;
    table.cache_index_and_filter_blocks_with_high_priority = true;
    table.pin_l0_filter_and_index_blocks_in_cache = true;

    // 32 MiB memtables per window CF: bytes/point after compaction is the same at 1, 4, 32 and
    // 128 MiB (1.425), ingest did not differ beyond noise (writer-thread rates 2.5-3.7 M
    // points/s across all four). A memtable absorbs the rewrites of a series' newest chunk and
    // hour rollup block between flushes, so it should hold a few head flushes' worth (a 2 M
    // point head is about 3 MB of chunks and rollups); the price is up to 3 x 32 MiB per shard
    // for the window being written.
    // A memtable budget smaller than the write buffers would make every memtable flush early:
    // each shard's buffers are sized within its share of it instead.
    std::uint64_t memtable_share = UINT64_MAX;
    if (options_.write_buffer_manager && options_.write_buffer_manager->enabled()) {
        memtable_share =
            options_.write_buffer_manager->buffer_size() / std::max(1u, options_.shard_count);
    }
    window_options_.write_buffer_size = std::min<std::uint64_t>(
        capped(tuning.write_buffer_bytes, 16, kMiB), std::max(kMiB, memtable_share / 8));
    window_options_.max_write_buffer_number = 3;
    // Two L0 files start a compaction, not four: with head flushes every 5 minutes a window's
    // memtable is flushed during the hour while later flushes still rewrite its series' newest
    // chunks and rollup blocks, so L0 holds stale versions until a compaction. City bench with
    // 5-minute heads (--head-flush-points 262144), after the hour, clean close and RocksDB's own
    // compactions: 3.296 bytes/point at 4 (two L0 files: no compaction), 1.835 at 2.
    window_options_.level0_file_num_compaction_trigger = tuning.level0_compaction_trigger;
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

    // The batch log and the series index are read only at open: the same cache (RocksDB would
    // give each column family a cache of its own otherwise), no filter.
    rocksdb::BlockBasedTableOptions plain_table;
    plain_table.block_cache = options_.block_cache;
    plain_table.cache_index_and_filter_blocks = true;
    plain_table.format_version = 5;
    std::shared_ptr<rocksdb::TableFactory> plain(rocksdb::NewBlockBasedTableFactory(plain_table));

    rocksdb::ColumnFamilyOptions log_options;
    log_options.table_factory = plain;
    log_options.write_buffer_size =
        std::min<std::uint64_t>(capped(128 * kMiB, 8, kMiB), std::max(4 * kMiB, memtable_share));
    log_options.max_write_buffer_number = 2;
    log_options.compression = rocksdb::kNoCompression;  // log records are transient

    rocksdb::ColumnFamilyOptions index_options;
    index_options.table_factory = plain;
    index_options.write_buffer_size = capped(8 * kMiB, 16, kMiB);
    index_options.compression = rocksdb::kLZ4Compression;
    index_options.bottommost_compression = rocksdb::kZSTD;

    auto path = shard_directory(options_.directory, options_.index);
    std::error_code ec;
    std::filesystem::create_directories(path, ec);
    if (ec)
        return Status::error(Status::Code::io_error,
                             "create " + path.string() + ": " + ec.message());

    if (auto checked = check_wal(path); !checked.is_ok()) return checked;

    std::vector<std::string> names;
    auto listed = rocksdb::DB::ListColumnFamilies(db_options_, path.string(), &names);
    if (!listed.ok()) names = {rocksdb::kDefaultColumnFamilyName};  // a new database
    const bool has_index = std::find(names.begin(), names.end(), kIndexCf) != names.end();
    // Read-only needs a database to read: a new one is created (a few KiB) even on a full volume.
    const bool read_only = options_.read_only && listed.ok() && has_index;
    if (!has_index) names.push_back(kIndexCf);

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
    auto s = read_only ? rocksdb::DB::OpenForReadOnly(db_options_, path.string(), descriptors,
                                                      &handles, &db)
                       : rocksdb::DB::Open(db_options_, path.string(), descriptors, &handles, &db);
    if (!s.ok()) return from_rocks(s, read_only ? "open read-only" : "open");
    db_.reset(db);
    read_only_.store(read_only, std::memory_order_release);
    // The newest acknowledged sequence starts at what was recovered: after an accepted loss the
    // sequence numbers continue below what the lost writes had.
    open_acked(path);
    note_acknowledged();
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
    return load_sealed_windows();
}

Status Shard::recover() {
    {
        // One sequential pass over the whole index: big reads, and no use caching its blocks.
        rocksdb::ReadOptions scan;
        scan.readahead_size = 4 << 20;
        scan.fill_cache = false;
        std::uint64_t estimate = 0;
        if (db_->GetIntProperty(index_cf_.get(), "rocksdb.estimate-num-keys", &estimate)) {
            index_.reserve(static_cast<std::size_t>(estimate));
        }
        std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(scan, index_cf_.get()));
        for (it->Seek("s"); it->Valid() && it->key().starts_with("s"); it->Next()) {
            if (it->key().size() != 9) return Status::error(Status::Code::corruption, "index key");
            if (!index_.restore(get_u64_be(it->key().data() + 1), it->value().ToStringView())) {
                return Status::error(Status::Code::corruption, "index: ids out of order");
            }
        }
        if (!it->status().ok()) return from_rocks(it->status(), "index scan");
    }
    if (options_.total_series) options_.total_series->fetch_add(index_.live());
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
    std::uint64_t capacity = 0;
    for (std::uint64_t id : dirty_)
        capacity += states_[id].pending.capacity();
    head_bytes_ = capacity * sizeof(Sample);
    report_index_memory();
    return Status::ok();
}

void Shard::fail(const Status& status) {
    {
        std::lock_guard lock(failure_mutex_);
        if (failed_.load(std::memory_order_relaxed)) return;
        failure_ = status;
        failed_.store(true, std::memory_order_release);
    }
    if (options_.on_health_event) {
        options_.on_health_event(
            {HealthEvent::Kind::shard_failed, options_.index,
             "shard " + std::to_string(options_.index) +
                 " is unwritable after a RocksDB error (restart required): " + status.message()});
    }
}

Status Shard::failure() const {
    std::lock_guard lock(failure_mutex_);
    return failure_;
}

void Shard::request_reopen() {
    {
        std::lock_guard lock(queue_mutex_);
        tasks_.push_back([this] { reopen_writable(); });
    }
    queue_cv_.notify_one();
}

void Shard::wake() {
    queue_cv_.notify_one();
}

void Shard::reopen_writable() {
    if (!read_only() || failed()) return;
    if (options_.disk && options_.disk->full()) return;  // asked again when space returns
    Status status;
    {
        std::unique_lock lock(db_mutex_);
        {
            std::unique_lock windows(windows_mutex_);
            windows_.clear();
        }
        default_cf_.reset();
        index_cf_.reset();
        db_.reset();
        // The same files: the series index and the head recovered from them stay right.
        options_.read_only = false;
        status = open_db();
        if (!status.is_ok()) {
            // Back to reading what is there; the shard is failed either way.
            options_.read_only = true;
            default_cf_.reset();
            index_cf_.reset();
            {
                std::unique_lock windows(windows_mutex_);
                windows_.clear();
            }
            db_.reset();
            if (!open_db().is_ok()) db_.reset();
        }
    }
    if (!status.is_ok()) {
        fail(status);
        return;
    }
    if (options_.on_health_event) {
        options_.on_health_event({HealthEvent::Kind::reopened_writable, options_.index,
                                  "shard " + std::to_string(options_.index) +
                                      " reopened writable: free space returned"});
    }
    if (options_.on_space_available) options_.on_space_available();
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
    close_acked();
    if (db_) {
        // Best effort at close: every acknowledged point is already in the WAL.
        (void)db_->Close();
    }
}

}  // namespace citygate::storage::detail
