// --bind lists and ranges of source addresses.
#include <catch2/catch.hpp>

#include "loadgen/source_addresses.hpp"

using citygate::loadgen::parse_source_addresses;

TEST_CASE("a source address range is inclusive and in order") {
    std::string error;
    auto list = parse_source_addresses("127.0.0.1-127.0.0.16", error);
    REQUIRE(list.size() == 16);
    CHECK(list.front().to_string() == "127.0.0.1");
    CHECK(list.back().to_string() == "127.0.0.16");
}

TEST_CASE("a source address list mixes single addresses and ranges, across octets") {
    std::string error;
    auto list = parse_source_addresses("127.0.0.5,127.0.0.254-127.0.1.1", error);
    REQUIRE(list.size() == 5);
    CHECK(list[0].to_string() == "127.0.0.5");
    CHECK(list[1].to_string() == "127.0.0.254");
    CHECK(list[4].to_string() == "127.0.1.1");
}

TEST_CASE("bad source address specs are refused with a reason") {
    for (const char* spec : {"", "127.0.0.9-127.0.0.1", "localhost", "127.0.0.1,,127.0.0.2",
                             "127.0.0.0-127.1.0.1", "::1-::2"}) {
        std::string error;
        INFO(spec);
        CHECK(parse_source_addresses(spec, error).empty());
        CHECK_FALSE(error.empty());
    }
}
