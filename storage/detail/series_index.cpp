// Series index: ids and postings.
#include "storage/detail/series_index.hpp"

#include <algorithm>
#include <mutex>

#include "storage/selector.hpp"

namespace citygate::storage::detail {
namespace {

std::vector<std::uint64_t> intersect(const std::vector<std::uint64_t>& a,
                                     const std::vector<std::uint64_t>& b) {
    std::vector<std::uint64_t> out;
    std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
    return out;
}

}  // namespace

SeriesIndex::AddResult SeriesIndex::add(std::string_view key, std::uint64_t& id) {
    if (keys_.size() >= max_series_) return AddResult::limit_reached;
    auto parsed = parse_series_key(key);
    if (!parsed.is_ok()) return AddResult::bad_key;
    std::unique_lock lock(mutex_);
    id = keys_.size();
    keys_.emplace_back(key);
    ids_.emplace(keys_.back(), id);
    index_tags(id, keys_.back(), true);
    return AddResult::added;
}

void SeriesIndex::remove_last() {
    std::unique_lock lock(mutex_);
    std::uint64_t id = keys_.size() - 1;
    if (keys_.empty() || id < published_.load(std::memory_order_relaxed)) return;
    index_tags(id, keys_.back(), false);
    ids_.erase(keys_.back());
    keys_.pop_back();
}

bool SeriesIndex::restore(std::uint64_t id, std::string_view key) {
    if (id != keys_.size() || !parse_series_key(key).is_ok()) return false;
    std::unique_lock lock(mutex_);
    keys_.emplace_back(key);
    ids_.emplace(keys_.back(), id);
    index_tags(id, keys_.back(), true);
    published_.store(keys_.size(), std::memory_order_release);
    return true;
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

void SeriesIndex::index_tags(std::uint64_t id, std::string_view key, bool add) {
    auto parsed = parse_series_key(key);  // validated by the caller
    auto& [measurement, tags] = parsed.value();
    tags.emplace_back("__name__", measurement);
    for (const auto& [name, value] : tags) {
        auto& list = postings_[name][value];
        if (add) {
            list.push_back(id);  // ids grow, so lists stay sorted
        } else if (!list.empty() && list.back() == id) {
            list.pop_back();
            if (list.empty()) {
                auto& values = postings_[name];
                values.erase(value);
                if (values.empty()) postings_.erase(name);
            }
        }
    }
}

// Ids of series that carry label m.name() with a value m accepts (accepted=true) or rejects.
std::vector<std::uint64_t> SeriesIndex::ids_where(const CompiledMatcher& m, bool accepted) const {
    std::vector<std::uint64_t> out;
    auto values = postings_.find(m.name());
    if (values == postings_.end()) return out;
    if (m.op() == Matcher::Op::equal && accepted) {
        auto it = values->second.find(m.value());
        if (it != values->second.end()) out = it->second;
        return out;
    }
    std::size_t lists = 0;
    for (const auto& [value, ids] : values->second) {
        if (m.matches(value) == accepted) {
            out.insert(out.end(), ids.begin(), ids.end());
            ++lists;
        }
    }
    if (lists > 1) std::sort(out.begin(), out.end());
    return out;
}

std::vector<std::uint64_t> SeriesIndex::match(const std::vector<CompiledMatcher>& matchers) const {
    std::shared_lock lock(mutex_);
    const std::uint64_t published = published_.load(std::memory_order_acquire);
    std::optional<std::vector<std::uint64_t>> candidates;
    // A matcher that rejects the empty value needs the label present with an accepted value: its
    // postings bound the candidates. One that accepts "" (`x!="a"`, `x=~".*"`) can only exclude.
    for (const auto& m : matchers) {
        if (m.matches("")) continue;
        auto ids = ids_where(m, true);
        candidates = candidates ? intersect(*candidates, ids) : std::move(ids);
        if (candidates->empty()) return {};
    }
    if (!candidates) {
        candidates.emplace(published);
        for (std::uint64_t i = 0; i < published; ++i)
            (*candidates)[i] = i;
    } else {
        // Ids are dense and sorted: drop the unpublished tail.
        auto end = std::lower_bound(candidates->begin(), candidates->end(), published);
        candidates->erase(end, candidates->end());
    }
    for (const auto& m : matchers) {
        if (!m.matches("")) continue;
        auto excluded = ids_where(m, false);
        std::vector<std::uint64_t> kept;
        std::set_difference(candidates->begin(), candidates->end(), excluded.begin(),
                            excluded.end(), std::back_inserter(kept));
        candidates = std::move(kept);
    }
    return std::move(*candidates);
}

std::vector<std::string> SeriesIndex::label_values(std::string_view name,
                                                   const std::vector<std::uint64_t>& ids) const {
    std::shared_lock lock(mutex_);
    std::vector<std::string> out;
    auto values = postings_.find(name);
    if (values == postings_.end()) return out;
    for (const auto& [value, list] : values->second) {
        auto a = list.begin();
        auto b = ids.begin();
        while (a != list.end() && b != ids.end()) {
            if (*a < *b) {
                ++a;
            } else if (*b < *a) {
                ++b;
            } else {
                out.push_back(value);
                break;
            }
        }
    }
    return out;
}

}  // namespace citygate::storage::detail
