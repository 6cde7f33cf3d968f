// Randomised round trips: packets of every type with random fields and every property their
// context allows, encoded, parsed and encoded again to the same bytes (fixed seed, reproducible).
#include <catch2/catch.hpp>

#include <deque>
#include <random>

#include "protocols/mqtt/properties.hpp"
#include "tests/protocols/mqtt_test_support.hpp"

using namespace citygate::mqtt;
using namespace citygate::mqtt::test;

namespace {

class generator {
  public:
    explicit generator(std::uint32_t seed) : rng_(seed) {}

    bool coin() { return pick(0, 1) == 1; }
    std::uint32_t pick(std::uint32_t lo, std::uint32_t hi) {
        return std::uniform_int_distribution<std::uint32_t>(lo, hi)(rng_);
    }

    // A UTF-8 string without wildcards, with some multi-byte characters.
    std::string_view text(std::size_t min_length = 0, std::size_t max_length = 12) {
        static const char* pieces[] = {
            "a", "b", "/", "z", "0", "-", "\xc3\xa9", "\xe4\xb8\x8a", "\xf0\x9f\x98\x80", "$"};
        std::string s;
        const std::size_t n =
            pick(static_cast<std::uint32_t>(min_length), static_cast<std::uint32_t>(max_length));
        for (std::size_t i = 0; i < n; ++i)
            s += pieces[pick(0, 9)];
        return keep(std::move(s));
    }
    std::string_view topic() { return text(1); }
    std::string_view filter() {
        static const char* filters[] = {"#", "+", "a/+/b", "a/#", "+/x", "city/+/air/#"};
        return coin() ? topic() : std::string_view(filters[pick(0, 5)]);
    }
    bytes_view blob(std::size_t max_length = 40) {
        std::string s;
        const std::size_t n = pick(0, static_cast<std::uint32_t>(max_length));
        for (std::size_t i = 0; i < n; ++i)
            s += static_cast<char>(pick(0, 255));
        const std::string_view v = keep(std::move(s));
        return bytes_view(reinterpret_cast<const std::uint8_t*>(v.data()), v.size());
    }
    qos any_qos() { return static_cast<qos>(pick(0, 2)); }
    std::uint16_t id() { return static_cast<std::uint16_t>(pick(1, 0xFFFF)); }

    properties props(property_context where) {
        properties p;
        auto maybe = [&](property_id id) {
            return property_allowed(static_cast<std::uint8_t>(id), where) && pick(0, 2) == 0;
        };
        auto bit = [&] { return static_cast<std::uint8_t>(pick(0, 1)); };
        using id = property_id;
        if (maybe(id::payload_format_indicator)) p.payload_format_indicator = bit();
        if (maybe(id::message_expiry_interval)) p.message_expiry_interval = pick(0, 0xFFFFFFFF);
        if (maybe(id::content_type)) p.content_type = text();
        if (maybe(id::response_topic)) p.response_topic = topic();
        if (maybe(id::correlation_data)) p.correlation_data = blob();
        if (maybe(id::subscription_identifier)) {
            const std::uint32_t n = where == property_context::publish ? pick(1, 3) : 1;
            for (std::uint32_t i = 0; i < n; ++i) {
                p.subscription_identifiers.push_back(pick(1, 268'435'455));
            }
        }
        if (maybe(id::session_expiry_interval)) p.session_expiry_interval = pick(0, 0xFFFFFFFF);
        if (maybe(id::assigned_client_identifier)) p.assigned_client_identifier = text();
        if (maybe(id::server_keep_alive))
            p.server_keep_alive = static_cast<std::uint16_t>(pick(0, 0xFFFF));
        if (maybe(id::authentication_method)) p.authentication_method = text();
        if (maybe(id::authentication_data)) p.authentication_data = blob();
        if (maybe(id::request_problem_information)) p.request_problem_information = bit();
        if (maybe(id::will_delay_interval)) p.will_delay_interval = pick(0, 0xFFFFFFFF);
        if (maybe(id::request_response_information)) p.request_response_information = bit();
        if (maybe(id::response_information)) p.response_information = text();
        if (maybe(id::server_reference)) p.server_reference = text();
        if (maybe(id::reason_string)) p.reason_string = text();
        if (maybe(id::receive_maximum))
            p.receive_maximum = static_cast<std::uint16_t>(pick(1, 0xFFFF));
        if (maybe(id::topic_alias_maximum))
            p.topic_alias_maximum = static_cast<std::uint16_t>(pick(0, 0xFFFF));
        if (maybe(id::topic_alias)) p.topic_alias = static_cast<std::uint16_t>(pick(1, 0xFFFF));
        if (maybe(id::maximum_qos)) p.maximum_qos = bit();
        if (maybe(id::retain_available)) p.retain_available = bit();
        if (maybe(id::user_property)) {
            for (std::uint32_t i = pick(1, 3); i > 0; --i)
                p.user_properties.push_back({text(), text()});
        }
        if (maybe(id::maximum_packet_size)) p.maximum_packet_size = pick(1, 0xFFFFFFFF);
        if (maybe(id::wildcard_subscription_available)) p.wildcard_subscription_available = bit();
        if (maybe(id::subscription_identifier_available))
            p.subscription_identifier_available = bit();
        if (maybe(id::shared_subscription_available)) p.shared_subscription_available = bit();
        return p;
    }

    reason_code reason(packet_type type) {
        for (;;) {
            const auto code = static_cast<std::uint8_t>(pick(0, 0xA2));
            if (valid_reason(type, code)) return static_cast<reason_code>(code);
        }
    }

  private:
    std::string_view keep(std::string s) { return pool_.emplace_back(std::move(s)); }
    std::mt19937 rng_;
    std::deque<std::string> pool_;
};

packet random_packet(generator& g, packet_type type, protocol_version v) {
    const bool v5 = v == protocol_version::v5;
    auto props = [&](property_context c) { return v5 ? g.props(c) : properties{}; };
    switch (type) {
        case packet_type::connect: {
            connect_packet c;
            c.version = v;
            c.clean_start = g.coin();
            c.keep_alive_s = static_cast<std::uint16_t>(g.pick(0, 0xFFFF));
            c.client_id = g.text();
            c.props = props(property_context::connect);
            if (g.coin()) {
                c.will = will_message{g.topic(), g.blob(), g.any_qos(), g.coin(),
                                      props(property_context::will)};
            }
            if (g.coin()) c.username = g.text();
            if (g.coin() && (v5 || c.username)) c.password = g.blob();
            return c;
        }
        case packet_type::connack: {
            connack_packet a;
            a.session_present = g.coin();
            a.reason = v5 ? g.reason(type) : static_cast<reason_code>(0);
            if (!v5) {
                static const reason_code v3_codes[] = {reason_code::success,
                                                       reason_code::unsupported_protocol_version,
                                                       reason_code::client_identifier_not_valid,
                                                       reason_code::server_unavailable,
                                                       reason_code::bad_user_name_or_password,
                                                       reason_code::not_authorized};
                a.reason = v3_codes[g.pick(0, 5)];
            }
            a.props = props(property_context::connack);
            return a;
        }
        case packet_type::publish: {
            publish_packet p;
            p.qos = g.any_qos();
            p.dup = p.qos != qos::at_most_once && g.coin();
            p.retain = g.coin();
            p.topic = g.topic();
            if (p.qos != qos::at_most_once) p.packet_id = g.id();
            p.props = props(property_context::publish);
            p.payload = g.blob(200);
            return p;
        }
        case packet_type::puback:
        case packet_type::pubrec:
        case packet_type::pubrel:
        case packet_type::pubcomp: {
            auto fill = [&](auto a) -> packet {
                a.packet_id = g.id();
                if (v5) {
                    a.reason = g.reason(type);
                    a.props = g.props(context_of(type));
                }
                return a;
            };
            if (type == packet_type::puback) return fill(puback_packet{});
            if (type == packet_type::pubrec) return fill(pubrec_packet{});
            if (type == packet_type::pubrel) return fill(pubrel_packet{});
            return fill(pubcomp_packet{});
        }
        case packet_type::subscribe: {
            subscribe_packet s;
            s.packet_id = g.id();
            s.props = props(property_context::subscribe);
            for (std::uint32_t i = g.pick(1, 4); i > 0; --i) {
                subscription e;
                e.filter = g.filter();
                e.max_qos = g.any_qos();
                if (v5) {
                    e.no_local = g.coin();
                    e.retain_as_published = g.coin();
                    e.retain_handling = static_cast<std::uint8_t>(g.pick(0, 2));
                }
                s.entries.push_back(e);
            }
            return s;
        }
        case packet_type::suback: {
            suback_packet a;
            a.packet_id = g.id();
            a.props = props(property_context::suback);
            for (std::uint32_t i = g.pick(1, 4); i > 0; --i) {
                a.reasons.push_back(v5 ? g.reason(type)
                                       : static_cast<reason_code>(g.coin() ? g.pick(0, 2) : 0x80));
            }
            return a;
        }
        case packet_type::unsubscribe: {
            unsubscribe_packet u;
            u.packet_id = g.id();
            u.props = props(property_context::unsubscribe);
            for (std::uint32_t i = g.pick(1, 4); i > 0; --i)
                u.filters.push_back(g.filter());
            return u;
        }
        case packet_type::unsuback: {
            unsuback_packet a;
            a.packet_id = g.id();
            if (v5) {
                a.props = g.props(property_context::unsuback);
                for (std::uint32_t i = g.pick(1, 4); i > 0; --i)
                    a.reasons.push_back(g.reason(type));
            }
            return a;
        }
        case packet_type::pingreq:
            return pingreq_packet{};
        case packet_type::pingresp:
            return pingresp_packet{};
        case packet_type::disconnect: {
            disconnect_packet d;
            if (v5) {
                d.reason = g.reason(type);
                d.props = g.props(property_context::disconnect);
            }
            return d;
        }
        case packet_type::auth: {
            auth_packet a;
            a.reason = g.reason(type);
            a.props = g.props(property_context::auth);
            return a;
        }
    }
    return pingreq_packet{};
}

}  // namespace

TEST_CASE("random packets of every type round-trip in both versions", "[mqtt][codec][round-trip]") {
    generator g(20261122);
    for (auto v : {protocol_version::v3_1_1, protocol_version::v5}) {
        for (int t = 1; t <= 15; ++t) {
            const auto type = static_cast<packet_type>(t);
            if (type == packet_type::auth && v != protocol_version::v5) continue;
            for (int i = 0; i < 300; ++i) {
                const packet p = random_packet(g, type, v);
                encoded_packet first;
                REQUIRE(!encode(p, v, first));
                const bytes wire = first.to_vector();
                packet parsed;
                parser_limits limits;
                limits.maximum_user_properties = 64;
                const auto r = parse(wire, v, limits, parsed);
                INFO("type " << t << " version " << static_cast<int>(v) << ": " << to_hex(wire));
                REQUIRE(r.status == parse_status::complete);
                REQUIRE(r.consumed == wire.size());
                REQUIRE(type_of(parsed) == type);
                encoded_packet second;
                REQUIRE(!encode(parsed, v, second));
                REQUIRE(to_hex(second.to_vector()) == to_hex(wire));
            }
        }
    }
}

TEST_CASE("the PUBLISH payload is referenced, not copied", "[mqtt][codec][round-trip]") {
    const bytes payload(1000, 0x42);
    publish_packet p;
    p.topic = "t";
    p.payload = payload;
    encoded_packet e;
    REQUIRE(!encode(p, protocol_version::v3_1_1, e));
    const auto buffers = e.buffers();
    CHECK(buffers[1].data() == payload.data());
    CHECK(buffers[1].size() == payload.size());
    CHECK(to_hex(bytes(buffers[0].begin(), buffers[0].end())) == "30 eb 07 00 01 74");
    CHECK(e.size() == 1006);
}

TEST_CASE("encoders refuse what cannot be sent", "[mqtt][codec]") {
    encoded_packet e;
    publish_packet p;
    p.qos = qos::at_least_once;  // packet id 0
    p.topic = "t";
    CHECK(encode(p, protocol_version::v3_1_1, e) == errc::invalid_packet_id);
    const std::string long_topic(70000, 'a');
    p.packet_id = 1;
    p.topic = long_topic;
    CHECK(encode(p, protocol_version::v3_1_1, e) == errc::field_too_long);
    CHECK(encode(auth_packet{}, protocol_version::v3_1_1, e) == errc::invalid_packet_type);
    disconnect_packet d;
    d.reason = reason_code::continue_authentication;
    CHECK(encode(d, protocol_version::v5, e) == errc::invalid_reason_code);
    CHECK(encode(subscribe_packet{}, protocol_version::v5, e) == errc::invalid_packet_id);
}
