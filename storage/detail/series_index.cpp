// Series index: ids and postings.
#include "storage/detail/series_index.hpp"

#include <algorithm>
#include <mutex>

#include "storage/selector.hpp"

namespace citygate::storage::detail {

namespace {

// A string's heap share: its characters and the allocator's header, beyond the short-string
// buffer it holds inline.
std::size_t string_heap(std::size_t size) {
    return size < sizeof(std::string) / 2 ? 0 : size + 1 + 16;
}

// What one series costs the index beyond its tags: its key in keys_, the ids_ node and bucket.
std::size_t series_bytes(std::string_view key) {
    return sizeof(std::string) + string_heap(key.size()) + 48 + 8;
}

// A posting: the id in a list that grows by doubling (half again on average).
constexpr std::size_t kPostingBytes = 12;

// A label value seen for the first time: its postings node (key, list, link, hash), the list's
// first allocation and its entry pointer.
std::size_t value_bytes(std::string_view value) {
    return sizeof(std::string) + string_heap(value.size()) + 24 + 16 + 32 + 8;
}

}  // namespace

SeriesIndex::AddResult SeriesIndex::add(std::string_view key, std::uint64_t& id) {
    if (keys_.size() - erased_.size() >= max_series_) return AddResult::limit_reached;
    auto parsed = parse_series_key(key);
    if (!parsed.is_ok()) return AddResult::bad_key;
    std::unique_lock lock(mutex_);
    id = keys_.size();
    keys_.emplace_back(key);
    ids_.emplace(keys_.back(), id);
    add_memory(series_bytes(key));
    index_tags(id, parsed.value(), true);
    return AddResult::added;
}

void SeriesIndex::remove_last() {
    std::unique_lock lock(mutex_);
    std::uint64_t id = keys_.size() - 1;
    if (keys_.empty() || id < published_.load(std::memory_order_relaxed)) return;
    auto parsed = parse_series_key(keys_.back());  // it was valid when added
    index_tags(id, parsed.value(), false);
    add_memory(-static_cast<std::ptrdiff_t>(series_bytes(keys_.back())));
    ids_.erase(keys_.back());
    keys_.pop_back();
}

bool SeriesIndex::erase(std::uint64_t id) {
    std::unique_lock lock(mutex_);
    if (id >= keys_.size() || keys_[id].empty()) return false;
    auto parsed = parse_series_key(keys_[id]);  // it was valid when added
    if (parsed.is_ok()) index_tags(id, parsed.value(), false);
    add_memory(sizeof(std::string) - static_cast<std::ptrdiff_t>(series_bytes(keys_[id])));
    ids_.erase(keys_[id]);
    add_memory(static_cast<std::ptrdiff_t>(series_bytes(keys_[id])));  // kept in erased_keys_
    erased_keys_.emplace(id, std::move(keys_[id]));
    keys_[id].clear();
    keys_[id].shrink_to_fit();
    erased_.insert(std::lower_bound(erased_.begin(), erased_.end(), id), id);
    erased_count_.fetch_add(1, std::memory_order_relaxed);
    return true;
}

std::optional<std::uint64_t> SeriesIndex::find_published(std::string_view key) const {
    std::shared_lock lock(mutex_);
    auto it = ids_.find(key);
    if (it == ids_.end() || it->second >= published_.load(std::memory_order_acquire)) {
        return std::nullopt;
    }
    return it->second;
}

std::string_view SeriesIndex::erased_key(std::uint64_t id) const {
    auto it = erased_keys_.find(id);
    return it == erased_keys_.end() ? std::string_view() : std::string_view(it->second);
}

bool SeriesIndex::restore(std::uint64_t id, std::string_view key) {
    if (id < keys_.size()) return false;
    auto parsed = parse_series_key(key);  // once: this runs for every series at every start
    if (!parsed.is_ok()) return false;
    std::unique_lock lock(mutex_);
    while (keys_.size() < id) {  // erased series
        erased_.push_back(keys_.size());
        keys_.emplace_back();
        add_memory(sizeof(std::string));
    }
    keys_.emplace_back(key);
    ids_.emplace(keys_.back(), id);
    add_memory(series_bytes(key));
    index_tags(id, parsed.value(), true);
    published_.store(keys_.size(), std::memory_order_release);
    return true;
}

void SeriesIndex::reserve(std::size_t series) {
    std::unique_lock lock(mutex_);
    ids_.reserve(std::min(series, max_series_));  // an estimate: never past the limit
}

std::string SeriesIndex::key(std::uint64_t id) const {
    // keys_ is a deque: an element does not move, but push_back() changes the deque's own map,
    // so indexing it races with the writer unless under the lock.
    std::shared_lock lock(mutex_);
    return id < keys_.size() ? keys_[id] : std::string();
}

std::size_t SeriesIndex::size() const {
    std::shared_lock lock(mutex_);
    return keys_.size();
}

std::size_t SeriesIndex::live() const {
    std::shared_lock lock(mutex_);
    return keys_.size() - erased_.size();
}

void SeriesIndex::index_tags(std::uint64_t id, ParsedKey& parsed, bool add) {
    auto& [measurement, tags] = parsed;
    tags.emplace_back("__name__", std::move(measurement));
    for (const auto& [name, value] : tags) {
        Label& label = labels_[name];
        auto [entry, created] = label.postings.try_emplace(value);
        if (created) {
            label.entries.push_back(&*entry);
            add_memory(value_bytes(value));  // entries are never erased
        }
        auto& list = entry->second;
        if (add) {
            list.push_back(id);  // ids grow, so lists stay sorted
            add_memory(kPostingBytes);
        } else if (!list.empty() && list.back() == id) {
            list.pop_back();  // the entry stays: readers may hold a pointer to it
            add_memory(-static_cast<std::ptrdiff_t>(kPostingBytes));
        } else {
            auto at = std::lower_bound(list.begin(), list.end(), id);
            if (at != list.end() && *at == id) {
                list.erase(at);
                add_memory(-static_cast<std::ptrdiff_t>(kPostingBytes));
            }
        }
    }
}

Status SeriesIndex::ids_where(const CompiledMatcher& m, bool accepted, QueryBudget& budget,
                              std::vector<std::uint64_t>& out) const {
    out.clear();
    using Entry = Postings::value_type;
    std::vector<const Entry*> entries;
    {
        std::shared_lock lock(mutex_);
        auto label = labels_.find(m.name());
        if (label == labels_.end()) return Status::ok();
        if (m.op() == Matcher::Op::equal && accepted) {
            auto it = label->second.postings.find(m.value());
            if (it == label->second.postings.end()) return Status::ok();
            if (auto s = budget.grow(out, it->second.size()); !s.is_ok()) return s;
            out.assign(it->second.begin(), it->second.end());
            return Status::ok();
        }
        const auto& all = label->second.entries;
        if (auto s = budget.grow(entries, all.size()); !s.is_ok()) return s;
        entries.assign(all.begin(), all.end());
    }
    // The matcher runs here, outside the lock, so the writer keeps adding series meanwhile.
    std::vector<const Entry*> chosen;
    for (std::size_t i = 0; i < entries.size(); ++i) {
        if (i % 1024 == 1023) {
            if (auto s = budget.check(); !s.is_ok()) return s;
        }
        if (m.matches(entries[i]->first) != accepted) continue;
        if (auto s = budget.grow(chosen, 1); !s.is_ok()) return s;
        chosen.push_back(entries[i]);
    }
    if (chosen.empty()) return Status::ok();
    {
        std::shared_lock lock(mutex_);  // the lists themselves grow under the writer's lock
        std::size_t total = 0;
        for (const Entry* entry : chosen)
            total += entry->second.size();
        if (auto s = budget.grow(out, total); !s.is_ok()) return s;
        for (const Entry* entry : chosen)
            out.insert(out.end(), entry->second.begin(), entry->second.end());
    }
    if (chosen.size() > 1) std::sort(out.begin(), out.end());
    return Status::ok();
}

Status SeriesIndex::match(const std::vector<CompiledMatcher>& matchers, QueryBudget& budget,
                          std::vector<std::uint64_t>& out) const {
    out.clear();
    const std::uint64_t published = published_.load(std::memory_order_acquire);
    std::optional<std::vector<std::uint64_t>> candidates;
    std::vector<std::uint64_t> ids;
    // A matcher that rejects the empty value needs the label present with an accepted value: its
    // postings bound the candidates. One that accepts "" (`x!="a"`, `x=~".*"`) can only exclude.
    for (const auto& m : matchers) {
        if (m.matches("")) continue;
        if (auto s = ids_where(m, true, budget, ids); !s.is_ok()) return s;
        if (!candidates) {
            candidates = std::move(ids);
            ids = {};
        } else {
            std::vector<std::uint64_t> both;
            if (auto s = budget.grow(both, std::min(ids.size(), candidates->size())); !s.is_ok()) {
                return s;
            }
            std::set_intersection(candidates->begin(), candidates->end(), ids.begin(), ids.end(),
                                  std::back_inserter(both));
            candidates = std::move(both);
        }
        if (candidates->empty()) return Status::ok();
    }
    if (!candidates) {
        std::vector<std::uint64_t> erased;
        {
            std::shared_lock lock(mutex_);
            if (auto s = budget.grow(erased, erased_.size()); !s.is_ok()) return s;
            erased.assign(erased_.begin(), erased_.end());
        }
        candidates.emplace();
        if (auto s = budget.grow(*candidates, published); !s.is_ok()) return s;
        std::size_t next_erased = 0;
        for (std::uint64_t i = 0; i < published; ++i) {
            if (next_erased < erased.size() && erased[next_erased] == i) {
                ++next_erased;
                continue;
            }
            candidates->push_back(i);
        }
    } else {
        // Ids are dense and sorted: drop the unpublished tail.
        auto end = std::lower_bound(candidates->begin(), candidates->end(), published);
        candidates->erase(end, candidates->end());
    }
    for (const auto& m : matchers) {
        if (!m.matches("")) continue;
        if (auto s = ids_where(m, false, budget, ids); !s.is_ok()) return s;
        std::vector<std::uint64_t> kept;
        if (auto s = budget.grow(kept, candidates->size()); !s.is_ok()) return s;
        std::set_difference(candidates->begin(), candidates->end(), ids.begin(), ids.end(),
                            std::back_inserter(kept));
        candidates = std::move(kept);
    }
    out = std::move(*candidates);
    return Status::ok();
}

Status SeriesIndex::label_values(std::string_view name, const std::vector<std::uint64_t>& ids,
                                 QueryBudget& budget, std::vector<std::string>& out) const {
    // From the ids' keys, one short lock each: a label's postings can hold millions of values.
    out.clear();
    for (std::size_t i = 0; i < ids.size(); ++i) {
        if (i % 1024 == 1023) {
            if (auto s = budget.check(); !s.is_ok()) return s;
        }
        auto parsed = parse_series_key(key(ids[i]));
        if (!parsed.is_ok()) continue;  // an id the index does not hold
        auto& [measurement, tags] = parsed.value();
        std::string* value = nullptr;
        if (name == "__name__") {
            value = &measurement;
        } else {
            auto tag =
                std::lower_bound(tags.begin(), tags.end(), name,
                                 [](const Tag& t, std::string_view n) { return t.first < n; });
            if (tag != tags.end() && tag->first == name) value = &tag->second;
        }
        if (!value) continue;
        if (auto s = budget.grow(out, 1); !s.is_ok()) return s;
        if (auto s = budget.charge(value->size()); !s.is_ok()) return s;
        out.push_back(std::move(*value));
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return Status::ok();
}

}  // namespace citygate::storage::detail
