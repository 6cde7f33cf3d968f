// Access control: password hashes, anonymous policy, certificate identities, ACL patterns and
// reload.
#include <catch2/catch.hpp>

#include <fstream>
#include <future>

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

namespace {

AuthRequest request(std::string user, std::string password, std::string source = "10.0.0.1") {
    AuthRequest r;
    r.username = std::move(user);
    r.password = std::move(password);
    r.source = std::move(source);
    return r;
}

// Runs an asynchronous authentication to its end: the inline answer, or the pool's.
struct Outcome {
    AuthResult result;
    bool inline_answer = false;
};
Outcome decide(AccessControl& access, AuthRequest r) {
    auto promise = std::make_shared<std::promise<AuthResult>>();
    auto future = promise->get_future();
    auto answer = access.authenticate(std::move(r),
                                      [promise](AuthResult result) { promise->set_value(result); });
    if (answer) return {*answer, true};
    REQUIRE(future.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
    return {future.get(), false};
}

const std::string device_secret = "k3J9x0Qm2ZpLw8Rt5VbN";  // 20 random characters

}  // namespace

TEST_CASE("device secrets use salted HMAC-SHA256: one hash per check, refused when too short") {
    std::string line = hash_device_secret(device_secret);
    CHECK(line.starts_with("hmac-sha256$"));
    CHECK(line.find(device_secret) == std::string::npos);
    CHECK(line != hash_device_secret(device_secret));  // a fresh salt every time
    auto parsed = PasswordHash::parse(line);
    REQUIRE(parsed);
    CHECK(parsed->scheme == HashScheme::hmac_sha256);
    CHECK(parsed->verify(device_secret));
    CHECK_FALSE(parsed->verify(device_secret + "x"));
    CHECK_FALSE(parsed->verify(""));
    CHECK_THROWS_AS(hash_device_secret("short-secret"), std::invalid_argument);
    CHECK_FALSE(PasswordHash::parse("hmac-sha256$bm90IGJhc2U2NA$"));
    CHECK_FALSE(PasswordHash::parse("hmac-sha256$c2FsdA==$" + std::string(44, 'A')));  // salt < 8
    CHECK_FALSE(PasswordHash::parse("sha1$abc"));
    auto pbkdf2 = PasswordHash::parse(hash_password("s3cret", 1000));
    REQUIRE(pbkdf2);
    CHECK(pbkdf2->scheme == HashScheme::pbkdf2_sha256);
    CHECK(pbkdf2->iterations == 1000);
    CHECK(pbkdf2->verify("s3cret"));
}

TEST_CASE("a credentials file mixes schemes per line, and device credentials are answered inline") {
    citygate::test::TempDir dir;
    std::ofstream(dir.path() / "credentials")
        << "alice:" << hash_password("people-password", 2000) << "\n"
        << "air-1:" << hash_device_secret(device_secret) << "\n";
    AccessControl access({AnonymousPolicy::never, dir.path() / "credentials", {}});

    auto device = decide(access, request("air-1", device_secret));
    CHECK(device.inline_answer);  // about a microsecond: not worth a trip to the pool
    CHECK(device.result.verdict == reason_code::success);
    CHECK(device.result.identity.user == "air-1");
    CHECK(decide(access, request("air-1", "wrong-secret-0000000")).result.verdict ==
          reason_code::bad_user_name_or_password);

    auto person = decide(access, request("alice", "people-password"));
    CHECK_FALSE(person.inline_answer);  // PBKDF2 runs on the verification pool
    CHECK(person.result.verdict == reason_code::success);
    auto again = decide(access, request("alice", "people-password"));
    CHECK(again.inline_answer);  // verified before: the cache answers
    CHECK(again.result.verdict == reason_code::success);
    CHECK(access.verifications(HashScheme::pbkdf2_sha256) == 1);
    CHECK(access.verifications(HashScheme::hmac_sha256) == 2);
}

TEST_CASE("an unknown user is verified like a known one: same scheme, same cost, same path") {
    citygate::test::TempDir dir;
    SECTION("PBKDF2 users: the dummy has the file's iterations and runs on the pool") {
        std::ofstream(dir.path() / "credentials")
            << "a:" << hash_password("one", 3000) << "\nb:" << hash_password("two", 3000) << "\n";
        AccessControl access({AnonymousPolicy::never, dir.path() / "credentials", {}});
        auto known = decide(access, request("a", "guess"));
        CHECK(access.verifications(HashScheme::pbkdf2_sha256) == 1);
        CHECK(access.pbkdf2_iterations() == 3000);
        auto unknown = decide(access, request("nobody", "guess"));
        CHECK(access.verifications(HashScheme::pbkdf2_sha256) == 2);
        CHECK(access.pbkdf2_iterations() == 6000);
        CHECK(access.verifications(HashScheme::hmac_sha256) == 0);
        CHECK(known.inline_answer == unknown.inline_answer);
        CHECK_FALSE(unknown.inline_answer);
        CHECK(known.result.verdict == unknown.result.verdict);
        CHECK(unknown.result.verdict == reason_code::bad_user_name_or_password);
    }
    SECTION("mostly device credentials: the dummy is an HMAC") {
        std::ofstream(dir.path() / "credentials")
            << "d1:" << hash_device_secret(device_secret) << "\n"
            << "d2:" << hash_device_secret(device_secret) << "\n";
        AccessControl access({AnonymousPolicy::never, dir.path() / "credentials", {}});
        auto known = decide(access, request("d1", "wrong-secret-0000000"));
        auto unknown = decide(access, request("d9", "wrong-secret-0000000"));
        CHECK(access.verifications(HashScheme::hmac_sha256) == 2);
        CHECK(access.verifications(HashScheme::pbkdf2_sha256) == 0);
        CHECK(known.inline_answer == unknown.inline_answer);
        CHECK(known.result.verdict == unknown.result.verdict);
    }
    SECTION("no credentials at all: PBKDF2 at the default 100k iterations") {
        AccessControl access({AnonymousPolicy::never, {}, {}});
        CHECK(decide(access, request("nobody", "guess")).result.verdict ==
              reason_code::bad_user_name_or_password);
        CHECK(access.pbkdf2_iterations() == 100'000);
    }
}

TEST_CASE("failed attempts are throttled per source and per user, without hashing") {
    citygate::test::TempDir dir;
    std::ofstream(dir.path() / "credentials") << "a:" << hash_device_secret(device_secret) << "\n"
                                              << "b:" << hash_device_secret(device_secret) << "\n";
    AccessOptions options{AnonymousPolicy::never, dir.path() / "credentials", {}};
    options.max_failures = 3;
    options.failure_window = std::chrono::seconds(60);
    AccessControl access(options);
    const std::string wrong = "wrong-secret-0000000";

    SECTION("a source that failed max_failures times is refused, even with the right secret") {
        for (int i = 0; i < 3; ++i) {
            CHECK(decide(access, request("a", wrong, "10.0.0.1")).result.verdict ==
                  reason_code::bad_user_name_or_password);
        }
        const auto hashed = access.verifications(HashScheme::hmac_sha256);
        CHECK(decide(access, request("b", device_secret, "10.0.0.1")).result.verdict ==
              reason_code::banned);
        CHECK(access.verifications(HashScheme::hmac_sha256) == hashed);  // no hash computed
        // Another source for another user is not affected.
        CHECK(decide(access, request("b", device_secret, "10.0.0.2")).result.verdict ==
              reason_code::success);
    }
    SECTION("a user guessed at from many sources is refused") {
        for (int i = 0; i < 3; ++i) {
            decide(access, request("a", wrong, "10.0.1." + std::to_string(i)));
        }
        CHECK(decide(access, request("a", device_secret, "10.0.2.1")).result.verdict ==
              reason_code::banned);
        CHECK(access.throttled_users() == 1);
        CHECK(access.throttled_sources() == 3);
    }
    SECTION("a success forgets the user's failures") {
        decide(access, request("a", wrong, "10.0.0.5"));
        decide(access, request("a", wrong, "10.0.0.6"));
        CHECK(decide(access, request("a", device_secret, "10.0.0.7")).result.verdict ==
              reason_code::success);
        decide(access, request("a", wrong, "10.0.0.8"));
        CHECK(decide(access, request("a", device_secret, "10.0.0.9")).result.verdict ==
              reason_code::success);
    }
}

TEST_CASE("the failure table is bounded and ages its entries") {
    using clock = FailureThrottle::clock;
    const auto t0 = clock::now();
    FailureThrottle throttle(2, std::chrono::seconds(10), 4);
    for (int i = 0; i < 100; ++i)
        throttle.record_failure("k" + std::to_string(i), t0);
    CHECK(throttle.size() == 4);  // the least recently failed were forgotten
    CHECK(throttle.capacity() == 4);
    CHECK_FALSE(throttle.blocked("k0", t0));

    CHECK_FALSE(throttle.record_failure("x", t0));
    CHECK_FALSE(throttle.blocked("x", t0));
    CHECK(throttle.record_failure("x", t0 + std::chrono::seconds(1)));  // the second: blocked
    CHECK(throttle.blocked("x", t0 + std::chrono::seconds(9)));
    CHECK_FALSE(throttle.blocked("x", t0 + std::chrono::seconds(10)));         // the window is over
    CHECK_FALSE(throttle.record_failure("x", t0 + std::chrono::seconds(11)));  // a new window
    CHECK(throttle.size() == 4);

    FailureThrottle off(0, std::chrono::seconds(10), 4);
    for (int i = 0; i < 10; ++i)
        off.record_failure("x", t0);
    CHECK_FALSE(off.blocked("x", t0));
    CHECK(off.size() == 0);
}

TEST_CASE("the verification queue is bounded: beyond it, server busy at once") {
    SECTION("the pool itself") {
        VerificationPool pool(1, 2);
        std::promise<void> release;
        auto released = release.get_future().share();
        std::promise<void> started;
        REQUIRE(pool.try_submit([&] {
            started.set_value();
            released.wait();
        }));
        started.get_future().wait();  // the thread is busy, the queue empty
        CHECK(pool.try_submit([] {}));
        CHECK(pool.try_submit([] {}));
        CHECK_FALSE(pool.try_submit([] {}));
        CHECK(pool.queued() == 2);
        release.set_value();
        pool.stop();
        CHECK_FALSE(pool.try_submit([] {}));
    }
    SECTION("through AccessControl") {
        AccessOptions options{AnonymousPolicy::never, {}, {}};
        options.verify_queue = 1;
        options.max_failures = 0;
        AccessControl access(options);
        // 100k PBKDF2 iterations take milliseconds; three requests take microseconds to queue.
        std::vector<std::shared_ptr<std::promise<AuthResult>>> waiting;
        int busy = 0;
        for (int i = 0; i < 3; ++i) {
            auto promise = std::make_shared<std::promise<AuthResult>>();
            auto answer = access.authenticate(request("nobody", "guess"),
                                              [promise](AuthResult r) { promise->set_value(r); });
            if (answer && answer->verdict == reason_code::server_busy) ++busy;
            if (!answer) waiting.push_back(promise);
        }
        CHECK(busy >= 1);
        CHECK(busy <= 2);
        for (auto& promise : waiting) {
            auto future = promise->get_future();
            CHECK(future.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
        }
        access.stop_verification();
        auto late = access.authenticate(request("nobody", "guess"), [](AuthResult) {});
        REQUIRE(late);
        CHECK(late->verdict == reason_code::server_busy);
    }
}
