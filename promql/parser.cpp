// A hand-written lexer and recursive-descent parser for PromQL, following the grammar and the
// error cases of Prometheus 2.42 (promql/parser/generated_parser.y and parse.go's checkAST).
#include "promql/parser.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <stdexcept>

namespace citygate::promql {

namespace {

enum class Tok {
    eof,
    identifier,
    metric_identifier,
    number,
    duration,
    string,
    left_paren,
    right_paren,
    left_brace,
    right_brace,
    left_bracket,
    right_bracket,
    comma,
    colon,
    at,
    assign,
    eql,
    neq,
    eql_regex,
    neq_regex,
    lss,
    gtr,
    lte,
    gte,
    add,
    sub,
    mul,
    div,
    mod,
    pow,
    // keywords
    land,
    lor,
    lunless,
    atan2,
    aggregator,
    offset,
    by,
    without,
    on,
    ignoring,
    group_left,
    group_right,
    bool_kw,
    start,
    end,
};

struct Token {
    Tok kind = Tok::eof;
    std::string_view text;
    std::size_t pos = 0;
    AggregateOp aggregate = AggregateOp::sum;  // for Tok::aggregator
};

// Raised inside the parser only and turned into a ParseError at its boundary; the parser is a
// deep recursion and the first error ends it.
struct Failure {
    std::string message;
    Position position;
};

[[noreturn]] void fail(std::size_t start, std::size_t end, std::string message) {
    throw Failure{std::move(message), Position{start, end}};
}

bool is_alpha(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_digit(char c) {
    return c >= '0' && c <= '9';
}
bool is_alnum(char c) {
    return is_alpha(c) || is_digit(c);
}
bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
}

struct Keyword {
    std::string_view word;
    Tok kind;
    AggregateOp aggregate = AggregateOp::sum;
};
constexpr Keyword keywords[] = {
    {"and", Tok::land},
    {"or", Tok::lor},
    {"unless", Tok::lunless},
    {"atan2", Tok::atan2},
    {"sum", Tok::aggregator, AggregateOp::sum},
    {"avg", Tok::aggregator, AggregateOp::avg},
    {"count", Tok::aggregator, AggregateOp::count},
    {"min", Tok::aggregator, AggregateOp::min},
    {"max", Tok::aggregator, AggregateOp::max},
    {"group", Tok::aggregator, AggregateOp::group},
    {"stddev", Tok::aggregator, AggregateOp::stddev},
    {"stdvar", Tok::aggregator, AggregateOp::stdvar},
    {"topk", Tok::aggregator, AggregateOp::topk},
    {"bottomk", Tok::aggregator, AggregateOp::bottomk},
    {"count_values", Tok::aggregator, AggregateOp::count_values},
    {"quantile", Tok::aggregator, AggregateOp::quantile},
    {"offset", Tok::offset},
    {"by", Tok::by},
    {"without", Tok::without},
    {"on", Tok::on},
    {"ignoring", Tok::ignoring},
    {"group_left", Tok::group_left},
    {"group_right", Tok::group_right},
    {"bool", Tok::bool_kw},
    {"start", Tok::start},
    {"end", Tok::end},
};

bool is_keyword(Tok kind) {
    return kind >= Tok::land;
}

// Splits the whole query into tokens first: the input is bounded, and lookahead is then free.
class Lexer {
  public:
    explicit Lexer(std::string_view input) : in_(input) {}

    std::vector<Token> run() {
        std::vector<Token> out;
        for (;;) {
            Token t = next();
            out.push_back(t);
            if (t.kind == Tok::eof) return out;
        }
    }

  private:
    char peek(std::size_t ahead = 0) const {
        return pos_ + ahead < in_.size() ? in_[pos_ + ahead] : '\0';
    }
    bool at_end() const { return pos_ >= in_.size(); }

    Token make(Tok kind, std::size_t start) const {
        return Token{kind, in_.substr(start, pos_ - start), start};
    }

    Token next() {
        for (;;) {
            while (!at_end() && is_space(peek()))
                ++pos_;
            if (!at_end() && peek() == '#') {  // comment to the end of the line
                while (!at_end() && peek() != '\n')
                    ++pos_;
                continue;
            }
            break;
        }
        const std::size_t start = pos_;
        if (at_end()) return make(Tok::eof, start);
        const char c = peek();
        auto one = [&](Tok kind) {
            ++pos_;
            return make(kind, start);
        };
        auto two = [&](Tok kind) {
            pos_ += 2;
            return make(kind, start);
        };
        switch (c) {
            case '(':
                return one(Tok::left_paren);
            case ')':
                return one(Tok::right_paren);
            case '{':
                return one(Tok::left_brace);
            case '}':
                return one(Tok::right_brace);
            case '[':
                return one(Tok::left_bracket);
            case ']':
                return one(Tok::right_bracket);
            case ',':
                return one(Tok::comma);
            case ':':
                break;  // a colon may start a metric name; a lone one is Tok::colon
            case '@':
                return one(Tok::at);
            case '+':
                return one(Tok::add);
            case '-':
                return one(Tok::sub);
            case '*':
                return one(Tok::mul);
            case '/':
                return one(Tok::div);
            case '%':
                return one(Tok::mod);
            case '^':
                return one(Tok::pow);
            case '=':
                if (peek(1) == '=') return two(Tok::eql);
                if (peek(1) == '~') return two(Tok::eql_regex);
                return one(Tok::assign);
            case '!':
                if (peek(1) == '=') return two(Tok::neq);
                if (peek(1) == '~') return two(Tok::neq_regex);
                fail(start, start + 1, "unexpected character after '!': " + quote_char(peek(1)));
            case '<':
                if (peek(1) == '=') return two(Tok::lte);
                return one(Tok::lss);
            case '>':
                if (peek(1) == '=') return two(Tok::gte);
                return one(Tok::gtr);
            case '"':
            case '\'':
                return string(c);
            case '`':
                return raw_string();
            default:
                break;
        }
        if (is_digit(c) || (c == '.' && is_digit(peek(1)))) return number_or_duration();
        if (is_alpha(c) || c == ':') {
            if (c == ':' && !(is_alpha(peek(1)) || peek(1) == ':')) return one(Tok::colon);
            while (!at_end() && (is_alnum(peek()) || peek() == ':'))
                ++pos_;
            Token t = make(Tok::identifier, start);
            const std::string word = lower(t.text);
            if (word == "inf" || word == "nan") {
                t.kind = Tok::number;
                return t;
            }
            for (const auto& k : keywords) {
                if (k.word == word) {
                    t.kind = k.kind;
                    t.aggregate = k.aggregate;
                    return t;
                }
            }
            if (t.text.find(':') != std::string_view::npos) t.kind = Tok::metric_identifier;
            return t;
        }
        fail(start, start + 1, "unexpected character: " + quote_char(c));
    }

    static std::string quote_char(char c) {
        if (c == '\0') return "end of input";
        return std::string("'") + c + "'";
    }

    void accept_run(std::string_view set) {
        while (!at_end() && set.find(peek()) != std::string_view::npos)
            ++pos_;
    }
    bool accept(std::string_view set) {
        if (!at_end() && set.find(peek()) != std::string_view::npos) {
            ++pos_;
            return true;
        }
        return false;
    }

    Token number_or_duration() {
        const std::size_t start = pos_;
        std::string_view digits = "0123456789";
        if (peek() == '0' && (peek(1) == 'x' || peek(1) == 'X')) {
            pos_ += 2;
            digits = "0123456789abcdefABCDEF";
        }
        accept_run(digits);
        if (accept(".")) accept_run(digits);
        if (accept("eE")) {
            accept("+-");
            accept_run("0123456789");
        }
        if (!is_alnum(peek())) return make(Tok::number, start);
        // A duration: digits then units (5m, 1h30m, 500ms); the parser validates the order.
        if (accept("smhdwy")) {
            accept("s");
            bool ok = true;
            while (!at_end() && is_digit(peek())) {
                accept_run("0123456789");
                if (!accept("smhdw")) {
                    ok = false;
                    break;
                }
                accept("s");
            }
            if (ok && !is_alnum(peek())) return make(Tok::duration, start);
        }
        while (!at_end() && is_alnum(peek()))
            ++pos_;
        fail(start, pos_,
             "bad number or duration syntax: \"" + std::string(in_.substr(start, pos_ - start)) +
                 "\"");
    }

    Token string(char quote) {
        const std::size_t start = pos_++;
        while (true) {
            if (at_end() || peek() == '\n') fail(start, pos_, "unterminated quoted string");
            const char c = in_[pos_++];
            if (c == quote) break;
            if (c == '\\') {
                if (at_end()) fail(start, pos_, "escape sequence not terminated");
                ++pos_;  // escapes are decoded (and checked) by unquote()
            }
        }
        return make(Tok::string, start);
    }

    Token raw_string() {
        const std::size_t start = pos_++;
        while (true) {
            if (at_end()) fail(start, pos_, "unterminated raw string");
            if (in_[pos_++] == '`') break;
        }
        return make(Tok::string, start);
    }

    std::string_view in_;
    std::size_t pos_ = 0;
};

void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xc0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xe0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
        out += static_cast<char>(0xf0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
        out += static_cast<char>(0x80 | (cp & 0x3f));
    }
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return 99;
}

// Go's escapes, as Prometheus' lexer accepts them: \a \b \f \n \r \t \v \\ \<quote>, \NNN octal,
// \xHH, \uHHHH, \UHHHHHHHH.
std::string unquote(const Token& t) {
    const std::string_view s = t.text;
    const char quote = s.front();
    const std::string_view body = s.substr(1, s.size() - 2);
    if (quote == '`') return std::string(body);
    std::string out;
    out.reserve(body.size());
    for (std::size_t i = 0; i < body.size(); ++i) {
        const char c = body[i];
        if (c != '\\') {
            out += c;
            continue;
        }
        const std::size_t at = t.pos + 1 + i;
        const char e = body[++i];
        switch (e) {
            case 'a':
                out += '\a';
                continue;
            case 'b':
                out += '\b';
                continue;
            case 'f':
                out += '\f';
                continue;
            case 'n':
                out += '\n';
                continue;
            case 'r':
                out += '\r';
                continue;
            case 't':
                out += '\t';
                continue;
            case 'v':
                out += '\v';
                continue;
            case '\\':
                out += '\\';
                continue;
            default:
                break;
        }
        if (e == quote) {
            out += e;
            continue;
        }
        int n = 0, base = 0;
        std::uint32_t max = 0;
        std::size_t first = i;
        if (e >= '0' && e <= '7') {
            n = 3, base = 8, max = 255;
        } else if (e == 'x') {
            n = 2, base = 16, max = 255, first = i + 1;
        } else if (e == 'u') {
            n = 4, base = 16, max = 0x10ffff, first = i + 1;
        } else if (e == 'U') {
            n = 8, base = 16, max = 0x10ffff, first = i + 1;
        } else {
            fail(at, at + 2, std::string("unknown escape sequence '\\") + e + "'");
        }
        std::uint32_t x = 0;
        for (int k = 0; k < n; ++k) {
            const std::size_t j = first + static_cast<std::size_t>(k);
            if (j >= body.size()) fail(at, at + 2, "escape sequence not terminated");
            const int d = hex_value(body[j]);
            if (d >= base) fail(at, at + 2, "illegal character in escape sequence");
            x = x * static_cast<std::uint32_t>(base) + static_cast<std::uint32_t>(d);
        }
        i = first + static_cast<std::size_t>(n) - 1;
        if (x > max || (x >= 0xd800 && x < 0xe000)) {
            fail(at, at + 2, "escape sequence is an invalid Unicode code point");
        }
        if (max == 255) {
            out += static_cast<char>(x);  // octal and \x escapes are bytes
        } else {
            append_utf8(out, x);
        }
    }
    return out;
}

int precedence(Tok kind) {
    switch (kind) {
        case Tok::lor:
            return 1;
        case Tok::land:
        case Tok::lunless:
            return 2;
        case Tok::eql:
        case Tok::neq:
        case Tok::lss:
        case Tok::gtr:
        case Tok::lte:
        case Tok::gte:
            return 3;
        case Tok::add:
        case Tok::sub:
            return 4;
        case Tok::mul:
        case Tok::div:
        case Tok::mod:
        case Tok::atan2:
            return 5;
        case Tok::pow:
            return 6;
        default:
            return 0;
    }
}
constexpr int pow_precedence = 6;

BinaryOp binary_op(Tok kind) {
    switch (kind) {
        case Tok::add:
            return BinaryOp::add;
        case Tok::sub:
            return BinaryOp::sub;
        case Tok::mul:
            return BinaryOp::mul;
        case Tok::div:
            return BinaryOp::div;
        case Tok::mod:
            return BinaryOp::mod;
        case Tok::pow:
            return BinaryOp::pow;
        case Tok::atan2:
            return BinaryOp::atan2;
        case Tok::eql:
            return BinaryOp::eq;
        case Tok::neq:
            return BinaryOp::ne;
        case Tok::gtr:
            return BinaryOp::gt;
        case Tok::lss:
            return BinaryOp::lt;
        case Tok::gte:
            return BinaryOp::ge;
        case Tok::lte:
            return BinaryOp::le;
        case Tok::land:
            return BinaryOp::land;
        case Tok::lor:
            return BinaryOp::lor;
        default:
            return BinaryOp::lunless;
    }
}

std::string describe(const Token& t) {
    switch (t.kind) {
        case Tok::eof:
            return "end of input";
        case Tok::identifier:
        case Tok::metric_identifier:
            return "identifier \"" + std::string(t.text) + "\"";
        case Tok::number:
            return "number \"" + std::string(t.text) + "\"";
        case Tok::duration:
            return "duration \"" + std::string(t.text) + "\"";
        case Tok::string:
            return "string " + std::string(t.text);
        case Tok::aggregator:
            return "aggregation \"" + std::string(t.text) + "\"";
        default:
            if (is_keyword(t.kind)) return "keyword \"" + std::string(t.text) + "\"";
            return "\"" + std::string(t.text) + "\"";
    }
}

class Parser {
  public:
    Parser(std::string_view input, const ParseLimits& limits)
        : input_(input), limits_(limits), tokens_(Lexer(input).run()) {}

    ExprPtr run() {
        if (peek().kind == Tok::eof) fail(0, 0, "no expression found in input");
        ExprPtr expr = expression(0);
        if (peek().kind != Tok::eof) unexpected("");
        check(*expr);
        return expr;
    }

  private:
    const Token& peek(std::size_t ahead = 0) const {
        return tokens_[std::min(next_ + ahead, tokens_.size() - 1)];
    }
    const Token& take() {
        const Token& t = tokens_[next_];
        if (next_ + 1 < tokens_.size()) ++next_;
        return t;
    }
    std::size_t last_end() const {
        if (next_ == 0) return 0;
        const Token& t = tokens_[next_ - 1];
        return t.pos + t.text.size();
    }
    [[noreturn]] void unexpected(std::string_view context, std::string_view expected = "") {
        const Token& t = peek();
        std::string message = "unexpected " + describe(t);
        if (!context.empty()) message += " in " + std::string(context);
        if (!expected.empty()) message += ", expected " + std::string(expected);
        fail(t.pos, t.pos + t.text.size(), message);
    }
    const Token& expect(Tok kind, std::string_view context, std::string_view expected) {
        if (peek().kind != kind) unexpected(context, expected);
        return take();
    }

    // Depth of the recursion, bounded so that a hostile query cannot exhaust the stack.
    struct Depth {
        explicit Depth(Parser& p) : parser(p) {
            if (++parser.depth_ > parser.limits_.max_depth) {
                const Token& t = parser.peek();
                fail(t.pos, t.pos + t.text.size(),
                     "query nesting is deeper than " + std::to_string(parser.limits_.max_depth));
            }
        }
        ~Depth() { --parser.depth_; }
        Parser& parser;
    };

    ExprPtr node(auto value, std::size_t start) {
        auto e = std::make_unique<Expr>();
        e->node = std::move(value);
        e->position = Position{start, last_end()};
        return e;
    }

    ExprPtr expression(int min_precedence) {
        Depth depth(*this);
        const std::size_t start = peek().pos;
        ExprPtr lhs = unary();
        for (;;) {
            const Token& op = peek();
            const int prec = precedence(op.kind);
            if (prec == 0 || prec < min_precedence) return lhs;
            take();
            Binary binary;
            binary.op = binary_op(op.kind);
            if (peek().kind == Tok::bool_kw) {
                take();
                binary.return_bool = true;
            }
            VectorMatching matching;
            if (peek().kind == Tok::on || peek().kind == Tok::ignoring) {
                matching.on = take().kind == Tok::on;
                matching.labels = label_list("grouping opts");
                if (peek().kind == Tok::group_left || peek().kind == Tok::group_right) {
                    matching.card = take().kind == Tok::group_left
                                        ? VectorMatching::Card::many_to_one
                                        : VectorMatching::Card::one_to_many;
                    if (peek().kind == Tok::left_paren)
                        matching.include = label_list("grouping opts");
                }
            } else if (peek().kind == Tok::group_left || peek().kind == Tok::group_right) {
                unexpected("binary expression", "\"on\" or \"ignoring\" before it");
            }
            // Right-associative ^: its right operand may hold another ^.
            ExprPtr rhs = expression(op.kind == Tok::pow ? prec : prec + 1);
            binary.lhs = std::move(lhs);
            binary.rhs = std::move(rhs);
            binary.matching = std::move(matching);
            lhs = node(std::move(binary), start);
        }
    }

    ExprPtr unary() {
        Depth depth(*this);
        if (peek().kind == Tok::add || peek().kind == Tok::sub) {
            const Token& op = take();
            const std::size_t start = op.pos;
            // Like Prometheus: a unary operator binds like `*`, so `-a ^ b` is `-(a ^ b)`.
            ExprPtr operand = expression(pow_precedence);
            if (auto* number = operand->as<NumberLiteral>()) {
                if (op.kind == Tok::sub) number->value = -number->value;
                operand->position.start = start;
                return operand;
            }
            return node(Unary{op.kind == Tok::sub, std::move(operand)}, start);
        }
        return postfix();
    }

    ExprPtr postfix() {
        const std::size_t start = peek().pos;
        ExprPtr expr = primary();
        for (;;) {
            switch (peek().kind) {
                case Tok::left_bracket:
                    expr = range_or_subquery(std::move(expr), start);
                    break;
                case Tok::offset:
                    offset(*expr);
                    break;
                case Tok::at:
                    at(*expr);
                    break;
                default:
                    return expr;
            }
            expr->position.end = last_end();
        }
    }

    std::int64_t duration(std::string_view context) {
        const Token& t = peek();
        if (t.kind != Tok::duration) unexpected(context, "duration");
        take();
        auto ms = parse_duration(t.text);
        if (!ms)
            fail(t.pos, t.pos + t.text.size(),
                 "not a valid duration string: \"" + std::string(t.text) + "\"");
        return *ms;
    }

    ExprPtr range_or_subquery(ExprPtr expr, std::size_t start) {
        const std::size_t open = take().pos;
        const std::int64_t range = duration("subquery or range");
        if (peek().kind == Tok::right_bracket) {
            take();
            auto* selector = expr->as<VectorSelector>();
            if (!selector) fail(open, last_end(), "ranges only allowed for vector selectors");
            if (selector->offset_ms != 0)
                fail(open, last_end(), "no offset modifiers allowed before range");
            if (selector->at.is_set())
                fail(open, last_end(), "no @ modifiers allowed before range");
            return node(MatrixSelector{std::move(*selector), range}, start);
        }
        if (peek().kind != Tok::colon) unexpected("subquery or range", "\":\" or \"]\"");
        take();
        std::int64_t step = 0;
        if (peek().kind != Tok::right_bracket) step = duration("subquery selector");
        expect(Tok::right_bracket, "subquery selector", "\"]\"");
        Subquery subquery;
        subquery.expr = std::move(expr);
        subquery.range_ms = range;
        subquery.step_ms = step;
        return node(std::move(subquery), start);
    }

    void offset(Expr& expr) {
        const Token& kw = take();
        bool negative = false;
        if (peek().kind == Tok::sub) {
            take();
            negative = true;
        }
        std::int64_t value = duration("offset");
        if (negative) value = -value;
        std::int64_t* target = nullptr;
        if (auto* v = expr.as<VectorSelector>()) target = &v->offset_ms;
        if (auto* m = expr.as<MatrixSelector>()) target = &m->selector.offset_ms;
        if (auto* s = expr.as<Subquery>()) target = &s->offset_ms;
        if (!target) {
            fail(expr.position.start, last_end(),
                 "offset modifier must be preceded by an instant vector selector or range vector "
                 "selector or a subquery");
        }
        if (*target != 0) fail(kw.pos, last_end(), "offset may not be set multiple times");
        *target = value;
    }

    void at(Expr& expr) {
        const Token& kw = take();
        AtModifier modifier;
        if (peek().kind == Tok::start || peek().kind == Tok::end) {
            modifier.kind =
                take().kind == Tok::start ? AtModifier::Kind::start : AtModifier::Kind::end;
            expect(Tok::left_paren, "@", "\"(\"");
            expect(Tok::right_paren, "@", "\")\"");
        } else {
            bool negative = false;
            if (peek().kind == Tok::add || peek().kind == Tok::sub)
                negative = take().kind == Tok::sub;
            const Token& t = peek();
            if (t.kind != Tok::number) unexpected("@", "timestamp");
            take();
            auto value = parse_number(t.text);
            if (!value)
                fail(t.pos, last_end(), "error parsing number: \"" + std::string(t.text) + "\"");
            double seconds = negative ? -*value : *value;
            if (!std::isfinite(seconds) || seconds * 1000 >= 9.2e18 || seconds * 1000 <= -9.2e18) {
                fail(kw.pos, last_end(),
                     "timestamp out of bounds for @ modifier: " + std::string(t.text));
            }
            modifier.kind = AtModifier::Kind::timestamp;
            modifier.timestamp_ms = static_cast<std::int64_t>(std::round(seconds * 1000));
        }
        AtModifier* target = nullptr;
        if (auto* v = expr.as<VectorSelector>()) target = &v->at;
        if (auto* m = expr.as<MatrixSelector>()) target = &m->selector.at;
        if (auto* s = expr.as<Subquery>()) target = &s->at;
        if (!target) {
            fail(expr.position.start, last_end(),
                 "@ modifier must be preceded by an instant vector selector or range vector "
                 "selector or a subquery");
        }
        if (target->is_set())
            fail(kw.pos, last_end(), "@ <timestamp> may not be set multiple times");
        *target = modifier;
    }

    ExprPtr primary() {
        const Token& t = peek();
        const std::size_t start = t.pos;
        switch (t.kind) {
            case Tok::number: {
                take();
                auto value = parse_number(t.text);
                if (!value)
                    fail(t.pos, last_end(),
                         "error parsing number: \"" + std::string(t.text) + "\"");
                return node(NumberLiteral{*value}, start);
            }
            case Tok::string:
                take();
                return node(StringLiteral{unquote(t)}, start);
            case Tok::left_paren: {
                take();
                ExprPtr inner = expression(0);
                expect(Tok::right_paren, "parenthesized expression", "\")\"");
                return node(Paren{std::move(inner)}, start);
            }
            case Tok::left_brace:
                return selector("", start);
            case Tok::aggregator:
                if (peek(1).kind == Tok::left_paren || peek(1).kind == Tok::by ||
                    peek(1).kind == Tok::without) {
                    return aggregate();
                }
                take();
                return selector(t.text, start);
            case Tok::identifier:
                if (peek(1).kind == Tok::left_paren) return call();
                take();
                return selector(t.text, start);
            case Tok::metric_identifier:
            case Tok::by:
            case Tok::without:
            case Tok::land:
            case Tok::lor:
            case Tok::lunless:
            case Tok::offset:
            case Tok::start:
            case Tok::end:
                take();
                return selector(t.text, start);
            default:
                unexpected("");
        }
    }

    ExprPtr selector(std::string_view name, std::size_t start) {
        VectorSelector selector;
        selector.name = std::string(name);
        if (peek().kind == Tok::left_brace) {
            take();
            while (peek().kind != Tok::right_brace) {
                const Token& label = take();
                if (!(label.kind == Tok::identifier || is_keyword(label.kind) ||
                      label.kind == Tok::number) ||
                    !is_valid_label_name(label.text)) {
                    --next_;
                    unexpected("label matching", "label matching operator or \"}\"");
                }
                Matcher::Type type;
                switch (peek().kind) {
                    case Tok::assign:
                        type = Matcher::Type::equal;
                        break;
                    case Tok::neq:
                        type = Matcher::Type::not_equal;
                        break;
                    case Tok::eql_regex:
                        type = Matcher::Type::regex;
                        break;
                    case Tok::neq_regex:
                        type = Matcher::Type::not_regex;
                        break;
                    default:
                        unexpected("label matching", "label matching operator");
                }
                take();
                const Token& value = peek();
                if (value.kind != Tok::string) unexpected("label matching", "string");
                take();
                Matcher matcher(type, std::string(label.text), unquote(value));
                if (!matcher.error().empty()) fail(label.pos, last_end(), matcher.error());
                selector.matchers.push_back(std::move(matcher));
                if (peek().kind == Tok::comma) {
                    take();
                } else if (peek().kind != Tok::right_brace) {
                    unexpected("label matching", "\",\" or \"}\"");
                }
            }
            take();
        }
        if (!selector.name.empty()) {
            for (const auto& m : selector.matchers) {
                if (m.name() == metric_name_label) {
                    fail(start, last_end(),
                         "metric name must not be set twice: \"" + selector.name + "\" or \"" +
                             m.value() + "\"");
                }
            }
            selector.matchers.emplace_back(Matcher::Type::equal, std::string(metric_name_label),
                                           selector.name);
        } else {
            const bool selective = std::any_of(selector.matchers.begin(), selector.matchers.end(),
                                               [](const Matcher& m) { return !m.matches(""); });
            if (!selective) {
                fail(start, last_end(),
                     "vector selector must contain at least one non-empty matcher");
            }
        }
        return node(std::move(selector), start);
    }

    std::vector<std::string> label_list(std::string_view context) {
        expect(Tok::left_paren, context, "\"(\"");
        std::vector<std::string> labels;
        while (peek().kind != Tok::right_paren) {
            const Token& t = peek();
            if (!(t.kind == Tok::identifier || is_keyword(t.kind) || t.kind == Tok::number) ||
                !is_valid_label_name(t.text)) {
                unexpected(context, "label");
            }
            take();
            labels.emplace_back(t.text);
            if (peek().kind == Tok::comma) {
                take();
            } else if (peek().kind != Tok::right_paren) {
                unexpected(context, "\",\" or \")\"");
            }
        }
        take();
        return labels;
    }

    std::vector<ExprPtr> arguments(std::string_view context) {
        Depth depth(*this);
        expect(Tok::left_paren, context, "\"(\"");
        std::vector<ExprPtr> args;
        if (peek().kind == Tok::right_paren) {
            take();
            return args;
        }
        for (;;) {
            args.push_back(expression(0));
            if (peek().kind == Tok::comma) {
                take();
                if (peek().kind == Tok::right_paren) {
                    unexpected(context, "expression (trailing commas are not allowed)");
                }
                continue;
            }
            expect(Tok::right_paren, context, "\",\" or \")\"");
            return args;
        }
    }

    ExprPtr aggregate() {
        const Token& op = take();
        Aggregate aggregate;
        aggregate.op = op.aggregate;
        auto modifier = [&] {
            aggregate.without = take().kind == Tok::without;
            aggregate.grouping = label_list("grouping opts");
        };
        bool grouped = false;
        if (peek().kind == Tok::by || peek().kind == Tok::without) {
            modifier();
            grouped = true;
        }
        std::vector<ExprPtr> args = arguments("aggregation");
        if (!grouped && (peek().kind == Tok::by || peek().kind == Tok::without)) modifier();
        const bool with_param =
            aggregate.op == AggregateOp::topk || aggregate.op == AggregateOp::bottomk ||
            aggregate.op == AggregateOp::quantile || aggregate.op == AggregateOp::count_values;
        if (args.empty())
            fail(op.pos, last_end(), "no arguments for aggregate expression provided");
        const std::size_t wanted = with_param ? 2 : 1;
        if (args.size() != wanted) {
            fail(op.pos, last_end(),
                 "wrong number of arguments for aggregate expression provided, expected " +
                     std::to_string(wanted) + ", got " + std::to_string(args.size()));
        }
        if (with_param) aggregate.param = std::move(args[0]);
        aggregate.expr = std::move(args.back());
        return node(std::move(aggregate), op.pos);
    }

    ExprPtr call() {
        const Token& name = take();
        const FunctionInfo* function = find_function(name.text);
        if (!function) {
            fail(name.pos, name.pos + name.text.size(),
                 "unknown function with name \"" + std::string(name.text) + "\"");
        }
        return node(Call{function, arguments("function call")}, name.pos);
    }

    // Prometheus' checkAST: the types of operands and arguments.
    void expect_type(const Expr& e, ValueType want, std::string_view context) {
        check(e);
        if (e.type() != want) {
            fail(e.position.start, e.position.end,
                 "expected type " + std::string(documented(want)) + " in " + std::string(context) +
                     ", got " + std::string(documented(e.type())));
        }
    }
    static std::string_view documented(ValueType t) {
        switch (t) {
            case ValueType::vector:
                return "instant vector";
            case ValueType::matrix:
                return "range vector";
            default:
                return to_string(t);
        }
    }

    void check(const Expr& e) {
        Depth depth(*this);
        const Position p = e.position;
        if (const auto* a = e.as<Aggregate>()) {
            expect_type(*a->expr, ValueType::vector, "aggregation expression");
            if (a->op == AggregateOp::topk || a->op == AggregateOp::bottomk ||
                a->op == AggregateOp::quantile) {
                expect_type(*a->param, ValueType::scalar, "aggregation parameter");
            }
            if (a->op == AggregateOp::count_values) {
                expect_type(*a->param, ValueType::string, "aggregation parameter");
            }
        } else if (const auto* b = e.as<Binary>()) {
            check(*b->lhs);
            check(*b->rhs);
            const ValueType lt = b->lhs->type(), rt = b->rhs->type();
            if (b->return_bool && !is_comparison(b->op)) {
                fail(p.start, p.end, "bool modifier can only be used on comparison operators");
            }
            if (is_comparison(b->op) && !b->return_bool && lt == ValueType::scalar &&
                rt == ValueType::scalar) {
                fail(p.start, p.end, "comparisons between scalars must use BOOL modifier");
            }
            if (lt != ValueType::scalar && lt != ValueType::vector) {
                fail(b->lhs->position.start, b->lhs->position.end,
                     "binary expression must contain only scalar and instant vector types");
            }
            if (rt != ValueType::scalar && rt != ValueType::vector) {
                fail(b->rhs->position.start, b->rhs->position.end,
                     "binary expression must contain only scalar and instant vector types");
            }
            const auto& m = *b->matching;
            if (m.on) {
                for (const auto& l : m.labels) {
                    if (std::find(m.include.begin(), m.include.end(), l) != m.include.end()) {
                        fail(p.start, p.end,
                             "label \"" + l + "\" must not occur in ON and GROUP clause at once");
                    }
                }
            }
            if (lt != ValueType::vector || rt != ValueType::vector) {
                if (!m.labels.empty()) {
                    fail(p.start, p.end, "vector matching only allowed between instant vectors");
                }
                if (is_set_operator(b->op)) {
                    fail(p.start, p.end,
                         "set operator \"" + std::string(to_string(b->op)) +
                             "\" not allowed in binary scalar expression");
                }
            } else if (is_set_operator(b->op) && m.card != VectorMatching::Card::one_to_one) {
                fail(p.start, p.end,
                     "no grouping allowed for \"" + std::string(to_string(b->op)) + "\" operation");
            }
        } else if (const auto* c = e.as<Call>()) {
            const FunctionInfo& f = *c->function;
            const std::size_t nargs = f.arg_types.size();
            const std::string name(f.name);
            if (f.variadic == 0) {
                if (nargs != c->args.size()) {
                    fail(p.start, p.end,
                         "expected " + std::to_string(nargs) + " argument(s) in call to \"" + name +
                             "\", got " + std::to_string(c->args.size()));
                }
            } else {
                const std::size_t least = nargs - 1;
                if (least > c->args.size()) {
                    fail(p.start, p.end,
                         "expected at least " + std::to_string(least) +
                             " argument(s) in call to \"" + name + "\", got " +
                             std::to_string(c->args.size()));
                }
                if (f.variadic > 0 &&
                    least + static_cast<std::size_t>(f.variadic) < c->args.size()) {
                    fail(p.start, p.end,
                         "expected at most " + std::to_string(least + f.variadic) +
                             " argument(s) in call to \"" + name + "\", got " +
                             std::to_string(c->args.size()));
                }
            }
            for (std::size_t i = 0; i < c->args.size(); ++i) {
                const std::size_t k = std::min(i, nargs - 1);
                expect_type(*c->args[i], f.arg_types[k], "call to function \"" + name + "\"");
            }
        } else if (const auto* paren = e.as<Paren>()) {
            check(*paren->expr);
        } else if (const auto* u = e.as<Unary>()) {
            check(*u->expr);
            const ValueType t = u->expr->type();
            if (t != ValueType::scalar && t != ValueType::vector) {
                fail(p.start, p.end,
                     "unary expression only allowed on expressions of type scalar or instant "
                     "vector, got \"" +
                         std::string(documented(t)) + "\"");
            }
        } else if (const auto* s = e.as<Subquery>()) {
            check(*s->expr);
            if (s->expr->type() != ValueType::vector) {
                fail(p.start, p.end,
                     "subquery is only allowed on instant vector, got " +
                         std::string(documented(s->expr->type())) + " instead");
            }
        }
    }

    std::string_view input_;
    const ParseLimits& limits_;
    std::vector<Token> tokens_;
    std::size_t next_ = 0;
    std::size_t depth_ = 0;
};

std::string locate(std::string_view input, std::size_t pos) {
    std::size_t line = 1, column = 1;
    for (std::size_t i = 0; i < pos && i < input.size(); ++i) {
        if (input[i] == '\n') {
            ++line;
            column = 1;
        } else {
            ++column;
        }
    }
    return std::to_string(line) + ":" + std::to_string(column);
}

}  // namespace

ParseResult parse(std::string_view query, const ParseLimits& limits) {
    if (query.size() > limits.max_length) {
        return ParseError{"1:1: parse error: query is longer than " +
                              std::to_string(limits.max_length) + " bytes",
                          Position{0, 0}};
    }
    try {
        Parser parser(query, limits);
        return parser.run();
    } catch (const Failure& failure) {
        return ParseError{
            locate(query, failure.position.start) + ": parse error: " + failure.message,
            failure.position};
    }
}

std::optional<std::int64_t> parse_duration(std::string_view text) {
    if (text == "0") return 0;
    if (text.empty()) return std::nullopt;
    struct Unit {
        std::string_view name;
        std::int64_t ms;
    };
    static constexpr Unit units[] = {{"y", 365LL * 24 * 3600 * 1000},
                                     {"w", 7LL * 24 * 3600 * 1000},
                                     {"d", 24LL * 3600 * 1000},
                                     {"h", 3600LL * 1000},
                                     {"m", 60LL * 1000},
                                     {"s", 1000},
                                     {"ms", 1}};
    std::int64_t total = 0;
    std::size_t next_unit = 0;
    std::size_t i = 0;
    while (i < text.size()) {
        std::size_t j = i;
        while (j < text.size() && is_digit(text[j]))
            ++j;
        if (j == i) return std::nullopt;
        std::int64_t n = 0;
        auto [ptr, ec] = std::from_chars(text.data() + i, text.data() + j, n);
        if (ec != std::errc()) return std::nullopt;
        std::size_t k = j;
        while (k < text.size() && !is_digit(text[k]))
            ++k;
        const std::string_view unit = text.substr(j, k - j);
        bool found = false;
        for (; next_unit < std::size(units); ++next_unit) {
            if (units[next_unit].name == unit) {
                found = true;
                break;
            }
        }
        if (!found) return std::nullopt;
        const std::int64_t ms = units[next_unit].ms;
        if (n > std::numeric_limits<std::int64_t>::max() / ms) return std::nullopt;
        if (total > std::numeric_limits<std::int64_t>::max() - n * ms) return std::nullopt;
        total += n * ms;
        ++next_unit;
        i = k;
    }
    return total;
}

std::optional<double> parse_number(std::string_view text) {
    const std::string word = lower(text);
    if (word == "inf" || word == "+inf") return std::numeric_limits<double>::infinity();
    if (word == "-inf") return -std::numeric_limits<double>::infinity();
    if (word == "nan") return std::numeric_limits<double>::quiet_NaN();
    if (text.empty()) return std::nullopt;
    // Like Go's strconv.ParseInt(s, 0, 64) first: 0x hex and 0 octal integers.
    {
        std::string_view digits = text;
        bool negative = false;
        if (!digits.empty() && (digits[0] == '+' || digits[0] == '-')) {
            negative = digits[0] == '-';
            digits.remove_prefix(1);
        }
        int base = 10;
        if (digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
            base = 16;
            digits.remove_prefix(2);
        } else if (digits.size() > 1 && digits[0] == '0') {
            base = 8;
            digits.remove_prefix(1);
        }
        std::int64_t n = 0;
        auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n, base);
        if (ec == std::errc() && ptr == digits.data() + digits.size() && !digits.empty()) {
            return static_cast<double>(negative ? -n : n);
        }
        if (base == 16) return std::nullopt;
    }
    const std::string copy(text);
    char* end = nullptr;
    errno = 0;
    const double value = std::strtod(copy.c_str(), &end);
    if (end != copy.c_str() + copy.size()) return std::nullopt;
    // strtod accepts hex floats and "infinity"; Go's ParseFloat (decimal forms here) does too, but
    // the lexer never hands those over, so only the plain decimal forms reach this line.
    return value;
}

std::string_view to_string(ValueType type) {
    switch (type) {
        case ValueType::none:
            return "none";
        case ValueType::scalar:
            return "scalar";
        case ValueType::vector:
            return "vector";
        case ValueType::matrix:
            return "matrix";
        case ValueType::string:
            return "string";
    }
    return "none";
}

std::string_view to_string(BinaryOp op) {
    static constexpr std::string_view names[] = {"+",     "-",   "*",  "/",     "%", "^",
                                                 "atan2", "==",  "!=", ">",     "<", ">=",
                                                 "<=",    "and", "or", "unless"};
    return names[static_cast<int>(op)];
}

bool is_comparison(BinaryOp op) {
    return op >= BinaryOp::eq && op <= BinaryOp::le;
}
bool is_set_operator(BinaryOp op) {
    return op >= BinaryOp::land;
}

std::string_view to_string(AggregateOp op) {
    static constexpr std::string_view names[] = {"sum",  "avg",     "count",        "min",
                                                 "max",  "group",   "stddev",       "stdvar",
                                                 "topk", "bottomk", "count_values", "quantile"};
    return names[static_cast<int>(op)];
}

ValueType Expr::type() const {
    return std::visit(
        [](const auto& n) -> ValueType {
            using T = std::decay_t<decltype(n)>;
            if constexpr (std::is_same_v<T, NumberLiteral>) return ValueType::scalar;
            if constexpr (std::is_same_v<T, StringLiteral>) return ValueType::string;
            if constexpr (std::is_same_v<T, VectorSelector>) return ValueType::vector;
            if constexpr (std::is_same_v<T, MatrixSelector>) return ValueType::matrix;
            if constexpr (std::is_same_v<T, Subquery>) return ValueType::matrix;
            if constexpr (std::is_same_v<T, Paren>) return n.expr->type();
            if constexpr (std::is_same_v<T, Unary>) return n.expr->type();
            if constexpr (std::is_same_v<T, Binary>) {
                return n.lhs->type() == ValueType::scalar && n.rhs->type() == ValueType::scalar
                           ? ValueType::scalar
                           : ValueType::vector;
            }
            if constexpr (std::is_same_v<T, Aggregate>) return ValueType::vector;
            if constexpr (std::is_same_v<T, Call>) return n.function->return_type;
            return ValueType::none;
        },
        node);
}

const FunctionInfo* find_function(std::string_view name) {
    using V = ValueType;
    static const std::vector<FunctionInfo> functions = [] {
        std::vector<FunctionInfo> f;
        for (std::string_view n :
             {"abs",           "absent", "acos",  "acosh",    "asin",
              "asinh",         "atan",   "atanh", "ceil",     "cos",
              "cosh",          "deg",    "exp",   "floor",    "histogram_count",
              "histogram_sum", "ln",     "log10", "log2",     "rad",
              "sgn",           "sin",    "sinh",  "sort",     "sort_desc",
              "sqrt",          "tan",    "tanh",  "timestamp"}) {
            f.push_back({n, {V::vector}, 0, V::vector});
        }
        for (std::string_view n :
             {"absent_over_time", "avg_over_time", "changes", "count_over_time", "delta", "deriv",
              "idelta", "increase", "irate", "last_over_time", "max_over_time", "min_over_time",
              "present_over_time", "rate", "resets", "stddev_over_time", "stdvar_over_time",
              "sum_over_time"}) {
            f.push_back({n, {V::matrix}, 0, V::vector});
        }
        for (std::string_view n : {"days_in_month", "day_of_month", "day_of_week", "day_of_year",
                                   "hour", "minute", "month", "year"}) {
            f.push_back({n, {V::vector}, 1, V::vector});
        }
        f.push_back({"clamp", {V::vector, V::scalar, V::scalar}, 0, V::vector});
        f.push_back({"clamp_max", {V::vector, V::scalar}, 0, V::vector});
        f.push_back({"clamp_min", {V::vector, V::scalar}, 0, V::vector});
        f.push_back({"histogram_fraction", {V::scalar, V::scalar, V::vector}, 0, V::vector});
        f.push_back({"histogram_quantile", {V::scalar, V::vector}, 0, V::vector});
        f.push_back({"holt_winters", {V::matrix, V::scalar, V::scalar}, 0, V::vector});
        f.push_back({"label_replace",
                     {V::vector, V::string, V::string, V::string, V::string},
                     0,
                     V::vector});
        f.push_back({"label_join", {V::vector, V::string, V::string, V::string}, -1, V::vector});
        f.push_back({"pi", {}, 0, V::scalar});
        f.push_back({"predict_linear", {V::matrix, V::scalar}, 0, V::vector});
        f.push_back({"quantile_over_time", {V::scalar, V::matrix}, 0, V::vector});
        f.push_back({"round", {V::vector, V::scalar}, 1, V::vector});
        f.push_back({"scalar", {V::vector}, 0, V::scalar});
        f.push_back({"time", {}, 0, V::scalar});
        f.push_back({"vector", {V::scalar}, 0, V::vector});
        return f;
    }();
    for (const auto& f : functions) {
        if (f.name == name) return &f;
    }
    return nullptr;
}

}  // namespace citygate::promql
