// PromQL's functions and aggregation operators over one evaluation step, after Prometheus 2.42's
// promql/functions.go, quantile.go and engine.go (aggregation()).
#include <re2/re2.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <numbers>
#include <unordered_map>

#include "promql/detail/functions.hpp"

namespace citygate::promql::detail {

void fail(QueryError::Kind kind, std::string message) {
    throw EvalError{QueryError{kind, std::move(message), SelectError::Kind::storage}};
}

const Expr& unwrap(const Expr& expr) {
    const Expr* e = &expr;
    while (const auto* p = e->as<Paren>())
        e = p->expr.get();
    return *e;
}

namespace {

constexpr double nan = std::numeric_limits<double>::quiet_NaN();

std::pair<double, double> kahan_inc(double inc, double sum, double c) {
    const double t = sum + inc;
    if (std::abs(sum) >= std::abs(inc)) {
        c += (sum - t) + inc;
    } else {
        c += (inc - t) + sum;
    }
    return {t, c};
}

// rate(), increase() and delta(): the change over the window, corrected for counter resets,
// extrapolated towards the window's ends when the samples come close enough to them.
std::optional<double> extrapolated_rate(const Window& w, bool is_counter, bool is_rate) {
    const auto& p = w.points;
    if (p.size() < 2) return std::nullopt;
    double result = p.back().v - p.front().v;
    if (is_counter) {
        double prev = p.front().v;
        for (std::size_t i = 1; i < p.size(); ++i) {
            if (p[i].v < prev) result += prev;
            prev = p[i].v;
        }
    }
    double to_start = static_cast<double>(p.front().t - w.range_start) / 1000;
    const double to_end = static_cast<double>(w.range_end - p.back().t) / 1000;
    const double sampled = static_cast<double>(p.back().t - p.front().t) / 1000;
    const double average = sampled / static_cast<double>(p.size() - 1);
    if (is_counter && result > 0 && p.front().v >= 0) {
        // A counter does not go below zero: extrapolate no further back than where it was 0.
        const double to_zero = sampled * (p.front().v / result);
        if (to_zero < to_start) to_start = to_zero;
    }
    const double threshold = average * 1.1;
    double interval = sampled;
    interval += to_start < threshold ? to_start : average / 2;
    interval += to_end < threshold ? to_end : average / 2;
    double factor = interval / sampled;
    if (is_rate) factor /= static_cast<double>(w.range_ms) / 1000;
    return result * factor;
}

std::optional<double> instant_value(const Window& w, bool is_rate) {
    const auto& p = w.points;
    if (p.size() < 2) return std::nullopt;
    const Point& last = p[p.size() - 1];
    const Point& previous = p[p.size() - 2];
    double result = is_rate && last.v < previous.v ? last.v : last.v - previous.v;
    const std::int64_t interval = last.t - previous.t;
    if (interval == 0) return std::nullopt;
    if (is_rate) result /= static_cast<double>(interval) / 1000;
    return result;
}

std::pair<double, double> linear_regression(std::span<const Point> points,
                                            std::int64_t intercept_time) {
    double n = 0, sum_x = 0, c_x = 0, sum_y = 0, c_y = 0, sum_xy = 0, c_xy = 0, sum_x2 = 0,
           c_x2 = 0;
    const double init_y = points.front().v;
    bool const_y = true;
    for (std::size_t i = 0; i < points.size(); ++i) {
        const Point& s = points[i];
        if (const_y && i > 0 && s.v != init_y) const_y = false;
        n += 1;
        const double x = static_cast<double>(s.t - intercept_time) / 1e3;
        std::tie(sum_x, c_x) = kahan_inc(x, sum_x, c_x);
        std::tie(sum_y, c_y) = kahan_inc(s.v, sum_y, c_y);
        std::tie(sum_xy, c_xy) = kahan_inc(x * s.v, sum_xy, c_xy);
        std::tie(sum_x2, c_x2) = kahan_inc(x * x, sum_x2, c_x2);
    }
    if (const_y) {
        if (std::isinf(init_y)) return {nan, nan};
        return {0, init_y};
    }
    sum_x += c_x;
    sum_y += c_y;
    sum_xy += c_xy;
    sum_x2 += c_x2;
    const double cov_xy = sum_xy - sum_x * sum_y / n;
    const double var_x = sum_x2 - sum_x * sum_x / n;
    const double slope = cov_xy / var_x;
    return {slope, sum_y / n - slope * sum_x / n};
}

double avg_over_time(std::span<const Point> points) {
    double mean = 0, count = 0, c = 0;
    for (const Point& p : points) {
        count++;
        if (std::isinf(mean)) {
            if (std::isinf(p.v) && (mean > 0) == (p.v > 0)) continue;
            if (!std::isinf(p.v) && !std::isnan(p.v)) continue;
        }
        std::tie(mean, c) = kahan_inc(p.v / count - mean / count, mean, c);
    }
    if (std::isinf(mean)) return mean;
    return mean + c;
}

std::pair<double, double> variance_parts(std::span<const Point> points) {
    double count = 0, mean = 0, c_mean = 0, aux = 0, c_aux = 0;
    for (const Point& p : points) {
        count++;
        const double delta = p.v - (mean + c_mean);
        std::tie(mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        std::tie(aux, c_aux) = kahan_inc(delta * (p.v - (mean + c_mean)), aux, c_aux);
    }
    return {aux + c_aux, count};
}

std::optional<double> holt_winters(const Window& w, double sf, double tf) {
    if (sf <= 0 || sf >= 1) {
        fail_execution("invalid smoothing factor. Expected: 0 < sf < 1, got: " +
                       std::to_string(sf));
    }
    if (tf <= 0 || tf >= 1) {
        fail_execution("invalid trend factor. Expected: 0 < tf < 1, got: " + std::to_string(tf));
    }
    const auto& p = w.points;
    if (p.size() < 2) return std::nullopt;
    double s0 = 0, s1 = p[0].v, b = p[1].v - p[0].v;
    for (std::size_t i = 1; i < p.size(); ++i) {
        const double x = sf * p[i].v;
        if (i - 1 != 0) b = tf * (s1 - s0) + (1 - tf) * b;
        const double y = (1 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    return s1;
}

}  // namespace

double quantile(double q, std::vector<double> values) {
    if (values.empty() || std::isnan(q)) return nan;
    if (q < 0) return -std::numeric_limits<double>::infinity();
    if (q > 1) return std::numeric_limits<double>::infinity();
    std::sort(values.begin(), values.end(), [](double a, double b) {
        if (std::isnan(a)) return !std::isnan(b);
        return a < b;
    });
    const double n = static_cast<double>(values.size());
    const double rank = q * (n - 1);
    const double lower = std::max(0.0, std::floor(rank));
    const double upper = std::min(n - 1, lower + 1);
    const double weight = rank - std::floor(rank);
    return values[static_cast<std::size_t>(lower)] * (1 - weight) +
           values[static_cast<std::size_t>(upper)] * weight;
}

std::optional<BucketFunction> bucket_function(std::string_view name) {
    if (name == "sum_over_time") return BucketFunction::sum;
    if (name == "count_over_time") return BucketFunction::count;
    if (name == "avg_over_time") return BucketFunction::avg;
    if (name == "min_over_time") return BucketFunction::min;
    if (name == "max_over_time") return BucketFunction::max;
    if (name == "last_over_time") return BucketFunction::last;
    if (name == "present_over_time" || name == "absent_over_time") return BucketFunction::present;
    return std::nullopt;
}

std::optional<double> bucket_window(BucketFunction function, std::span<const Point> left,
                                    std::span<const Bucket> buckets, std::span<const Point> right) {
    double count = static_cast<double>(left.size() + right.size());
    for (const Bucket& b : buckets)
        count += static_cast<double>(b.count);
    if (count == 0) return std::nullopt;
    // Each part is visited in time order: `add(value, samples)` with a bucket's sum and count
    // or a point's value and 1.
    auto visit = [&](auto&& add) {
        for (const Point& p : left)
            add(p.v, p.v, p.v, 1.0);
        for (const Bucket& b : buckets)
            add(b.sum, b.min, b.max, static_cast<double>(b.count));
        for (const Point& p : right)
            add(p.v, p.v, p.v, 1.0);
    };
    switch (function) {
        case BucketFunction::count:
            return count;
        case BucketFunction::present:
            return 1.0;
        case BucketFunction::last:
            if (!right.empty()) return right.back().v;
            if (!buckets.empty()) return buckets.back().last;
            return left.back().v;
        case BucketFunction::min:
        case BucketFunction::max: {
            const bool want_min = function == BucketFunction::min;
            std::optional<double> best;
            visit([&](double, double lo, double hi, double) {
                const double v = want_min ? lo : hi;
                if (!best || (want_min ? v < *best : v > *best)) best = v;
            });
            return best;
        }
        case BucketFunction::sum:
        case BucketFunction::avg: {
            // The mean as a sum of each part's share, so no sum of finite values overflows.
            const double scale = function == BucketFunction::avg ? count : 1.0;
            double sum = 0, c = 0;
            visit([&](double part, double, double, double) {
                std::tie(sum, c) = kahan_inc(part / scale, sum, c);
            });
            if (std::isinf(sum)) return sum;
            return sum + c;
        }
    }
    return std::nullopt;
}

RangeFunction range_function(std::string_view name) {
    using S = const std::vector<double>&;
    using R = std::optional<double>;
    if (name == "rate") return [](const Window& w, S) { return extrapolated_rate(w, true, true); };
    if (name == "increase")
        return [](const Window& w, S) { return extrapolated_rate(w, true, false); };
    if (name == "delta")
        return [](const Window& w, S) { return extrapolated_rate(w, false, false); };
    if (name == "irate") return [](const Window& w, S) { return instant_value(w, true); };
    if (name == "idelta") return [](const Window& w, S) { return instant_value(w, false); };
    if (name == "deriv") {
        return [](const Window& w, S) -> R {
            if (w.points.size() < 2) return std::nullopt;
            return linear_regression(w.points, w.points.front().t).first;
        };
    }
    if (name == "predict_linear") {
        return [](const Window& w, S s) -> R {
            if (w.points.size() < 2) return std::nullopt;
            auto [slope, intercept] = linear_regression(w.points, w.ts);
            return slope * s[1] + intercept;
        };
    }
    if (name == "holt_winters") {
        return [](const Window& w, S s) { return holt_winters(w, s[1], s[2]); };
    }
    if (name == "resets") {
        return [](const Window& w, S) -> R {
            double resets = 0;
            for (std::size_t i = 1; i < w.points.size(); ++i) {
                if (w.points[i].v < w.points[i - 1].v) resets++;
            }
            return resets;
        };
    }
    if (name == "changes") {
        return [](const Window& w, S) -> R {
            double changes = 0;
            for (std::size_t i = 1; i < w.points.size(); ++i) {
                const double cur = w.points[i].v, prev = w.points[i - 1].v;
                if (cur != prev && !(std::isnan(cur) && std::isnan(prev))) changes++;
            }
            return changes;
        };
    }
    if (name == "avg_over_time")
        return [](const Window& w, S) -> R { return avg_over_time(w.points); };
    if (name == "count_over_time") {
        return [](const Window& w, S) -> R { return static_cast<double>(w.points.size()); };
    }
    if (name == "last_over_time") return [](const Window& w, S) -> R { return w.points.back().v; };
    if (name == "present_over_time" || name == "absent_over_time") {
        return [](const Window&, S) -> R { return 1.0; };
    }
    if (name == "max_over_time") {
        return [](const Window& w, S) -> R {
            double max = w.points.front().v;
            for (const Point& p : w.points) {
                if (p.v > max || std::isnan(max)) max = p.v;
            }
            return max;
        };
    }
    if (name == "min_over_time") {
        return [](const Window& w, S) -> R {
            double min = w.points.front().v;
            for (const Point& p : w.points) {
                if (p.v < min || std::isnan(min)) min = p.v;
            }
            return min;
        };
    }
    if (name == "sum_over_time") {
        return [](const Window& w, S) -> R {
            double sum = 0, c = 0;
            for (const Point& p : w.points)
                std::tie(sum, c) = kahan_inc(p.v, sum, c);
            if (std::isinf(sum)) return sum;
            return sum + c;
        };
    }
    if (name == "quantile_over_time") {
        return [](const Window& w, S s) -> R {
            std::vector<double> values;
            values.reserve(w.points.size());
            for (const Point& p : w.points)
                values.push_back(p.v);
            return quantile(s[0], std::move(values));
        };
    }
    if (name == "stddev_over_time") {
        return [](const Window& w, S) -> R {
            auto [aux, count] = variance_parts(w.points);
            return std::sqrt(aux / count);
        };
    }
    if (name == "stdvar_over_time") {
        return [](const Window& w, S) -> R {
            auto [aux, count] = variance_parts(w.points);
            return aux / count;
        };
    }
    return nullptr;
}

Labels absent_labels(const Expr& arg) {
    const Expr& e = unwrap(arg);
    const std::vector<Matcher>* matchers = nullptr;
    if (const auto* v = e.as<VectorSelector>()) matchers = &v->matchers;
    if (const auto* m = e.as<MatrixSelector>()) matchers = &m->selector.matchers;
    if (!matchers) return {};
    Labels out;
    std::vector<std::string> seen;
    for (const auto& m : *matchers) {
        if (m.name() == metric_name_label) continue;
        const bool has = std::find(seen.begin(), seen.end(), m.name()) != seen.end();
        if (m.type() == Matcher::Type::equal && !has) {
            out.set(m.name(), m.value());
            seen.push_back(m.name());
        } else {
            out.erase(m.name());
        }
    }
    return out;
}

namespace {

const std::string& string_arg(const Call& call, std::size_t i) {
    return unwrap(*call.args[i]).as<StringLiteral>()->value;
}

// Functions of one sample's value; the result drops the metric name.
class SimpleFunction final : public VectorFunction {
  public:
    explicit SimpleFunction(double (*f)(double)) : f_(f) {}
    Vector call(std::vector<Vector>& args, std::int64_t) override {
        Vector out = std::move(args[0]);
        for (auto& s : out) {
            s.labels.erase(metric_name_label);
            s.v = f_(s.v);
        }
        return out;
    }

  private:
    double (*f_)(double);
};

// A function of the step and the call's arguments, written as a lambda.
template <typename F>
class LambdaFunction final : public VectorFunction {
  public:
    explicit LambdaFunction(F f) : f_(std::move(f)) {}
    Vector call(std::vector<Vector>& args, std::int64_t ts) override { return f_(args, ts); }

  private:
    F f_;
};
template <typename F>
std::unique_ptr<VectorFunction> lambda(F f) {
    return std::make_unique<LambdaFunction<F>>(std::move(f));
}

double scalar_arg(const std::vector<Vector>& args, std::size_t i) {
    return args[i].empty() ? nan : args[i][0].v;
}

// Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
struct Civil {
    std::int64_t year;
    unsigned month;  // 1..12
    unsigned day;    // 1..31
};
Civil civil_from_days(std::int64_t z) {
    z += 719468;
    const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const auto doe = static_cast<unsigned>(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const std::int64_t y = static_cast<std::int64_t>(yoe) + era * 400;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    const unsigned d = doy - (153 * mp + 2) / 5 + 1;
    const unsigned m = mp < 10 ? mp + 3 : mp - 9;
    return {y + (m <= 2), m, d};
}
bool is_leap(std::int64_t y) {
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}
unsigned days_in(std::int64_t y, unsigned m) {
    static constexpr unsigned days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

double date_part(std::string_view name, std::int64_t seconds) {
    std::int64_t days = seconds / 86400;
    std::int64_t rest = seconds % 86400;
    if (rest < 0) {
        rest += 86400;
        days -= 1;
    }
    const Civil c = civil_from_days(days);
    if (name == "year") return static_cast<double>(c.year);
    if (name == "month") return c.month;
    if (name == "day_of_month") return c.day;
    if (name == "days_in_month") return days_in(c.year, c.month);
    if (name == "hour") return static_cast<double>(rest / 3600);
    if (name == "minute") return static_cast<double>(rest % 3600 / 60);
    if (name == "day_of_week")
        return static_cast<double>(((days % 7) + 11) % 7);  // 1970-01-01: Thu
    // day_of_year
    unsigned doy = c.day;
    for (unsigned m = 1; m < c.month; ++m)
        doy += days_in(c.year, m);
    return doy;
}

// Go's regexp.Expand: $1, ${1}, $name, ${name}; $$ is a literal $.
std::string expand(std::string_view templ, const RE2& re,
                   const std::vector<re2::StringPiece>& groups) {
    const auto& names = re.NamedCapturingGroups();
    std::string out;
    for (std::size_t i = 0; i < templ.size();) {
        const char c = templ[i];
        if (c != '$' || i + 1 >= templ.size()) {
            out += c;
            ++i;
            continue;
        }
        if (templ[i + 1] == '$') {
            out += '$';
            i += 2;
            continue;
        }
        std::string_view name;
        std::size_t next;
        auto is_word = [](char ch) {
            return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                   (ch >= '0' && ch <= '9') || ch == '_';
        };
        if (templ[i + 1] == '{') {
            const std::size_t close = templ.find('}', i + 2);
            if (close == std::string_view::npos) {
                out += c;
                ++i;
                continue;
            }
            name = templ.substr(i + 2, close - i - 2);
            next = close + 1;
            if (name.empty() || !std::all_of(name.begin(), name.end(), is_word)) {
                out += c;
                ++i;
                continue;
            }
        } else {
            std::size_t j = i + 1;
            while (j < templ.size() && is_word(templ[j]))
                ++j;
            if (j == i + 1) {
                out += c;
                ++i;
                continue;
            }
            name = templ.substr(i + 1, j - i - 1);
            next = j;
        }
        int index = -1;
        if (std::all_of(name.begin(), name.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
            if (name.size() < 9) index = std::stoi(std::string(name));
        } else if (auto it = names.find(std::string(name)); it != names.end()) {
            index = it->second;
        }
        if (index >= 0 && static_cast<std::size_t>(index) < groups.size() && groups[index].data()) {
            out.append(groups[index].data(), groups[index].size());
        }
        i = next;
    }
    return out;
}

struct Bucket {
    double upper;
    double count;
};

double bucket_quantile(double q, std::vector<Bucket> buckets) {
    if (std::isnan(q)) return nan;
    if (q < 0) return -std::numeric_limits<double>::infinity();
    if (q > 1) return std::numeric_limits<double>::infinity();
    std::sort(buckets.begin(), buckets.end(),
              [](const Bucket& a, const Bucket& b) { return a.upper < b.upper; });
    if (!std::isinf(buckets.back().upper) || buckets.back().upper < 0) return nan;
    // Coalesce buckets with the same bound (e.g. le="1" and le="1.0").
    std::vector<Bucket> merged;
    for (const auto& b : buckets) {
        if (!merged.empty() && merged.back().upper == b.upper) {
            merged.back().count += b.count;
        } else {
            merged.push_back(b);
        }
    }
    // Ensure monotonic counts (buckets scraped at slightly different times).
    double max = merged.front().count;
    for (std::size_t i = 1; i < merged.size(); ++i) {
        if (merged[i].count > max) {
            max = merged[i].count;
        } else if (merged[i].count < max) {
            merged[i].count = max;
        }
    }
    if (merged.size() < 2) return nan;
    const double observations = merged.back().count;
    if (observations == 0) return nan;
    double rank = q * observations;
    std::size_t b = 0;
    while (b < merged.size() - 1 && merged[b].count < rank)
        ++b;
    if (b == merged.size() - 1) return merged[merged.size() - 2].upper;
    if (b == 0 && merged[0].upper <= 0) return merged[0].upper;
    double start = 0;
    const double end = merged[b].upper;
    double count = merged[b].count;
    if (b > 0) {
        start = merged[b - 1].upper;
        count -= merged[b - 1].count;
        rank -= merged[b - 1].count;
    }
    return start + (end - start) * (rank / count);
}

std::optional<double> parse_float(std::string_view s) {
    // Go's strconv.ParseFloat: decimal, Inf/Infinity/NaN with optional sign, hex floats.
    std::string lower;
    for (char c : s)
        lower += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    if (lower == "+inf" || lower == "inf" || lower == "+infinity" || lower == "infinity") {
        return std::numeric_limits<double>::infinity();
    }
    if (lower == "-inf" || lower == "-infinity") return -std::numeric_limits<double>::infinity();
    if (lower == "nan") return nan;
    if (s.empty()) return std::nullopt;
    std::string copy(s);
    char* end = nullptr;
    const double v = std::strtod(copy.c_str(), &end);
    if (end != copy.c_str() + copy.size()) return std::nullopt;
    if (lower.find("inf") != std::string::npos || lower.find("nan") != std::string::npos)
        return std::nullopt;
    return v;
}

}  // namespace

std::unique_ptr<VectorFunction> vector_function(const Call& call) {
    const std::string_view name = call.function->name;
    struct Math {
        std::string_view name;
        double (*f)(double);
    };
    static const Math math[] = {
        {"abs", [](double v) { return std::abs(v); }},
        {"ceil", [](double v) { return std::ceil(v); }},
        {"floor", [](double v) { return std::floor(v); }},
        {"exp", [](double v) { return std::exp(v); }},
        {"sqrt", [](double v) { return std::sqrt(v); }},
        {"ln", [](double v) { return std::log(v); }},
        {"log2", [](double v) { return std::log2(v); }},
        {"log10", [](double v) { return std::log10(v); }},
        {"sin", [](double v) { return std::sin(v); }},
        {"cos", [](double v) { return std::cos(v); }},
        {"tan", [](double v) { return std::tan(v); }},
        {"asin", [](double v) { return std::asin(v); }},
        {"acos", [](double v) { return std::acos(v); }},
        {"atan", [](double v) { return std::atan(v); }},
        {"sinh", [](double v) { return std::sinh(v); }},
        {"cosh", [](double v) { return std::cosh(v); }},
        {"tanh", [](double v) { return std::tanh(v); }},
        {"asinh", [](double v) { return std::asinh(v); }},
        {"acosh", [](double v) { return std::acosh(v); }},
        {"atanh", [](double v) { return std::atanh(v); }},
        {"deg", [](double v) { return v * 180 / std::numbers::pi; }},
        {"rad", [](double v) { return v * std::numbers::pi / 180; }},
        {"sgn", [](double v) { return v < 0   ? -1.0
                                      : v > 0 ? 1.0
                                              : v; }},
    };
    for (const auto& m : math) {
        if (m.name == name) return std::make_unique<SimpleFunction>(m.f);
    }
    if (name == "round") {
        return lambda([](std::vector<Vector>& args, std::int64_t) {
            const double to_nearest = args.size() >= 2 ? scalar_arg(args, 1) : 1;
            const double inverse = 1.0 / to_nearest;
            Vector out = std::move(args[0]);
            for (auto& s : out) {
                s.labels.erase(metric_name_label);
                s.v = std::floor(s.v * inverse + 0.5) / inverse;
            }
            return out;
        });
    }
    if (name == "clamp" || name == "clamp_min" || name == "clamp_max") {
        return lambda([name](std::vector<Vector>& args, std::int64_t) {
            double min = -std::numeric_limits<double>::infinity();
            double max = std::numeric_limits<double>::infinity();
            if (name == "clamp") {
                min = scalar_arg(args, 1);
                max = scalar_arg(args, 2);
                if (max < min) return Vector{};
            } else if (name == "clamp_min") {
                min = scalar_arg(args, 1);
            } else {
                max = scalar_arg(args, 1);
            }
            Vector out = std::move(args[0]);
            for (auto& s : out) {
                s.labels.erase(metric_name_label);
                // Go's math.Max/Min: a NaN bound or value gives NaN.
                double v = s.v;
                if (name != "clamp_min")
                    v = std::isnan(v) || std::isnan(max) ? nan : std::min(max, v);
                if (name != "clamp_max")
                    v = std::isnan(v) || std::isnan(min) ? nan : std::max(min, v);
                s.v = v;
            }
            return out;
        });
    }
    if (name == "scalar") {
        return lambda([](std::vector<Vector>& args, std::int64_t) {
            return Vector{Sample{{}, 0, args[0].size() == 1 ? args[0][0].v : nan}};
        });
    }
    if (name == "vector") {
        return lambda([](std::vector<Vector>& args, std::int64_t) {
            return Vector{Sample{{}, 0, scalar_arg(args, 0)}};
        });
    }
    if (name == "time") {
        return lambda([](std::vector<Vector>&, std::int64_t ts) {
            return Vector{Sample{{}, 0, static_cast<double>(ts) / 1000}};
        });
    }
    if (name == "pi") {
        return lambda([](std::vector<Vector>&, std::int64_t) {
            return Vector{Sample{{}, 0, std::numbers::pi}};
        });
    }
    if (name == "timestamp") {
        return lambda([](std::vector<Vector>& args, std::int64_t) {
            Vector out = std::move(args[0]);
            for (auto& s : out) {
                s.labels.erase(metric_name_label);
                s.v = static_cast<double>(s.t) / 1000;
            }
            return out;
        });
    }
    if (name == "absent") {
        Labels labels = absent_labels(*call.args[0]);
        return lambda([labels](std::vector<Vector>& args, std::int64_t) {
            if (!args[0].empty()) return Vector{};
            return Vector{Sample{labels, 0, 1}};
        });
    }
    if (name == "sort" || name == "sort_desc") {
        const bool descending = name == "sort_desc";
        return lambda([descending](std::vector<Vector>& args, std::int64_t) {
            Vector out = std::move(args[0]);
            std::stable_sort(out.begin(), out.end(),
                             [descending](const Sample& a, const Sample& b) {
                                 if (std::isnan(a.v)) return false;  // NaN last either way
                                 if (std::isnan(b.v)) return true;
                                 return descending ? a.v > b.v : a.v < b.v;
                             });
            return out;
        });
    }
    if (name == "year" || name == "month" || name == "day_of_month" || name == "day_of_week" ||
        name == "day_of_year" || name == "days_in_month" || name == "hour" || name == "minute") {
        return lambda([name](std::vector<Vector>& args, std::int64_t ts) {
            if (args.empty()) {
                return Vector{Sample{{}, 0, date_part(name, ts / 1000)}};
            }
            Vector out = std::move(args[0]);
            for (auto& s : out) {
                s.labels.erase(metric_name_label);
                if (!std::isfinite(s.v) || std::abs(s.v) > 1e15) {
                    s.v = nan;  // Go converts these to a meaningless date; none is better
                } else {
                    s.v = date_part(name, static_cast<std::int64_t>(s.v));
                }
            }
            return out;
        });
    }
    if (name == "label_replace") {
        const std::string dst = string_arg(call, 1);
        const std::string repl = string_arg(call, 2);
        const std::string src = string_arg(call, 3);
        const std::string& pattern = string_arg(call, 4);
        RE2::Options options;
        options.set_log_errors(false);
        options.set_max_mem(8 << 20);
        auto re = std::make_shared<RE2>("^(?:" + pattern + ")$", options);
        if (!re->ok()) fail_execution("invalid regular expression in label_replace(): " + pattern);
        if (!is_valid_label_name(dst)) {
            fail_execution("invalid destination label name in label_replace(): " + dst);
        }
        return lambda([=](std::vector<Vector>& args, std::int64_t) {
            Vector out = std::move(args[0]);
            std::vector<re2::StringPiece> groups(
                static_cast<std::size_t>(re->NumberOfCapturingGroups()) + 1);
            for (auto& s : out) {
                const std::string value(s.labels.get(src));
                if (!re->Match(value, 0, value.size(), RE2::ANCHOR_BOTH, groups.data(),
                               static_cast<int>(groups.size()))) {
                    continue;
                }
                s.labels.set(dst, expand(repl, *re, groups));
            }
            return out;
        });
    }
    if (name == "label_join") {
        const std::string dst = string_arg(call, 1);
        const std::string sep = string_arg(call, 2);
        std::vector<std::string> sources;
        for (std::size_t i = 3; i < call.args.size(); ++i) {
            const std::string& src = string_arg(call, i);
            if (!is_valid_label_name(src))
                fail_execution("invalid source label name in label_join(): " + src);
            sources.push_back(src);
        }
        if (!is_valid_label_name(dst))
            fail_execution("invalid destination label name in label_join(): " + dst);
        return lambda([=](std::vector<Vector>& args, std::int64_t) {
            Vector out = std::move(args[0]);
            for (auto& s : out) {
                std::string joined;
                for (std::size_t i = 0; i < sources.size(); ++i) {
                    if (i > 0) joined += sep;
                    joined += s.labels.get(sources[i]);
                }
                s.labels.set(dst, joined);
            }
            return out;
        });
    }
    if (name == "histogram_quantile") {
        return lambda([](std::vector<Vector>& args, std::int64_t) {
            const double q = scalar_arg(args, 0);
            struct Group {
                Labels labels;
                std::vector<Bucket> buckets;
            };
            std::vector<Group> groups;
            std::unordered_map<std::string, std::size_t> index;
            static const std::vector<std::string> le = {"le"};
            for (const auto& s : args[1]) {
                auto upper = parse_float(s.labels.get("le"));
                if (!upper) continue;
                const std::string key = s.labels.key_for(le, false);
                auto [it, inserted] = index.try_emplace(key, groups.size());
                if (inserted) {
                    Labels labels = s.labels.without_name();
                    labels.erase("le");
                    groups.push_back(Group{std::move(labels), {}});
                }
                groups[it->second].buckets.push_back(Bucket{*upper, s.v});
            }
            Vector out;
            for (auto& g : groups)
                out.push_back(
                    Sample{std::move(g.labels), 0, bucket_quantile(q, std::move(g.buckets))});
            return out;
        });
    }
    if (name == "histogram_count" || name == "histogram_sum" || name == "histogram_fraction") {
        // Native histograms only: float samples (all this engine has) give nothing, as in
        // Prometheus.
        return lambda([](std::vector<Vector>&, std::int64_t) { return Vector{}; });
    }
    fail_execution("function \"" + std::string(name) + "\" is not supported");
}

namespace {

std::string format_value(double v) {
    if (std::isnan(v)) return "NaN";
    if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
    char buf[512];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed);
    if (ec != std::errc()) return std::to_string(v);
    return std::string(buf, end);
}

struct Group {
    Labels labels;
    double value = 0;
    double mean = 0;
    double count = 0;
    std::vector<const Sample*> members;  // topk, bottomk
    std::vector<double> values;          // quantile
};

}  // namespace

Vector aggregate(const Aggregate& agg, const Vector& input, double param, const std::string& label,
                 GroupKeyCache* keys) {
    using Op = AggregateOp;
    const Op op = agg.op;
    std::vector<std::string> grouping = agg.grouping;
    std::sort(grouping.begin(), grouping.end());
    std::int64_t k = 0;
    if (op == Op::topk || op == Op::bottomk) {
        if (!(param >= -9.2e18 && param <= 9.2e18)) {
            fail_execution("Scalar value " + format_value(param) + " overflows int64");
        }
        k = static_cast<std::int64_t>(param);
        if (k < 1) return {};
    }
    if (op == Op::count_values) {
        if (!is_valid_label_name(label)) fail_execution("invalid label name \"" + label + "\"");
        if (!agg.without) grouping.push_back(label);
    }
    std::vector<std::string> without = grouping;
    without.push_back(std::string(metric_name_label));

    std::vector<Group> groups;
    std::unordered_map<std::string, std::size_t> index;
    std::vector<Labels> relabelled;  // count_values: the metrics with the value label set
    if (op == Op::count_values) {
        relabelled.reserve(input.size());
        for (const auto& s : input) {
            Labels l = s.labels;
            l.set(label, format_value(s.v));
            relabelled.push_back(std::move(l));
        }
    }
    for (std::size_t i = 0; i < input.size(); ++i) {
        const Sample& s = input[i];
        const Labels& metric = op == Op::count_values ? relabelled[i] : s.labels;
        auto compute = [&] {
            return agg.without
                       ? metric.key_for(without, false)
                       : (grouping.empty() ? std::string() : metric.key_for(grouping, true));
        };
        const void* identity = op == Op::count_values ? nullptr : metric.identity();
        std::string computed;
        const std::string* found = nullptr;
        if (keys && identity) {
            auto [at, fresh] = keys->try_emplace(identity);
            if (fresh) at->second = compute();
            found = &at->second;
        } else {
            computed = compute();
            found = &computed;
        }
        const std::string& key = *found;
        auto [it, inserted] = index.try_emplace(key, groups.size());
        if (inserted) {
            Group g;
            if (agg.without) {
                g.labels = metric.drop(without);
            } else if (!grouping.empty()) {
                g.labels = metric.keep(grouping);
            }
            g.value = s.v;
            g.mean = s.v;
            g.count = 1;
            switch (op) {
                case Op::stdvar:
                case Op::stddev:
                    g.value = 0;
                    break;
                case Op::topk:
                case Op::bottomk:
                    g.members.push_back(&s);
                    break;
                case Op::quantile:
                    g.values.push_back(s.v);
                    break;
                case Op::group:
                    g.value = 1;
                    break;
                default:
                    break;
            }
            groups.push_back(std::move(g));
            continue;
        }
        Group& g = groups[it->second];
        switch (op) {
            case Op::sum:
                g.value += s.v;
                break;
            case Op::avg:
                g.count++;
                if (std::isinf(g.mean)) {
                    if (std::isinf(s.v) && (g.mean > 0) == (s.v > 0)) break;
                    if (!std::isinf(s.v) && !std::isnan(s.v)) break;
                }
                g.mean += s.v / g.count - g.mean / g.count;
                break;
            case Op::group:
                break;
            case Op::max:
                if (g.value < s.v || std::isnan(g.value)) g.value = s.v;
                break;
            case Op::min:
                if (g.value > s.v || std::isnan(g.value)) g.value = s.v;
                break;
            case Op::count:
            case Op::count_values:
                g.count++;
                break;
            case Op::stdvar:
            case Op::stddev: {
                g.count++;
                const double delta = s.v - g.mean;
                g.mean += delta / g.count;
                g.value += delta * (s.v - g.mean);
                break;
            }
            case Op::topk:
            case Op::bottomk:
                g.members.push_back(&s);
                break;
            case Op::quantile:
                g.values.push_back(s.v);
                break;
        }
    }

    Vector out;
    for (auto& g : groups) {
        switch (op) {
            case Op::avg:
                g.value = g.mean;
                break;
            case Op::count:
            case Op::count_values:
                g.value = g.count;
                break;
            case Op::stdvar:
                g.value = g.value / g.count;
                break;
            case Op::stddev:
                g.value = std::sqrt(g.value / g.count);
                break;
            case Op::quantile:
                g.value = quantile(param, std::move(g.values));
                break;
            case Op::topk:
            case Op::bottomk: {
                // Prometheus keeps a heap of k (container/heap, worst on top) while it reads the
                // input in order: a sample better than the top (or any sample while the top is
                // NaN) pops the top and is pushed (k = 1 replaces in place). Which of several
                // equal samples survive depends on that heap, so it is rebuilt step for step.
                const bool top = op == Op::topk;
                auto less = [top](const Sample* a, const Sample* b) {  // Go's heap Less
                    if (std::isnan(a->v)) return true;
                    return top ? a->v < b->v : a->v > b->v;
                };
                std::vector<const Sample*> heap;
                auto up = [&](std::size_t j) {
                    while (j > 0) {
                        std::size_t i = (j - 1) / 2;
                        if (!less(heap[j], heap[i])) break;
                        std::swap(heap[i], heap[j]);
                        j = i;
                    }
                };
                auto down = [&](std::size_t i, std::size_t n) {
                    for (;;) {
                        std::size_t j = 2 * i + 1;
                        if (j >= n) break;
                        if (j + 1 < n && less(heap[j + 1], heap[j])) ++j;
                        if (!less(heap[j], heap[i])) break;
                        std::swap(heap[i], heap[j]);
                        i = j;
                    }
                };
                const auto limit = static_cast<std::uint64_t>(k);
                for (const Sample* m : g.members) {
                    if (heap.size() < limit || (top ? heap[0]->v < m->v : heap[0]->v > m->v) ||
                        std::isnan(heap[0]->v)) {
                        if (heap.size() == limit) {
                            if (limit == 1) {
                                heap[0] = m;
                                continue;
                            }
                            // heap.Pop: the top to the end, sift down the rest, drop it.
                            std::swap(heap[0], heap.back());
                            down(0, heap.size() - 1);
                            heap.pop_back();
                        }
                        heap.push_back(m);
                        up(heap.size() - 1);
                    }
                }
                // sort.Sort(sort.Reverse(heap)): an insertion sort up to 12 elements in Go
                // (stable), beyond that an unstable one whose order of ties is not reproduced.
                auto reverse_less = [&](const Sample* a, const Sample* b) { return less(b, a); };
                if (heap.size() <= 12) {
                    for (std::size_t i = 1; i < heap.size(); ++i) {
                        for (std::size_t j = i; j > 0 && reverse_less(heap[j], heap[j - 1]); --j)
                            std::swap(heap[j], heap[j - 1]);
                    }
                } else {
                    std::stable_sort(heap.begin(), heap.end(), reverse_less);
                }
                for (const Sample* m : heap)
                    out.push_back(Sample{m->labels, 0, m->v});
                continue;
            }
            default:
                break;
        }
        out.push_back(Sample{std::move(g.labels), 0, g.value});
    }
    return out;
}

}  // namespace citygate::promql::detail
