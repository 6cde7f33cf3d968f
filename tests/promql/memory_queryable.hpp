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
            points_read_ += static_cast<std::size_t>(last - first);
            out.push_back(Series{series.labels, std::vector<Point>(first, last)});
        }
        return out;
    }

    // Serves rollups of these widths (none by default), bucketed from the raw points.
    void set_rollup_widths(std::vector<std::int64_t> widths) { widths_ = std::move(widths); }
    std::size_t rollup_selects() const { return rollup_selects_; }
    std::size_t points_read() const { return points_read_; }

    std::vector<std::int64_t> rollup_widths() const override { return widths_; }

    RollupResult select_rollups(const std::vector<Matcher>& matchers, std::int64_t width,
                                std::int64_t start, std::int64_t end,
                                const std::vector<Span>& spans) override {
        ++rollup_selects_;
        std::vector<RollupSeries> out;
        for (const auto& [key, series] : series_) {
            if (!matches_all(matchers, series.labels)) continue;
            RollupSeries r{series.labels, {}, {}};
            for (const Point& p : series.points) {
                const bool in_buckets = p.t >= start && p.t < end;
                if (in_buckets) {
                    const std::int64_t b = p.t - ((p.t % width) + width) % width;
                    if (r.buckets.empty() || r.buckets.back().start != b) {
                        r.buckets.push_back({b, 0, 0, p.v, p.v, p.v});
                        ++points_read_;
                    }
                    Bucket& bucket = r.buckets.back();
                    ++bucket.count;
                    bucket.sum += p.v;
                    bucket.min = p.v < bucket.min ? p.v : bucket.min;
                    bucket.max = p.v > bucket.max ? p.v : bucket.max;
                    bucket.last = p.v;
                }
                for (const Span& span : spans) {
                    if (p.t >= span.start_ms && p.t < span.end_ms) {
                        r.edges.push_back(p);
                        ++points_read_;
                    }
                }
            }
            if (!r.buckets.empty() || !r.edges.empty()) out.push_back(std::move(r));
        }
        return out;
    }

  private:
    std::map<std::string, Series> series_;
    std::size_t selects_ = 0;
    std::vector<std::int64_t> widths_;
    std::size_t rollup_selects_ = 0;
    std::size_t points_read_ = 0;
};

}  // namespace citygate::promql::test
