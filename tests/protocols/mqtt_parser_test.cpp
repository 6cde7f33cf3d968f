// The incremental parser's contract: need-more on every prefix, limits checked from the fixed
// header alone, no allocation for a rejected packet, reuse of a packet object, error category.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <new>

#include "protocols/mqtt/error.hpp"
#include "protocols/mqtt/validation.hpp"
#include "tests/protocols/mqtt_test_support.hpp"

// Counts allocations of this test binary so the tests can assert there were none.
namespace {
std::atomic<std::size_t> allocations{0};
}

void* operator new(std::size_t n) {
    allocations.fetch_add(1, std::memory_order_relaxed);
    if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
    std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    std::free(p);
}

using namespace citygate::mqtt;
using namespace citygate::mqtt::test;

namespace {
constexpr auto v3 = protocol_version::v3_1_1;
constexpr auto v5 = protocol_version::v5;
}  // namespace

TEST_CASE("every strict prefix of a packet is need_more", "[mqtt][parser]") {
    subscribe_packet s;
    s.packet_id = 3;
    s.props.user_properties = {{"k", "v"}};
    s.entries.push_back({"a/+", qos::at_least_once, false, false, 0});
    const bytes whole = encode_bytes(s, v5);
    packet p;
    for (std::size_t n = 0; n < whole.size(); ++n) {
        const auto r = parse(bytes_view(whole.data(), n), v5, {}, p);
        CHECK(r.status == parse_status::need_more);
        CHECK(r.consumed == 0);
        CHECK(r.needed == (n >= 2 ? whole.size() : 0));  // known once the length byte is in
    }
    const auto r = parse(whole, v5, {}, p);
    CHECK(r.status == parse_status::complete);
    CHECK(r.consumed == whole.size());
}

TEST_CASE("parse consumes exactly one packet of several", "[mqtt][parser]") {
    const bytes two = hex("c0 00 e0 00");
    packet p;
    auto r = parse(two, v3, {}, p);
    REQUIRE(r.status == parse_status::complete);
    CHECK(r.consumed == 2);
    CHECK(type_of(p) == packet_type::pingreq);
    r = parse(bytes_view(two).subspan(2), v3, {}, p);
    CHECK(type_of(p) == packet_type::disconnect);
}

TEST_CASE("maximum packet size is enforced from the fixed header alone", "[mqtt][parser]") {
    parser_limits limits;
    limits.maximum_packet_size = 100;
    packet p;
    // 2-byte header + 98 = 100: allowed, and reported as needed while incomplete.
    auto r = parse(hex("30 62 00"), v3, limits, p);
    CHECK(r.status == parse_status::need_more);
    CHECK(r.needed == 100);
    // 2-byte header + 99 = 101: refused with three bytes in hand.
    r = parse(hex("30 63 00"), v3, limits, p);
    CHECK(r.status == parse_status::error);
    CHECK(r.error == errc::packet_too_large);
    // A length claiming 256 MB is refused before any of it arrives.
    r = parse(hex("30 ff ff ff 7f"), v3, limits, p);
    CHECK(r.error == errc::packet_too_large);
}

TEST_CASE("topic length, user property and topic filter limits", "[mqtt][parser]") {
    parser_limits limits;
    limits.maximum_topic_length = 3;
    limits.maximum_user_properties = 1;
    limits.maximum_topic_filters = 1;
    CHECK(parse_error(hex("30 05 00 03 61 2f 62"), v3, limits) == errc{});
    CHECK(parse_error(hex("30 06 00 04 61 2f 62 63"), v3, limits) == errc::invalid_topic_name);
    CHECK(parse_error(hex("30 0c 00 01 74 07 26 00 01 6b 00 01 76"), v5, limits) == errc{});
    CHECK(parse_error(hex("30 12 00 01 74 0e 26 00 01 6b 00 01 76 26 00 01 6b 00 01 76"), v5,
                      limits) == errc::too_many_properties);
    CHECK(parse_error(hex("82 0a 00 01 00 01 61 00 00 01 62 00"), v3, limits) ==
          errc::too_many_topic_filters);
}

TEST_CASE("a rejected packet allocates nothing, a valid one only for its lists", "[mqtt][parser]") {
    packet p;
    // SUBSCRIBE: two good filters, then one with a misplaced '#'.
    const bytes bad = hex("82 12 00 01 00 01 61 00 00 01 62 00 00 05 61 2f 23 2f 62 00");
    const bytes good = hex("82 0a 00 01 00 01 61 00 00 01 62 00");
    // A user property list followed by an invalid payload format indicator.
    const bytes bad_props = hex("30 0d 00 01 74 09 26 00 01 6b 00 01 76 01 05");
    // Catch's assertions allocate: take the results first, check them afterwards.
    std::size_t before = allocations.load();
    const auto bad_status = parse(bad, v3, {}, p).status;
    const auto bad_props_status = parse(bad_props, v5, {}, p).status;
    std::size_t after = allocations.load();
    CHECK(bad_status == parse_status::error);
    CHECK(bad_props_status == parse_status::error);
    CHECK(after == before);

    REQUIRE(parse(good, v3, {}, p).status == parse_status::complete);
    CHECK(std::get<subscribe_packet>(p).entries.size() == 2);
    // Parsing into the same object again reuses the vector's capacity.
    before = allocations.load();
    const auto again = parse(good, v3, {}, p).status;
    after = allocations.load();
    CHECK(again == parse_status::complete);
    CHECK(std::get<subscribe_packet>(p).entries.size() == 2);
    CHECK(after == before);
}

TEST_CASE("a PUBLISH parse allocates nothing", "[mqtt][parser]") {
    const bytes publish = hex("32 09 00 03 61 2f 62 00 01 68 69");
    packet p;
    REQUIRE(parse(publish, v3, {}, p).status == parse_status::complete);
    const std::size_t before = allocations.load();
    for (int i = 0; i < 100; ++i)
        REQUIRE(parse(publish, v3, {}, p).status == parse_status::complete);
    CHECK(allocations.load() == before);
}

TEST_CASE("a reused packet object does not keep properties of the previous packet",
          "[mqtt][parser]") {
    packet p;
    REQUIRE(parse(hex("30 0a 00 01 74 05 02 00 00 00 3c 78"), v5, {}, p).status ==
            parse_status::complete);
    CHECK(std::get<publish_packet>(p).props.message_expiry_interval == 60u);
    REQUIRE(parse(hex("30 05 00 01 74 00 78"), v5, {}, p).status == parse_status::complete);
    CHECK(!std::get<publish_packet>(p).props.message_expiry_interval);
}

TEST_CASE("CONNECT reports its version even when a later field fails", "[mqtt][parser]") {
    packet p;
    const auto r = parse(hex("10 0d 00 04 4d 51 54 54 05 02 00 3c 00 00 02 61"), v3, {}, p);
    CHECK(r.status == parse_status::error);
    CHECK(r.error == errc::truncated);
    CHECK(r.connect_version == v5);
}

TEST_CASE("errors form a boost::system category with reason codes", "[mqtt][parser]") {
    const boost::system::error_code ec = errc::packet_too_large;
    CHECK(ec.category().name() == std::string("mqtt"));
    CHECK(ec.message() == "packet too large");
    CHECK(to_reason_code(errc::packet_too_large) == reason_code::packet_too_large);
    CHECK(to_reason_code(errc::duplicate_property) == reason_code::protocol_error);
    CHECK(to_reason_code(errc::malformed_utf8) == reason_code::malformed_packet);
    CHECK(to_reason_code(errc::topic_alias_invalid) == reason_code::topic_alias_invalid);
}

TEST_CASE("UTF-8 validation follows RFC 3629 and MQTT 1.5.4", "[mqtt][parser]") {
    auto s = [](const bytes& b) { return std::string(b.begin(), b.end()); };
    CHECK(valid_utf8(""));
    CHECK(valid_utf8("city/pudong/air/a-000123"));
    CHECK(valid_utf8(s(hex("c3 a9"))));              // é
    CHECK(valid_utf8(s(hex("e4 b8 8a e6 b5 b7"))));  // 上海
    CHECK(valid_utf8(s(hex("f0 9f 98 80"))));        // U+1F600
    CHECK(valid_utf8(s(hex("f4 8f bf bf"))));        // U+10FFFF
    CHECK(valid_utf8(s(hex("ef bf bf"))));           // U+FFFF, a non-character, is allowed
    CHECK_FALSE(valid_utf8(s(hex("00"))));           // U+0000
    CHECK_FALSE(valid_utf8(s(hex("61 62 63 64 65 66 67 00 68"))));  // U+0000 in a fast block
    CHECK_FALSE(valid_utf8(s(hex("c0 80"))));                       // overlong U+0000
    CHECK_FALSE(valid_utf8(s(hex("e0 80 af"))));                    // overlong '/'
    CHECK_FALSE(valid_utf8(s(hex("ed a0 80"))));                    // U+D800 surrogate
    CHECK_FALSE(valid_utf8(s(hex("ed bf bf"))));                    // U+DFFF surrogate
    CHECK_FALSE(valid_utf8(s(hex("f4 90 80 80"))));                 // above U+10FFFF
    CHECK_FALSE(valid_utf8(s(hex("80"))));                          // lone continuation
    CHECK_FALSE(valid_utf8(s(hex("e4 b8"))));                       // truncated
    CHECK_FALSE(valid_utf8(s(hex("c3 28"))));                       // bad continuation
    CHECK_FALSE(valid_utf8(s(hex("ff"))));
}

TEST_CASE("topic names and filters", "[mqtt][parser]") {
    CHECK(valid_topic_name("a/b"));
    CHECK(valid_topic_name("/"));
    CHECK(valid_topic_name("$SYS/x"));
    CHECK_FALSE(valid_topic_name(""));
    CHECK_FALSE(valid_topic_name("a/+"));
    CHECK_FALSE(valid_topic_name("#"));
    for (const char* f : {"#", "+", "a/#", "+/+", "a/+/b", "/+", "+/", "a//b", "$share/g/a/#"}) {
        INFO(f);
        CHECK(valid_topic_filter(f));
    }
    for (const char* f : {"", "a#", "a/#/b", "a+", "+a", "a/b+", "##", "$share/g", "$share//a",
                          "$share/g+/a", "$share/g/"}) {
        INFO(f);
        CHECK_FALSE(valid_topic_filter(f));
    }
    CHECK(valid_topic_filter("$share/g", false));  // 3.1.1: an ordinary filter
}
