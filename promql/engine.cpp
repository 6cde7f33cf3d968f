// The evaluator. Every node is evaluated once over all steps of its evaluator (start, end,
// interval), like Prometheus' rangeEval: children first, as matrices with one point per step,
// then the node step by step. Subqueries run a nested evaluator on their own aligned steps.
#include "promql/engine.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <span>
#include <unordered_map>
#include <unordered_set>

#include "promql/detail/functions.hpp"

namespace citygate::promql {

namespace {

using detail::EvalError;
using detail::fail;
using detail::fail_execution;
using detail::unwrap;

constexpr const char* too_many_samples_message =
    "query processing would load too many samples into memory in query execution";

// What all evaluators of one query share: the data, the options, the limits and the count of
// samples held.
struct Context {
    Queryable& queryable;
    const EngineOptions& options;
    const QueryLimits& limits;
    std::int64_t query_start = 0;
    std::int64_t query_end = 0;
    std::size_t samples = 0;
    unsigned checks = 0;

    void hold(std::size_t n) {
        samples += n;
        if (samples > limits.max_samples)
            fail(QueryError::Kind::too_many_samples, too_many_samples_message);
    }
    void release(std::size_t n) { samples -= std::min(n, samples); }

    // Cheap enough per series and per step: the clock is read on the first and every 64th call.
    void check() {
        if (limits.cancelled && limits.cancelled->load(std::memory_order_relaxed)) {
            fail(QueryError::Kind::cancelled, "query was canceled in expression evaluation");
        }
        if ((checks++ & 63) == 0 &&
            limits.deadline != std::chrono::steady_clock::time_point::max() &&
            std::chrono::steady_clock::now() > limits.deadline) {
            fail(QueryError::Kind::timeout, "query timed out in expression evaluation");
        }
    }
};

std::size_t count_points(const Matrix& m) {
    std::size_t n = 0;
    for (const auto& s : m)
        n += s.points.size();
    return n;
}

// Holds a matrix's points against the sample limit while it lives.
class HeldMatrix {
  public:
    // `held`: whether the producer of `m` held its points (evaluation results do; raw selector
    // data does not) and so whether they are released with it.
    HeldMatrix(Context& ctx, Matrix m, bool held = true)
        : ctx_(ctx), m_(std::move(m)), held_(held ? count_points(m_) : 0) {}
    ~HeldMatrix() { ctx_.release(held_); }
    HeldMatrix(const HeldMatrix&) = delete;
    HeldMatrix& operator=(const HeldMatrix&) = delete;
    HeldMatrix(HeldMatrix&& other) noexcept
        : ctx_(other.ctx_), m_(std::move(other.m_)), held_(other.held_) {
        other.held_ = 0;
    }
    Matrix& get() { return m_; }

  private:
    Context& ctx_;
    Matrix m_;
    std::size_t held_;
};

bool is_arithmetic(BinaryOp op) {
    switch (op) {
        case BinaryOp::add:
        case BinaryOp::sub:
        case BinaryOp::mul:
        case BinaryOp::div:
        case BinaryOp::pow:
        case BinaryOp::mod:
            return true;
        default:
            return false;
    }
}

// Go's math.Mod (C fmod) and math.Pow agree with the C library for every case PromQL meets.
double arithmetic(BinaryOp op, double l, double r) {
    switch (op) {
        case BinaryOp::add:
            return l + r;
        case BinaryOp::sub:
            return l - r;
        case BinaryOp::mul:
            return l * r;
        case BinaryOp::div:
            return l / r;
        case BinaryOp::pow:
            return std::pow(l, r);
        case BinaryOp::mod:
            return std::fmod(l, r);
        case BinaryOp::atan2:
            return std::atan2(l, r);
        default:
            return 0;
    }
}

bool compare(BinaryOp op, double l, double r) {
    switch (op) {
        case BinaryOp::eq:
            return l == r;
        case BinaryOp::ne:
            return l != r;
        case BinaryOp::gt:
            return l > r;
        case BinaryOp::lt:
            return l < r;
        case BinaryOp::ge:
            return l >= r;
        case BinaryOp::le:
            return l <= r;
        default:
            return false;
    }
}

// The value of a binary operation on two elements, and whether the element is kept (a false
// comparison filters it out).
std::pair<double, bool> element_op(BinaryOp op, double l, double r) {
    if (is_comparison(op)) return {l, compare(op, l, r)};
    return {arithmetic(op, l, r), true};
}

std::int64_t ceil_to_multiple(std::int64_t value, std::int64_t step) {
    std::int64_t q = value / step;
    if (q * step < value) ++q;  // division truncates toward zero; this rounds up either way
    return q * step;
}

std::int64_t floor_to_multiple(std::int64_t value, std::int64_t step) {
    std::int64_t q = value / step;
    if (q * step > value) --q;
    return q * step;
}

class Evaluator {
  public:
    Evaluator(Context& ctx, std::int64_t start, std::int64_t end, std::int64_t interval)
        : ctx_(ctx), start_(start), end_(end), interval_(interval) {}

    // A scalar- or vector-typed expression: one point per step where it has a value.
    Matrix eval(const Expr& e) {
        ctx_.check();
        if (const auto* n = e.as<NumberLiteral>()) return constant(n->value);
        if (const auto* p = e.as<Paren>()) return eval(*p->expr);
        if (const auto* v = e.as<VectorSelector>()) return selector(*v, false);
        if (const auto* u = e.as<Unary>()) return unary(*u);
        if (const auto* b = e.as<Binary>()) return binary(*b);
        if (const auto* a = e.as<Aggregate>()) return aggregate(*a);
        if (const auto* c = e.as<Call>()) return call(*c);
        fail_execution("unexpected expression type " + std::string(to_string(e.type())) +
                       " where an instant vector or scalar was expected");
    }

    // A range-vector expression at an instant query's time: each series' points in its window.
    Matrix eval_range_at_start(const Expr& e) {
        RangeData data = range_data(unwrap(e));
        Matrix out;
        for (auto& s : data.series.get()) {
            auto window = window_at(data, s, start_);
            if (window.empty()) continue;
            ctx_.hold(window.size());
            out.push_back(Series{s.labels, std::vector<Point>(window.begin(), window.end())});
        }
        return out;
    }

  private:
    std::size_t steps() const { return static_cast<std::size_t>((end_ - start_) / interval_) + 1; }

    std::int64_t resolve(const AtModifier& at) const {
        switch (at.kind) {
            case AtModifier::Kind::start:
                return ctx_.query_start;
            case AtModifier::Kind::end:
                return ctx_.query_end;
            default:
                return at.timestamp_ms;
        }
    }

    Matrix constant(double value) {
        Series s;
        s.points.reserve(steps());
        for (std::int64_t ts = start_; ts <= end_; ts += interval_)
            s.points.push_back({ts, value});
        ctx_.hold(s.points.size());
        Matrix m;
        m.push_back(std::move(s));
        return m;
    }

    std::vector<Series> select(const std::vector<Matcher>& matchers, std::int64_t mint,
                               std::int64_t maxt) {
        ctx_.check();
        SelectResult result = ctx_.queryable.select(matchers, mint, maxt);
        if (!result.is_ok()) {
            const auto& error = result.error();
            throw EvalError{QueryError{QueryError::Kind::storage, error.message, error.kind}};
        }
        std::vector<Series> series = std::move(result.series());
        std::sort(series.begin(), series.end(),
                  [](const Series& a, const Series& b) { return a.labels < b.labels; });
        return series;
    }

    // An instant selector: at each step the latest sample at or before the step (offset and @
    // applied) within the lookback delta, unless that sample is a staleness marker.
    // `sample_time`: the value is the sample's timestamp in seconds (for timestamp()).
    Matrix selector(const VectorSelector& vs, bool sample_time) {
        const bool fixed = vs.at.is_set();
        const std::int64_t at = fixed ? resolve(vs.at) : 0;
        const std::int64_t lookback = ctx_.options.lookback_delta_ms;
        const std::int64_t mint = (fixed ? at : start_) - vs.offset_ms - lookback;
        const std::int64_t maxt = (fixed ? at : end_) - vs.offset_ms;
        std::vector<Series> raw = select(vs.matchers, mint, maxt);
        Matrix out;
        for (auto& s : raw) {
            ctx_.check();
            Series o{std::move(s.labels), {}};
            const auto& pts = s.points;
            std::size_t next = 0;  // first point after the reference time
            for (std::int64_t ts = start_; ts <= end_; ts += interval_) {
                const std::int64_t ref = (fixed ? at : ts) - vs.offset_ms;
                if (fixed) {
                    next = static_cast<std::size_t>(
                        std::upper_bound(pts.begin(), pts.end(), ref,
                                         [](std::int64_t t, const Point& p) { return t < p.t; }) -
                        pts.begin());
                } else {
                    while (next < pts.size() && pts[next].t <= ref)
                        ++next;
                }
                if (next == 0) continue;
                const Point& p = pts[next - 1];
                if (p.t < ref - lookback || is_stale_nan(p.v)) continue;
                o.points.push_back({ts, sample_time ? static_cast<double>(p.t) / 1000 : p.v});
            }
            if (!o.points.empty()) {
                ctx_.hold(o.points.size());
                out.push_back(std::move(o));
            }
        }
        return out;
    }

    // The points a range-vector argument reads, and where its windows lie.
    struct RangeData {
        HeldMatrix series;
        std::int64_t range_ms;
        std::int64_t offset_ms;
        bool fixed;
        std::int64_t at;
    };

    RangeData range_data(const Expr& e) {
        if (const auto* m = e.as<MatrixSelector>()) {
            const VectorSelector& vs = m->selector;
            const bool fixed = vs.at.is_set();
            const std::int64_t at = fixed ? resolve(vs.at) : 0;
            const std::int64_t mint = (fixed ? at : start_) - vs.offset_ms - m->range_ms;
            const std::int64_t maxt = (fixed ? at : end_) - vs.offset_ms;
            Matrix raw = select(vs.matchers, mint, maxt);
            for (auto& s : raw)
                std::erase_if(s.points, [](const Point& p) { return is_stale_nan(p.v); });
            // Raw points are bounded by the Queryable (storage's own read budget); what counts
            // against max_samples is each window as it is used, as in Prometheus.
            return RangeData{HeldMatrix(ctx_, std::move(raw), false), m->range_ms, vs.offset_ms,
                             fixed, at};
        }
        const auto* sq = e.as<Subquery>();
        if (!sq) fail_execution("expected a range vector");
        const bool fixed = sq->at.is_set();
        const std::int64_t at = fixed ? resolve(sq->at) : 0;
        const std::int64_t step =
            sq->step_ms > 0 ? sq->step_ms : ctx_.options.default_subquery_step_ms;
        const std::int64_t sub_end = (fixed ? at : end_) - sq->offset_ms;
        const std::int64_t sub_start =
            ceil_to_multiple((fixed ? at : start_) - sq->offset_ms - sq->range_ms, step);
        Matrix result;
        if (sub_start <= sub_end) {
            Evaluator nested(ctx_, sub_start, sub_end, step);
            result = nested.eval(*sq->expr);
        }
        return RangeData{HeldMatrix(ctx_, std::move(result)), sq->range_ms, sq->offset_ms, fixed,
                         at};
    }

    // The points of `s` in its window at step `ts`: [end - range, end], end = (@ or ts) - offset.
    std::span<const Point> window_at(const RangeData& d, const Series& s, std::int64_t ts) const {
        const std::int64_t hi = (d.fixed ? d.at : ts) - d.offset_ms;
        const std::int64_t lo = hi - d.range_ms;
        const auto& pts = s.points;
        auto first = std::lower_bound(pts.begin(), pts.end(), lo,
                                      [](const Point& p, std::int64_t t) { return p.t < t; });
        auto last = std::upper_bound(first, pts.end(), hi,
                                     [](std::int64_t t, const Point& p) { return t < p.t; });
        return {pts.data() + (first - pts.begin()), static_cast<std::size_t>(last - first)};
    }

    // Steps through child matrices: at each step the children's samples at that step go to
    // `fn`, whose output samples become the points of the result series.
    template <typename Fn>
    Matrix range_eval(std::vector<Matrix*> inputs, Fn&& fn) {
        std::vector<std::vector<std::size_t>> cursors(inputs.size());
        for (std::size_t i = 0; i < inputs.size(); ++i) {
            if (inputs[i]) cursors[i].assign(inputs[i]->size(), 0);
        }
        std::vector<Vector> vectors(inputs.size());
        Matrix out;
        std::unordered_map<std::string, std::size_t> index;
        std::vector<std::string> keys;
        for (std::int64_t ts = start_; ts <= end_; ts += interval_) {
            ctx_.check();
            for (std::size_t i = 0; i < inputs.size(); ++i) {
                vectors[i].clear();
                if (!inputs[i]) continue;
                for (std::size_t si = 0; si < inputs[i]->size(); ++si) {
                    const Series& s = (*inputs[i])[si];
                    std::size_t& c = cursors[i][si];
                    if (c < s.points.size() && s.points[c].t == ts) {
                        vectors[i].push_back(Sample{s.labels, ts, s.points[c].v});
                        ++c;
                    }
                }
            }
            Vector result = fn(vectors, ts);
            keys.clear();
            for (const auto& sample : result)
                keys.push_back(sample.labels.key());
            if (result.size() > 1) {
                std::unordered_set<std::string_view> seen;
                for (const auto& k : keys) {
                    if (!seen.insert(k).second)
                        fail_execution("vector cannot contain metrics with the same labelset");
                }
            }
            ctx_.hold(result.size());
            for (std::size_t r = 0; r < result.size(); ++r) {
                auto [it, inserted] = index.try_emplace(keys[r], out.size());
                if (inserted) out.push_back(Series{std::move(result[r].labels), {}});
                out[it->second].points.push_back({ts, result[r].v});
            }
        }
        return out;
    }

    Matrix unary(const Unary& u) {
        Matrix m = eval(*u.expr);
        if (!u.negate) return m;
        std::unordered_set<std::string> seen;
        for (auto& s : m) {
            s.labels.erase(metric_name_label);
            for (auto& p : s.points)
                p.v = -p.v;
            if (!seen.insert(s.labels.key()).second) {
                fail_execution("vector cannot contain metrics with the same labelset");
            }
        }
        return m;
    }

    Matrix binary(const Binary& b) {
        const ValueType lt = b.lhs->type(), rt = b.rhs->type();
        HeldMatrix lhs(ctx_, eval(*b.lhs));
        HeldMatrix rhs(ctx_, eval(*b.rhs));
        std::vector<Matrix*> inputs = {&lhs.get(), &rhs.get()};
        if (lt == ValueType::scalar && rt == ValueType::scalar) {
            return range_eval(inputs, [&](std::vector<Vector>& v, std::int64_t) {
                const double l = v[0].empty() ? NAN : v[0][0].v;
                const double r = v[1].empty() ? NAN : v[1][0].v;
                const double value =
                    is_comparison(b.op) ? (compare(b.op, l, r) ? 1 : 0) : arithmetic(b.op, l, r);
                return Vector{Sample{{}, 0, value}};
            });
        }
        if (lt == ValueType::vector && rt == ValueType::vector) {
            VectorMatching matching = *b.matching;
            if (is_set_operator(b.op)) matching.card = VectorMatching::Card::many_to_many;
            return range_eval(inputs, [&](std::vector<Vector>& v, std::int64_t) {
                switch (b.op) {
                    case BinaryOp::land:
                        return vector_and(v[0], v[1], matching);
                    case BinaryOp::lor:
                        return vector_or(v[0], v[1], matching);
                    case BinaryOp::lunless:
                        return vector_unless(v[0], v[1], matching);
                    default:
                        return vector_binop(b.op, v[0], v[1], matching, b.return_bool);
                }
            });
        }
        const bool swap = lt == ValueType::scalar;
        return range_eval(inputs, [&](std::vector<Vector>& v, std::int64_t) {
            Vector& vec = swap ? v[1] : v[0];
            const double scalar = (swap ? v[0] : v[1]).empty() ? NAN : (swap ? v[0] : v[1])[0].v;
            Vector out;
            for (auto& s : vec) {
                double l = s.v, r = scalar;
                if (swap) std::swap(l, r);
                auto [value, keep] = element_op(b.op, l, r);
                // A comparison keeps the vector's value, on whichever side the vector is.
                if (is_comparison(b.op) && swap) value = r;
                if (b.return_bool) {
                    value = keep ? 1 : 0;
                    keep = true;
                }
                if (!keep) continue;
                s.v = value;
                if (is_arithmetic(b.op) || b.return_bool) s.labels.erase(metric_name_label);
                out.push_back(std::move(s));
            }
            return out;
        });
    }

    static std::string signature(const Labels& l, const VectorMatching& m) {
        if (m.on) return l.key_for(m.labels, true);
        std::vector<std::string> names = m.labels;
        names.emplace_back(metric_name_label);
        return l.key_for(names, false);
    }

    static Vector vector_and(const Vector& lhs, const Vector& rhs, const VectorMatching& m) {
        if (lhs.empty() || rhs.empty()) return {};
        std::unordered_set<std::string> right;
        for (const auto& s : rhs)
            right.insert(signature(s.labels, m));
        Vector out;
        for (const auto& s : lhs) {
            if (right.count(signature(s.labels, m))) out.push_back(s);
        }
        return out;
    }

    static Vector vector_or(const Vector& lhs, const Vector& rhs, const VectorMatching& m) {
        if (lhs.empty()) return rhs;
        if (rhs.empty()) return lhs;
        std::unordered_set<std::string> left;
        Vector out;
        for (const auto& s : lhs) {
            left.insert(signature(s.labels, m));
            out.push_back(s);
        }
        for (const auto& s : rhs) {
            if (!left.count(signature(s.labels, m))) out.push_back(s);
        }
        return out;
    }

    static Vector vector_unless(const Vector& lhs, const Vector& rhs, const VectorMatching& m) {
        if (lhs.empty() || rhs.empty()) return lhs;
        std::unordered_set<std::string> right;
        for (const auto& s : rhs)
            right.insert(signature(s.labels, m));
        Vector out;
        for (const auto& s : lhs) {
            if (!right.count(signature(s.labels, m))) out.push_back(s);
        }
        return out;
    }

    static Labels result_metric(const Labels& lhs, const Labels& rhs, BinaryOp op,
                                const VectorMatching& m) {
        Labels out = lhs;
        if (is_arithmetic(op)) out.erase(metric_name_label);
        if (m.card == VectorMatching::Card::one_to_one) {
            out = m.on ? out.keep(m.labels) : out.drop(m.labels);
        }
        for (const auto& name : m.include)
            out.set(name, rhs.get(name));
        return out;
    }

    static Vector vector_binop(BinaryOp op, const Vector& lhs_in, const Vector& rhs_in,
                               const VectorMatching& m, bool return_bool) {
        if (lhs_in.empty() || rhs_in.empty()) return {};
        using Card = VectorMatching::Card;
        // One-to-many is many-to-one with the sides swapped (and swapped back for the value).
        const bool swapped = m.card == Card::one_to_many;
        const Vector& lhs = swapped ? rhs_in : lhs_in;
        const Vector& rhs = swapped ? lhs_in : rhs_in;
        std::unordered_map<std::string, const Sample*> right;
        for (const auto& s : rhs) {
            auto [it, inserted] = right.try_emplace(signature(s.labels, m), &s);
            if (!inserted) {
                const Labels matched =
                    m.on ? s.labels.keep(m.labels) : s.labels.drop(m.labels).without_name();
                fail_execution("found duplicate series for the match group " + matched.to_string() +
                               " on the " + (swapped ? "left" : "right") +
                               " hand-side of the operation: [" + s.labels.to_string() + ", " +
                               it->second->labels.to_string() +
                               "];many-to-many matching not allowed: matching labels must be "
                               "unique on one side");
            }
        }
        std::unordered_map<std::string, std::unordered_set<std::string>> matched;
        Vector out;
        for (const auto& ls : lhs) {
            const std::string sig = signature(ls.labels, m);
            auto it = right.find(sig);
            if (it == right.end()) continue;
            const Sample& rs = *it->second;
            double l = ls.v, r = rs.v;
            if (swapped) std::swap(l, r);
            auto [value, keep] = element_op(op, l, r);
            if (return_bool) {
                value = keep ? 1 : 0;
            } else if (!keep) {
                continue;
            }
            Labels metric = result_metric(ls.labels, rs.labels, op, m);
            if (return_bool) metric.erase(metric_name_label);
            auto [mit, first] = matched.try_emplace(sig);
            if (m.card == Card::one_to_one) {
                if (!first) {
                    fail_execution(
                        "multiple matches for labels: many-to-one matching must be explicit "
                        "(group_left/group_right)");
                }
            } else if (!mit->second.insert(metric.key()).second) {
                fail_execution(
                    "multiple matches for labels: grouping labels must ensure unique matches");
            }
            out.push_back(Sample{std::move(metric), 0, value});
        }
        return out;
    }

    Matrix aggregate(const Aggregate& a) {
        std::string label;
        std::optional<HeldMatrix> param;
        if (a.param) {
            const Expr& p = unwrap(*a.param);
            if (const auto* s = p.as<StringLiteral>()) {
                label = s->value;
            } else {
                param.emplace(ctx_, eval(*a.param));
            }
        }
        HeldMatrix input(ctx_, eval(*a.expr));
        std::vector<Matrix*> inputs = {param ? &param->get() : nullptr, &input.get()};
        // The input's series keep their labels for the whole evaluation.
        detail::GroupKeyCache keys;
        return range_eval(inputs, [&](std::vector<Vector>& v, std::int64_t) {
            const double value = param ? (v[0].empty() ? NAN : v[0][0].v) : 0;
            return detail::aggregate(a, v[1], value, label, &keys);
        });
    }

    Matrix call(const Call& c) {
        const std::string_view name = c.function->name;
        if (name == "timestamp") {
            if (const auto* vs = unwrap(*c.args[0]).as<VectorSelector>()) {
                // The sample's own time, not the step's: read it from the selector itself.
                HeldMatrix m(ctx_, selector(*vs, true));
                std::vector<Matrix*> inputs = {&m.get()};
                return range_eval(inputs, [](std::vector<Vector>& v, std::int64_t) {
                    Vector out = std::move(v[0]);
                    for (auto& s : out)
                        s.labels.erase(metric_name_label);
                    return out;
                });
            }
        }
        std::optional<std::size_t> range_arg;
        for (std::size_t i = 0; i < c.args.size(); ++i) {
            const Expr& a = unwrap(*c.args[i]);
            if (a.as<MatrixSelector>() || a.as<Subquery>()) {
                range_arg = i;
                break;
            }
        }
        std::vector<std::optional<HeldMatrix>> args(c.args.size());
        std::vector<Matrix*> inputs(c.args.size(), nullptr);
        for (std::size_t i = 0; i < c.args.size(); ++i) {
            if (range_arg == i || c.args[i]->type() == ValueType::string) continue;
            args[i].emplace(ctx_, eval(*c.args[i]));
            inputs[i] = &args[i]->get();
        }
        if (range_arg) return range_call(c, *range_arg, inputs);
        auto function = detail::vector_function(c);
        return range_eval(
            inputs, [&](std::vector<Vector>& v, std::int64_t ts) { return function->call(v, ts); });
    }

    Matrix range_call(const Call& c, std::size_t arg, const std::vector<Matrix*>& scalar_inputs) {
        const std::string_view name = c.function->name;
        auto function = detail::range_function(name);
        if (!function) fail_execution("function \"" + std::string(name) + "\" is not supported");
        const bool keep_name = name == "last_over_time";
        std::optional<Matrix> from_rollups = rollup_call(name, unwrap(*c.args[arg]), keep_name);
        Matrix out = from_rollups ? std::move(*from_rollups)
                                  : raw_range_call(c, arg, scalar_inputs, function, keep_name);
        if (name == "absent_over_time") return absent_over_time(c, out);
        std::unordered_set<std::string> seen;
        for (const auto& s : out) {
            if (!seen.insert(s.labels.key()).second) {
                fail_execution("vector cannot contain metrics with the same labelset");
            }
        }
        return out;
    }

    // A window [lo, hi] (offset and @ applied) as whole buckets [b1, b2) and raw edges.
    struct BucketWindow {
        std::int64_t lo, hi, b1, b2;
    };

    // `name` over `arg` from the Queryable's rollups, where EngineOptions::rollup_min_buckets
    // allows it and every bucket and edge is finite (a NaN or infinity, staleness markers in
    // buckets included, sends the query back to raw points, which order them as Prometheus
    // does); nothing otherwise.
    std::optional<Matrix> rollup_call(std::string_view name, const Expr& arg, bool keep_name) {
        const auto* m = arg.as<MatrixSelector>();
        const auto function = detail::bucket_function(name);
        const std::int64_t min_buckets = ctx_.options.rollup_min_buckets;
        if (!m || !function || min_buckets <= 0) return std::nullopt;
        const VectorSelector& vs = m->selector;
        const bool fixed = vs.at.is_set();
        const bool one_window = fixed || start_ == end_;
        std::int64_t width = 0;
        for (std::int64_t w : ctx_.queryable.rollup_widths()) {
            if (w > 0 && m->range_ms / w >= min_buckets && (one_window || interval_ >= w))
                width = w;
        }
        if (width == 0) return std::nullopt;

        const std::int64_t at = fixed ? resolve(vs.at) : 0;
        std::vector<BucketWindow> windows;
        std::vector<Span> spans;
        std::int64_t bucket_start = std::numeric_limits<std::int64_t>::max();
        std::int64_t bucket_end = std::numeric_limits<std::int64_t>::min();
        for (std::int64_t ts = start_; ts <= end_; ts += interval_) {
            const std::int64_t hi = (fixed ? at : ts) - vs.offset_ms;
            const std::int64_t lo = hi - m->range_ms;
            std::int64_t b1 = ceil_to_multiple(lo, width);
            std::int64_t b2 = floor_to_multiple(hi + 1, width);
            if (b2 <= b1) {
                b1 = b2 = hi + 1;  // no whole bucket: the window is all edge
                spans.push_back({lo, hi + 1});
            } else {
                spans.push_back({lo, b1});
                spans.push_back({b2, hi + 1});
                bucket_start = std::min(bucket_start, b1);
                bucket_end = std::max(bucket_end, b2);
            }
            windows.push_back({lo, hi, b1, b2});
        }
        if (bucket_end < bucket_start) bucket_start = bucket_end = 0;
        std::sort(spans.begin(), spans.end(),
                  [](const Span& a, const Span& b) { return a.start_ms < b.start_ms; });
        std::vector<Span> merged;
        std::int64_t edge_ms = 0;
        for (const Span& sp : spans) {
            if (sp.end_ms <= sp.start_ms) continue;
            if (!merged.empty() && sp.start_ms <= merged.back().end_ms) {
                edge_ms -= merged.back().end_ms - merged.back().start_ms;
                merged.back().end_ms = std::max(merged.back().end_ms, sp.end_ms);
            } else {
                merged.push_back(sp);
            }
            edge_ms += merged.back().end_ms - merged.back().start_ms;
        }
        // The edges are read as raw points: where they cover much of what a raw read would
        // (steps of about a bucket tile the range with edges), raw points alone cost less.
        const std::int64_t raw_ms = (fixed ? 0 : end_ - start_) + m->range_ms;
        const std::int64_t share = ctx_.options.rollup_edge_share;
        if (share > 0 && edge_ms > raw_ms / share) return std::nullopt;

        ctx_.check();
        RollupResult read =
            ctx_.queryable.select_rollups(vs.matchers, width, bucket_start, bucket_end, merged);
        if (!read.is_ok()) {
            const auto& error = read.error();
            throw EvalError{QueryError{QueryError::Kind::storage, error.message, error.kind}};
        }
        std::vector<RollupSeries>& series = read.series();
        std::size_t held = 0;
        for (auto& s : series) {
            for (const Bucket& b : s.buckets) {
                if (!std::isfinite(b.sum) || !std::isfinite(b.min) || !std::isfinite(b.max) ||
                    !std::isfinite(b.last)) {
                    return std::nullopt;
                }
            }
            std::erase_if(s.edges, [](const Point& p) { return is_stale_nan(p.v); });
            for (const Point& p : s.edges) {
                if (!std::isfinite(p.v)) return std::nullopt;
            }
            held += s.buckets.size() + s.edges.size();
        }
        ctx_.hold(held);
        std::sort(series.begin(), series.end(),
                  [](const RollupSeries& a, const RollupSeries& b) { return a.labels < b.labels; });
        Matrix out;
        for (const auto& s : series) {
            ctx_.check();
            Series o{keep_name ? s.labels : s.labels.without_name(), {}};
            std::size_t k = 0;
            for (std::int64_t ts = start_; ts <= end_; ts += interval_, ++k) {
                const BucketWindow& w = windows[k];
                auto value = detail::bucket_window(*function, points_in(s.edges, w.lo, w.b1),
                                                   buckets_in(s.buckets, w.b1, w.b2),
                                                   points_in(s.edges, w.b2, w.hi + 1));
                if (value) o.points.push_back({ts, *value});
            }
            if (!o.points.empty()) {
                ctx_.hold(o.points.size());
                out.push_back(std::move(o));
            }
        }
        ctx_.release(held);
        return out;
    }

    // The points of `pts` (ascending) with lo <= t < hi.
    static std::span<const Point> points_in(const std::vector<Point>& pts, std::int64_t lo,
                                            std::int64_t hi) {
        auto first = std::lower_bound(pts.begin(), pts.end(), lo,
                                      [](const Point& p, std::int64_t t) { return p.t < t; });
        auto last = std::lower_bound(first, pts.end(), hi,
                                     [](const Point& p, std::int64_t t) { return p.t < t; });
        return {pts.data() + (first - pts.begin()), static_cast<std::size_t>(last - first)};
    }

    // The buckets of `buckets` (ascending) starting in [lo, hi).
    static std::span<const Bucket> buckets_in(const std::vector<Bucket>& buckets, std::int64_t lo,
                                              std::int64_t hi) {
        auto by_start = [](const Bucket& b, std::int64_t t) { return b.start < t; };
        auto first = std::lower_bound(buckets.begin(), buckets.end(), lo, by_start);
        auto last = std::lower_bound(first, buckets.end(), hi, by_start);
        return {buckets.data() + (first - buckets.begin()), static_cast<std::size_t>(last - first)};
    }

    Matrix raw_range_call(const Call& c, std::size_t arg, const std::vector<Matrix*>& scalar_inputs,
                          const detail::RangeFunction& function, bool keep_name) {
        RangeData data = range_data(unwrap(*c.args[arg]));
        std::vector<double> scalars(c.args.size(), NAN);
        Matrix out;
        for (const auto& s : data.series.get()) {
            ctx_.check();
            Series o{keep_name ? s.labels : s.labels.without_name(), {}};
            std::size_t step = 0;
            for (std::int64_t ts = start_; ts <= end_; ts += interval_, ++step) {
                auto points = window_at(data, s, ts);
                if (points.empty()) continue;
                for (std::size_t i = 0; i < scalar_inputs.size(); ++i) {
                    const Matrix* m = scalar_inputs[i];
                    if (m && !m->empty() && step < (*m)[0].points.size())
                        scalars[i] = (*m)[0].points[step].v;
                }
                const std::int64_t hi = (data.fixed ? data.at : ts) - data.offset_ms;
                detail::Window w{points, ts, hi - data.range_ms, hi, data.range_ms};
                ctx_.hold(points.size());  // the window, while the function reads it
                auto value = function(w, scalars);
                ctx_.release(points.size());
                if (value) o.points.push_back({ts, *value});
            }
            if (!o.points.empty()) {
                ctx_.hold(o.points.size());
                out.push_back(std::move(o));
            }
        }
        return out;
    }

    // 1 at the steps where no series had a sample in its window, with the selector's labels.
    Matrix absent_over_time(const Call& c, const Matrix& present) {
        std::unordered_set<std::int64_t> found;
        for (const auto& s : present) {
            for (const auto& p : s.points)
                found.insert(p.t);
        }
        ctx_.release(count_points(present));
        Series o{detail::absent_labels(*c.args[0]), {}};
        for (std::int64_t ts = start_; ts <= end_; ts += interval_) {
            if (!found.count(ts)) o.points.push_back({ts, 1});
        }
        Matrix out;
        if (!o.points.empty()) {
            ctx_.hold(o.points.size());
            out.push_back(std::move(o));
        }
        return out;
    }

    Context& ctx_;
    const std::int64_t start_;
    const std::int64_t end_;
    const std::int64_t interval_;
};

QueryError bad_data(std::string message) {
    return QueryError{QueryError::Kind::bad_data, std::move(message), SelectError::Kind::storage};
}

}  // namespace

QueryResult Engine::instant_query(Queryable& queryable, std::string_view query,
                                  std::int64_t time_ms, const QueryLimits& limits) const {
    auto parsed = parse(query, options_.parse_limits);
    if (!parsed.is_ok()) return bad_data(parsed.error().message);
    return evaluate(queryable, *parsed.expr(), time_ms, time_ms, 0, limits);
}

QueryResult Engine::range_query(Queryable& queryable, std::string_view query, std::int64_t start_ms,
                                std::int64_t end_ms, std::int64_t step_ms,
                                const QueryLimits& limits) const {
    if (step_ms <= 0)
        return bad_data("zero or negative query resolution step widths are not accepted");
    if (end_ms < start_ms) return bad_data("end timestamp must not be before start time");
    auto parsed = parse(query, options_.parse_limits);
    if (!parsed.is_ok()) return bad_data(parsed.error().message);
    const ValueType type = parsed.expr()->type();
    if (type != ValueType::scalar && type != ValueType::vector) {
        return bad_data("invalid expression type \"" +
                        std::string(type == ValueType::matrix ? "range vector" : to_string(type)) +
                        "\" for range query, must be Scalar or instant Vector");
    }
    if (start_ms == end_ms) {
        // One step, but still a range query's answer: a matrix.
        auto result =
            evaluate(queryable, *parsed.expr(), start_ms, end_ms + step_ms, step_ms, limits);
        if (!result.is_ok()) return result;
        Matrix& m = std::get<Matrix>(result.value());
        for (auto& s : m)
            std::erase_if(s.points, [&](const Point& p) { return p.t > end_ms; });
        std::erase_if(m, [](const Series& s) { return s.points.empty(); });
        return result;
    }
    return evaluate(queryable, *parsed.expr(), start_ms, end_ms, step_ms, limits);
}

QueryResult Engine::evaluate(Queryable& queryable, const Expr& expr, std::int64_t start_ms,
                             std::int64_t end_ms, std::int64_t step_ms,
                             const QueryLimits& limits) const {
    const bool instant = start_ms == end_ms;
    if (!instant && step_ms <= 0)
        return bad_data("zero or negative query resolution step widths are not accepted");
    Context ctx{queryable, options_, limits, start_ms, end_ms};
    try {
        Evaluator evaluator(ctx, start_ms, end_ms, instant ? 1 : step_ms);
        switch (expr.type()) {
            case ValueType::string:
                if (!instant)
                    return bad_data(
                        "invalid expression type \"string\" for range query, must be Scalar or "
                        "instant Vector");
                return Value(String{start_ms, unwrap(expr).as<StringLiteral>()->value});
            case ValueType::matrix:
                if (!instant) {
                    return bad_data(
                        "invalid expression type \"range vector\" for range query, must be Scalar "
                        "or instant Vector");
                }
                return Value(evaluator.eval_range_at_start(expr));
            case ValueType::scalar: {
                Matrix m = evaluator.eval(expr);
                if (instant) {
                    const double v = m.empty() || m[0].points.empty() ? NAN : m[0].points[0].v;
                    return Value(Scalar{start_ms, v});
                }
                return Value(std::move(m));
            }
            case ValueType::vector: {
                Matrix m = evaluator.eval(expr);
                if (instant) {
                    Vector v;
                    v.reserve(m.size());
                    for (auto& s : m)
                        v.push_back(Sample{std::move(s.labels), start_ms, s.points[0].v});
                    return Value(std::move(v));
                }
                std::sort(m.begin(), m.end(),
                          [](const Series& a, const Series& b) { return a.labels < b.labels; });
                return Value(std::move(m));
            }
            case ValueType::none:
                break;
        }
        return bad_data("expression has no type");
    } catch (const EvalError& e) {
        return e.error;
    }
}

}  // namespace citygate::promql
