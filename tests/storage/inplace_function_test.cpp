// InplaceFunction: where it keeps a callable, and that every callable is destroyed exactly once
// however it is moved.
#include <catch2/catch.hpp>

#include <array>
#include <memory>

#include "storage/inplace_function.hpp"

using citygate::storage::InplaceFunction;

namespace {

using Small = InplaceFunction<int(int), 24>;

// Counts its live copies in `alive`; `payload` sets its size.
template <std::size_t N>
struct Counted {
    std::shared_ptr<int> alive;
    std::array<char, N> payload{};
    explicit Counted(std::shared_ptr<int> a) : alive(std::move(a)) { ++*alive; }
    Counted(Counted&& other) noexcept : alive(other.alive), payload(other.payload) { ++*alive; }
    Counted(const Counted&) = delete;
    ~Counted() { --*alive; }
    int operator()(int x) const { return x + static_cast<int>(N); }
};

}  // namespace

TEST_CASE("an inplace function keeps small callables inline and large ones on the heap") {
    STATIC_REQUIRE(Small::stores_inline<Counted<8>>);         // 16 + 8 bytes
    STATIC_REQUIRE_FALSE(Small::stores_inline<Counted<16>>);  // 32 bytes
    int base = 40;
    Small by_reference = [&base](int x) { return base + x; };
    CHECK(by_reference(2) == 42);
    base = 1;
    CHECK(by_reference(2) == 3);  // holds the capture, not a copy of `base`

    Small empty;
    CHECK_FALSE(empty);
    Small null = nullptr;
    CHECK_FALSE(null);
}

TEST_CASE("an inplace function destroys its callable exactly once across moves") {
    auto alive = std::make_shared<int>(0);
    SECTION("inline") {
        {
            Small f = Counted<8>(alive);
            CHECK(*alive == 1);
            Small g = std::move(f);
            CHECK_FALSE(f);  // NOLINT: a moved-from one is empty
            CHECK(*alive == 1);
            CHECK(g(1) == 9);
            Small h;
            h = std::move(g);
            CHECK(h(1) == 9);
            h = nullptr;
            CHECK(*alive == 0);
            h = Counted<8>(alive);
        }
        CHECK(*alive == 0);
    }
    SECTION("on the heap") {
        {
            Small f = Counted<16>(alive);
            CHECK(*alive == 1);
            Small g = std::move(f);
            CHECK(*alive == 1);  // the pointer moved, not the callable
            CHECK(g(1) == 17);
            g = Counted<8>(alive);  // replacing frees the old one
            CHECK(*alive == 1);
        }
        CHECK(*alive == 0);
    }
}

TEST_CASE("an inplace function calls a mutable callable as it is, changes kept") {
    InplaceFunction<int(), 16> counter = [n = 0]() mutable { return ++n; };
    CHECK(counter() == 1);
    CHECK(counter() == 2);
    auto moved = std::move(counter);
    CHECK(moved() == 3);
}
