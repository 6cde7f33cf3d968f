// An in-memory Queryable for the engine's tests: series appended in time order, selected by
// matchers and time range like storage would.
#pragma once

#include <algorithm>
#include <map>

#include "promql/queryable.hpp"

namespace citygate::promql::test {

class MemoryQueryable final : public Queryable {
  public:
    // Adds points to the series named by `labels` (kept sorted; a later point at the same time
    // replaces the earlier one).
    void add(const Labels& labels, const std::vector<Point>& points) {
        auto& series = series_[labels.key()];
        series.labels = labels;
        series.points.insert(series.points.end(), points.begin(), points.end());
        std::stable_sort(series.points.begin(), series.points.end(),
                         [](const Point& a, const Point& b) { return a.t < b.t; });
        std::vector<Point> unique;
        for (const auto& p : series.points) {
            if (!unique.empty() && unique.back().t == p.t) {
                unique.back() = p;
            } else {
                unique.push_back(p);
            }
        }
        series.points = std::move(unique);
    }
    void clear() { series_.clear(); }
    std::size_t selects() const { return selects_; }

    SelectResult select(const std::vector<Matcher>& matchers, std::int64_t mint,
                        std::int64_t maxt) override {
        ++selects_;
        std::vector<Series> out;
        for (const auto& [key, series] : series_) {
            if (!matches_all(matchers, series.labels)) continue;
            auto first = std::lower_bound(series.points.begin(), series.points.end(), mint,
                                          [](const Point& p, std::int64_t t) { return p.t < t; });
            auto last = std::upper_bound(first, series.points.end(), maxt,
                                         [](std::int64_t t, const Point& p) { return t < p.t; });
            if (first == last) continue;
            out.push_back(Series{series.labels, std::vector<Point>(first, last)});
        }
        return out;
    }

  private:
    std::map<std::string, Series> series_;
    std::size_t selects_ = 0;
};

}  // namespace citygate::promql::test
