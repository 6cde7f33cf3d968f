// Access control: password hashes, anonymous policy, certificate identities, ACL patterns and
// reload.
#include <catch2/catch.hpp>

#include <fstream>

#include "ingest/access_control.hpp"
#include "tests/support/temp_dir.hpp"

using namespace citygate::ingest;
using citygate::mqtt::reason_code;

namespace {

std::span<const std::uint8_t> bytes(std::string_view text) {
    return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

}  // namespace

TEST_CASE("passwords are checked against salted PBKDF2 hashes, never stored in plain text") {
    citygate::test::TempDir dir;
    std::string line = hash_password("s3cret", 2000);
    CHECK(line.find("s3cret") == std::string::npos);
    CHECK(line != hash_password("s3cret", 2000));  // a fresh salt every time
    std::ofstream(dir.path() / "credentials") << "# devices\nsensor-1:" << line << "\n";

    AccessControl access({AnonymousPolicy::never, dir.path() / "credentials", {}});
    Identity identity;
    CHECK(access.authenticate("sensor-1", bytes("s3cret"), {}, true, identity) ==
          reason_code::success);
    CHECK(identity.user == "sensor-1");
    CHECK_FALSE(identity.anonymous);
    // The cached fast path must not accept a different password.
    CHECK(access.authenticate("sensor-1", bytes("s3cret"), {}, true, identity) ==
          reason_code::success);
    CHECK(access.authenticate("sensor-1", bytes("wrong"), {}, true, identity) ==
          reason_code::bad_user_name_or_password);
    CHECK(access.authenticate("sensor-1", {}, {}, true, identity) ==
          reason_code::bad_user_name_or_password);
    CHECK(access.authenticate("nobody", bytes("s3cret"), {}, true, identity) ==
          reason_code::bad_user_name_or_password);
}

TEST_CASE("anonymous clients follow the policy: never, loopback only, always") {
    Identity identity;
    AccessControl never({AnonymousPolicy::never, {}, {}});
    CHECK(never.authenticate({}, {}, {}, true, identity) == reason_code::not_authorized);
    AccessControl loopback({AnonymousPolicy::loopback, {}, {}});
    CHECK(loopback.authenticate({}, {}, {}, true, identity) == reason_code::success);
    CHECK(identity.anonymous);
    CHECK(loopback.authenticate({}, {}, {}, false, identity) == reason_code::not_authorized);
    AccessControl always({AnonymousPolicy::always, {}, {}});
    CHECK(always.authenticate({}, {}, {}, false, identity) == reason_code::success);
}

TEST_CASE("a verified certificate's CN is the identity and a username may not claim another") {
    AccessControl access({AnonymousPolicy::never, {}, {}});
    Identity identity;
    CHECK(access.authenticate({}, {}, "air-000042", false, identity) == reason_code::success);
    CHECK(identity.user == "air-000042");
    CHECK(access.authenticate("air-000001", {}, "air-000042", false, identity) ==
          reason_code::not_authorized);
}

TEST_CASE("ACL rules with %u and %c confine a device to its own topics") {
    citygate::test::TempDir dir;
    std::ofstream(dir.path() / "acl.toml") << R"(
[[rule]]
user = "*"
publish = ["city/+/+/%u"]
[[rule]]
user = "ops"
publish = ["city/#"]
[[rule]]
user = "anonymous"
publish = ["lab/%c/#"]
)";
    AccessControl access({AnonymousPolicy::always, {}, dir.path() / "acl.toml"});
    Identity device{"air-1", false};
    CHECK(access.may_publish(device, "x", "city/pudong/air/air-1"));
    CHECK_FALSE(access.may_publish(device, "x", "city/pudong/air/air-2"));
    CHECK(access.may_publish({"ops", false}, "x", "city/pudong/air/air-2"));
    Identity anonymous;
    CHECK(access.may_publish(anonymous, "bench-7", "lab/bench-7/t"));
    CHECK_FALSE(access.may_publish(anonymous, "bench-7", "lab/bench-8/t"));
    CHECK_FALSE(access.may_publish(anonymous, "bench-7", "city/pudong/air/air-1"));
    // A user name with wildcards does not widen %u.
    CHECK_FALSE(access.may_publish({"#", false}, "x", "city/pudong/air/anything"));
}

TEST_CASE("reload swaps in new files, and a bad file keeps the old state") {
    citygate::test::TempDir dir;
    auto credentials = dir.path() / "credentials";
    std::ofstream(credentials) << "a:" << hash_password("one", 1000) << "\n";
    AccessControl access({AnonymousPolicy::never, credentials, {}});
    Identity identity;
    REQUIRE(access.authenticate("a", bytes("one"), {}, false, identity) == reason_code::success);

    std::ofstream(credentials) << "a:" << hash_password("two", 1000) << "\n";
    REQUIRE_FALSE(access.reload());
    CHECK(access.authenticate("a", bytes("one"), {}, false, identity) ==
          reason_code::bad_user_name_or_password);
    CHECK(access.authenticate("a", bytes("two"), {}, false, identity) == reason_code::success);

    std::ofstream(credentials) << "a:plaintext-password\n";
    auto error = access.reload();
    REQUIRE(error);
    CHECK_THAT(*error, Catch::Contains("credentials:1"));
    CHECK(access.authenticate("a", bytes("two"), {}, false, identity) == reason_code::success);
}

TEST_CASE("a missing or malformed file is a start-up error naming it") {
    citygate::test::TempDir dir;
    CHECK_THROWS_WITH(AccessControl({AnonymousPolicy::never, dir.path() / "nope", {}}),
                      Catch::Contains("nope"));
    std::ofstream(dir.path() / "acl.toml") << "[[rule]]\nuser = \"x\"\n";
    CHECK_THROWS_WITH(AccessControl({AnonymousPolicy::never, {}, dir.path() / "acl.toml"}),
                      Catch::Contains("publish"));
}
