// One series' samples as sorted runs: how duplicates of a timestamp resolve (the last to arrive
// wins) when the head is sorted and when it is merged with what is on disk.
#pragma once

#include <algorithm>
#include <vector>

#include "storage/detail/chunk.hpp"

namespace citygate::storage::detail {

// Sorts by time and keeps the last-arrived sample of each timestamp (stable sort keeps arrival
// order among equal timestamps).
inline void sort_keep_last(std::vector<Sample>& v) {
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
inline std::vector<Sample> merge_samples(const std::vector<Sample>& base,
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

}  // namespace citygate::storage::detail
