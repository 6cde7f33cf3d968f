// Configuration: defaults, TOML over defaults, and clear errors for bad values.
#include <catch2/catch.hpp>

#include <fstream>

#include "gateway/config.hpp"
#include "gateway/upstream/upstream_consumer.hpp"
#include "storage/cpu_limit.hpp"
#include "tests/support/temp_dir.hpp"

using namespace citygate::gateway;
using namespace std::chrono_literals;

TEST_CASE("the embedded defaults are valid and match the documented ports") {
    Config config;
    REQUIRE_NOTHROW(validate(config));
    CHECK(config.mqtt.port == 1883);
    CHECK(config.http.port == 8080);
    CHECK(config.storage.data_dir == "./var");
    CHECK(config.ingest.topic_templates.at(0) == "city/{district}/{type}/{device}");
}

TEST_CASE("a TOML document overrides only what it sets") {
    Config config = parse_config(R"(
        [mqtt]
        port = 11883
        connect_timeout = "250ms"
        [storage]
        fsync = "batch"
        commit_delay = "3ms"
        retention = "7d"
        [ingest]
        topic_templates = ["a/{x}", "b/{y}/{z}"]
        series_cache_slots = 1000
    )",
                                 "test");
    CHECK(config.mqtt.port == 11883);
    CHECK(config.mqtt.connect_timeout == 250ms);
    CHECK(config.storage.fsync == citygate::storage::FsyncPolicy::batch);
    CHECK(config.storage.commit_delay == 3ms);
    CHECK(config.storage.retention == std::chrono::hours(24 * 7));
    CHECK(config.ingest.topic_templates.size() == 2);
    CHECK(config.ingest.series_cache_slots == 1000);
    CHECK(config.http.port == 8080);
}

TEST_CASE("the example configuration file parses and validates") {
    Config config = load_config_file(CITYGATE_SOURCE_DIR "/deploy/citygate.example.toml");
    REQUIRE_NOTHROW(validate(config));
    Config defaults;
    CHECK(config.mqtt.port == defaults.mqtt.port);
    CHECK(config.storage.queue_capacity == defaults.storage.queue_capacity);
    CHECK(config.ingest.series_cache_slots == defaults.ingest.series_cache_slots);
    CHECK(config.server.shutdown_timeout == defaults.server.shutdown_timeout);
    CHECK(config.http.promql_rollup_min_buckets == defaults.http.promql_rollup_min_buckets);
    CHECK(config.storage.memory_budget == defaults.storage.memory_budget);
    CHECK(config.storage.head_flush_interval == defaults.storage.head_flush_interval);
    CHECK(config.storage.memtable_idle_flush == defaults.storage.memtable_idle_flush);
    CHECK(config.storage.memory_trim_interval == defaults.storage.memory_trim_interval);
    CHECK(parse_config("[http]\npromql_rollup_min_buckets = 0", "test")
              .http.promql_rollup_min_buckets == 0);
}

TEST_CASE("bad configuration values are refused with the option named") {
    auto message_of = [](const std::string& toml) {
        try {
            validate(parse_config(toml, "test"));
        } catch (const ConfigError& e) {
            return std::string(e.what());
        }
        return std::string("accepted");
    };
    CHECK_THAT(message_of("[mqtt]\nport = 70000"), Catch::Contains("mqtt.port"));
    CHECK_THAT(message_of("[mqtt]\nport = \"x\""), Catch::Contains("expected an integer"));
    CHECK_THAT(message_of("[mqtt]\nprot = 1"), Catch::Contains("mqtt.prot: unknown option"));
    CHECK_THAT(message_of("[storage]\nfsync = \"always\""), Catch::Contains("storage.fsync"));
    CHECK_THAT(message_of("[storage]\nretention = \"10 years\""), Catch::Contains("unknown unit"));
    CHECK_THAT(message_of("[ingest]\ntopic_templates = [\"city/+/x\"]"),
               Catch::Contains("wildcards"));
    CHECK_THAT(message_of("[ingest]\ntopic_templates = []"), Catch::Contains("at least one"));
    CHECK_THAT(message_of("[storage]\npartition_window = \"90m\""),
               Catch::Contains("whole number of hours"));
    CHECK_THAT(message_of("[server]\nlog_level = \"loud\""), Catch::Contains("server.log_level"));
    CHECK_THAT(message_of("[mqtt\nport = 1"), Catch::Contains("test"));
}

TEST_CASE("durations accept ms, s, m, h and d") {
    CHECK(parse_duration("250ms", "x") == 250ms);
    CHECK(parse_duration("10s", "x") == 10s);
    CHECK(parse_duration("5m", "x") == 5min);
    CHECK(parse_duration("24h", "x") == 24h);
    CHECK(parse_duration("2d", "x") == 48h);
    CHECK_THROWS_AS(parse_duration("10", "x"), ConfigError);
    CHECK_THROWS_AS(parse_duration("-1s", "x"), ConfigError);
    CHECK_THROWS_AS(parse_duration("s", "x"), ConfigError);
}

TEST_CASE("storage.min_free_space takes auto, bytes or a size with a unit") {
    CHECK_FALSE(Config{}.storage.min_free_space.has_value());  // auto
    auto reserve = [](const std::string& value) {
        return parse_config("[storage]\nmin_free_space = " + value, "test").storage.min_free_space;
    };
    CHECK_FALSE(reserve("\"auto\"").has_value());
    CHECK(reserve("67108864") == std::uint64_t{64} << 20);
    CHECK(reserve("\"64MiB\"") == std::uint64_t{64} << 20);
    CHECK(reserve("\"4GiB\"") == std::uint64_t{4} << 30);
    CHECK(reserve("\"500MB\"") == std::uint64_t{500'000'000});
    CHECK(reserve("\"1048576\"") == std::uint64_t{1} << 20);  // what --min-free-space passes
    CHECK(reserve("0") == std::uint64_t{0});
    CHECK_THROWS_WITH(reserve("\"64 furlongs\""), Catch::Contains("storage.min_free_space"));
    CHECK_THROWS_WITH(reserve("\"-1MiB\""), Catch::Contains("storage.min_free_space"));
    CHECK_THROWS_WITH(reserve("-5"), Catch::Contains("storage.min_free_space"));
    CHECK_THROWS_WITH(reserve("\"99999999999TiB\""), Catch::Contains("storage.min_free_space"));
}

TEST_CASE("storage.memory_budget takes auto, off, bytes or a size with a unit") {
    CHECK_FALSE(Config{}.storage.memory_budget.has_value());  // auto
    auto budget = [](const std::string& value) {
        return parse_config("[storage]\nmemory_budget = " + value, "test").storage.memory_budget;
    };
    CHECK_FALSE(budget("\"auto\"").has_value());
    CHECK(budget("\"off\"") == std::uint64_t{0});
    CHECK(budget("0") == std::uint64_t{0});
    CHECK(budget("\"2GiB\"") == std::uint64_t{2} << 30);
    CHECK(budget("268435456") == std::uint64_t{256} << 20);
    CHECK_THROWS_WITH(budget("\"10MiB\""), Catch::Contains("storage.memory_budget") &&
                                               Catch::Contains("at least 64 MiB"));
    CHECK_THROWS_WITH(budget("\"lots\""), Catch::Contains("storage.memory_budget"));
    CHECK_THROWS_WITH(budget("-1"), Catch::Contains("storage.memory_budget"));

    // auto: half of what the machine (or its cgroup) allows; a configured size as it is.
    Config::Storage automatic;
    const std::uint64_t machine = citygate::memory_limit_bytes();
    REQUIRE(machine > 0);
    CHECK(effective_memory_budget(automatic) ==
          std::max<std::uint64_t>(machine / 2, std::uint64_t{256} << 20));
    Config::Storage sized;
    sized.memory_budget = std::uint64_t{1} << 30;
    CHECK(effective_memory_budget(sized) == std::uint64_t{1} << 30);
    sized.memory_budget = 0;
    CHECK(effective_memory_budget(sized) == 0);
}

TEST_CASE("the head, memtable and allocator intervals of [storage] parse and are checked") {
    Config c = parse_config(
        "[storage]\nhead_flush_interval = \"30s\"\nmemtable_idle_flush = \"0s\"\n"
        "memory_trim_interval = \"10s\"",
        "test");
    CHECK(c.storage.head_flush_interval == 30s);
    CHECK(c.storage.memtable_idle_flush == 0s);
    CHECK(c.storage.memory_trim_interval == 10s);
    CHECK(Config{}.storage.head_flush_interval == 5min);
    CHECK(Config{}.storage.memtable_idle_flush == 2min);
    CHECK(Config{}.storage.memory_trim_interval == 30s);
    auto refused = [](const std::string& toml) {
        try {
            parse_config("[storage]\n" + toml, "test");
        } catch (const ConfigError& e) {
            return std::string(e.what());
        }
        return std::string("accepted");
    };
    CHECK_THAT(refused("head_flush_interval = \"0s\""),
               Catch::Contains("storage.head_flush_interval") && Catch::Contains("at least 1s"));
    CHECK_THAT(refused("head_flush_interval = \"500ms\""),
               Catch::Contains("storage.head_flush_interval"));
    CHECK_THAT(refused("memtable_idle_flush = \"200ms\""),
               Catch::Contains("storage.memtable_idle_flush"));
    CHECK_THAT(refused("memory_trim_interval = \"5ms\""),
               Catch::Contains("storage.memory_trim_interval"));
}

TEST_CASE("storage.minute_block_min_points parses and is checked") {
    CHECK(Config{}.storage.minute_block_min_points == 12);
    Config c = parse_config("[storage]\nminute_block_min_points = 1", "test");
    CHECK(c.storage.minute_block_min_points == 1);
    CHECK_THROWS_WITH(parse_config("[storage]\nminute_block_min_points = 0", "test"),
                      Catch::Contains("storage.minute_block_min_points"));
}

TEST_CASE("[[upstream]] sections configure consumer mode") {
    Config config = parse_config(R"(
[[upstream]]
name = "a"
url = "mqtts://broker.example:8884"
topics = ["city/#", "lab/+/air"]
connections = 3
session_expiry = "2h"
receive_maximum = 1000
tls_ca_file = "/etc/ca.pem"

[[upstream]]
name = "b"
url = "mqtt://[::1]"
topics = ["x"]
share_group = ""
)",
                                 "test");
    REQUIRE_NOTHROW(validate(config));
    REQUIRE(config.upstreams.size() == 2);
    const auto& a = config.upstreams[0];
    CHECK(a.name == "a");
    CHECK(a.topics == std::vector<std::string>{"city/#", "lab/+/air"});
    CHECK(a.connections == 3);
    CHECK(a.session_expiry == std::chrono::hours(2));
    CHECK(a.receive_maximum == 1000);
    CHECK(a.share_group == "citygate");
    auto broker = parse_broker_url(a.url);
    REQUIRE(broker);
    CHECK(broker->tls);
    CHECK(broker->host == "broker.example");
    CHECK(broker->port == 8884);
    auto v6 = parse_broker_url(config.upstreams[1].url);
    REQUIRE(v6);
    CHECK(v6->host == "::1");
    CHECK(v6->port == 1883);
    CHECK(config.upstreams[1].share_group.empty());
    CHECK(upstream_client_id(a, "node-7", 2) == "citygate-node-7-a-2");
}

TEST_CASE("bad [[upstream]] sections are refused with the option named") {
    auto message_of = [](const std::string& toml) {
        try {
            validate(parse_config(toml, "test"));
        } catch (const ConfigError& e) {
            return std::string(e.what());
        }
        return std::string("accepted");
    };
    const std::string ok = "[[upstream]]\nname = \"a\"\nurl = \"mqtt://h\"\ntopics = [\"t/#\"]\n";
    CHECK(message_of(ok) == "accepted");
    CHECK_THAT(message_of("[[upstream]]\nurl = \"mqtt://h\"\ntopics = [\"t\"]"),
               Catch::Contains("upstream[0].name"));
    CHECK_THAT(message_of(ok + ok), Catch::Contains("names two upstreams"));
    CHECK_THAT(message_of("[[upstream]]\nname = \"a\"\nurl = \"http://h\"\ntopics = [\"t\"]"),
               Catch::Contains("upstream[0].url"));
    CHECK_THAT(message_of("[[upstream]]\nname = \"a\"\nurl = \"mqtt://h:0\"\ntopics = [\"t\"]"),
               Catch::Contains("bad port"));
    CHECK_THAT(message_of("[[upstream]]\nname = \"a\"\nurl = \"mqtt://h\"\ntopics = []"),
               Catch::Contains("upstream[0].topics"));
    CHECK_THAT(message_of("[[upstream]]\nname = \"a\"\nurl = \"mqtt://h\"\ntopics = [\"a/#/b\"]"),
               Catch::Contains("no topic filter"));
    CHECK_THAT(
        message_of("[[upstream]]\nname = \"a\"\nurl = \"mqtt://h\"\ntopics = [\"$share/g/t\"]"),
        Catch::Contains("share_group"));
    CHECK_THAT(message_of(ok + "connections = 2\nclient_id = \"fixed\""),
               Catch::Contains("needs {n}"));
    CHECK_THAT(message_of(ok + "reconnect_min = \"5s\"\nreconnect_max = \"1s\""),
               Catch::Contains("reconnect_max"));
    CHECK_THAT(message_of(ok + "colour = 1"), Catch::Contains("upstream[0].colour: unknown"));
    CHECK_THAT(message_of(ok + "tls_cert_file = \"c.pem\""), Catch::Contains("go together"));
    CHECK_THAT(message_of("upstream = 3"), Catch::Contains("expected [[upstream]]"));
}

TEST_CASE("[export.mqtt] is off by default and takes every documented key") {
    CHECK_FALSE(Config{}.export_mqtt.enabled());
    Config config = parse_config(R"(
        [export.mqtt]
        url = "mqtts://broker.example:8883"
        topic_prefix = "city/agg"
        client_id = "agg-{host}"
        qos = 2
        retain = false
        interval = "30s"
        max_buffered = 5000
        username = "gw"
        password = "secret"
        tls_ca_file = "/etc/citygate/ca.pem"
    )",
                                 "test");
    REQUIRE_NOTHROW(validate(config));
    const Config::ExportMqtt& e = config.export_mqtt;
    CHECK(e.enabled());
    CHECK(e.url == "mqtts://broker.example:8883");
    CHECK(e.topic_prefix == "city/agg");
    CHECK(e.client_id == "agg-{host}");
    CHECK(e.qos == 2);
    CHECK_FALSE(e.retain);
    CHECK(e.interval == 30s);
    CHECK(e.max_buffered == 5000);
    CHECK(e.username == "gw");
    CHECK(e.password == "secret");
    CHECK(e.tls_ca_file == "/etc/citygate/ca.pem");

    SECTION("defaults for what is not set") {
        Config minimal = parse_config("[export.mqtt]\nurl = \"mqtt://127.0.0.1:1883\"", "test");
        REQUIRE_NOTHROW(validate(minimal));
        Config::ExportMqtt defaults;
        CHECK(minimal.export_mqtt.topic_prefix == "citygate/agg");
        CHECK(minimal.export_mqtt.client_id == "citygate-agg-{host}");
        CHECK(minimal.export_mqtt.qos == 1);
        CHECK(minimal.export_mqtt.retain);
        CHECK(minimal.export_mqtt.interval == 1min);
        CHECK(minimal.export_mqtt.max_buffered == 10'000);
        CHECK(defaults.url.empty());
    }
    SECTION("an empty url is off and needs nothing else") {
        Config off = parse_config("[export.mqtt]\nurl = \"\"\ninterval = \"1500ms\"", "test");
        CHECK_FALSE(off.export_mqtt.enabled());
        CHECK_NOTHROW(validate(off));
    }
}

TEST_CASE("bad [export.mqtt] values are refused with the option named") {
    auto message_of = [](const std::string& keys) {
        try {
            validate(parse_config("[export.mqtt]\nurl = \"mqtt://127.0.0.1\"\n" + keys, "test"));
        } catch (const ConfigError& e) {
            return std::string(e.what());
        }
        return std::string("accepted");
    };
    CHECK(message_of("") == "accepted");
    CHECK(message_of("interval = \"2s\"") == "accepted");  // sub-minute, for tests
    CHECK_THAT(message_of("urll = \"x\""), Catch::Contains("export.mqtt.urll: unknown option"));
    CHECK_THAT(message_of("qos = 3"), Catch::Contains("export.mqtt.qos"));
    CHECK_THAT(message_of("retain = 1"), Catch::Contains("export.mqtt.retain"));
    CHECK_THAT(message_of("max_buffered = 0"), Catch::Contains("export.mqtt.max_buffered"));
    CHECK_THAT(message_of("interval = \"1500ms\""), Catch::Contains("export.mqtt.interval"));
    CHECK_THAT(message_of("interval = \"0s\""), Catch::Contains("export.mqtt.interval"));
    CHECK_THAT(message_of("interval = \"2h\""), Catch::Contains("export.mqtt.interval"));
    CHECK_THAT(message_of("topic_prefix = \"a/+\""), Catch::Contains("export.mqtt.topic_prefix"));
    CHECK_THAT(message_of("client_id = \"\""), Catch::Contains("export.mqtt.client_id"));
    CHECK_THAT(message_of("tls_ca_file = \"ca.pem\""), Catch::Contains("needs an mqtts:// url"));
    CHECK_THAT(message_of("[city]\nmax_pairs = 0"), Catch::Contains("city.max_pairs"));
    CHECK_THAT(message_of("max_buffered = 100"), Catch::Contains("at least city.max_pairs (4096)"));
    CHECK(message_of("max_buffered = 100\n[city]\nmax_pairs = 100") == "accepted");
    auto url_message = [](const std::string& url) {
        try {
            validate(parse_config("[export.mqtt]\nurl = \"" + url + "\"", "test"));
        } catch (const ConfigError& e) {
            return std::string(e.what());
        }
        return std::string("accepted");
    };
    CHECK_THAT(url_message("tcp://127.0.0.1:1883"), Catch::Contains("mqtt:// or mqtts://"));
    CHECK_THAT(url_message("mqtt://"), Catch::Contains("export.mqtt.url"));
    CHECK_THAT(url_message("mqtt://host/path"), Catch::Contains("export.mqtt.url"));
    CHECK_THROWS_WITH(parse_config("[export]\nmqtt = 1", "test"),
                      Catch::Contains("export.mqtt: expected a table"));
}

TEST_CASE("[export.remote_write] parses every option, and an empty url is off") {
    Config off = parse_config("", "test");
    CHECK(off.export_remote_write.url.empty());
    REQUIRE_NOTHROW(validate(off));
    Config config = parse_config(R"(
        [export.remote_write]
        url = "http://127.0.0.1:8428/api/v1/write"
        select = ['pm25{district="x"}', '{__name__=~"no2|pm10"}']
        source = "both"
        batch_samples = 5000
        batch_age = "2s"
        settle_delay = "30s"
        min_backoff = "100ms"
        max_backoff = "10s"
        timeout = "3s"
        max_backlog = "2h"
        username = "u"
        password = "p"
    )",
                                 "test");
    REQUIRE_NOTHROW(validate(config));
    const auto& rw = config.export_remote_write;
    CHECK(rw.url == "http://127.0.0.1:8428/api/v1/write");
    CHECK(rw.select.size() == 2);
    CHECK(rw.source == "both");
    CHECK(rw.batch_samples == 5000);
    CHECK(rw.batch_age == 2s);
    CHECK(rw.settle_delay == 30s);
    CHECK(rw.min_backoff == 100ms);
    CHECK(rw.max_backoff == 10s);
    CHECK(rw.timeout == 3s);
    CHECK(rw.max_backlog == std::chrono::hours(2));
    CHECK(rw.username == "u");
    CHECK(rw.password == "p");
}

TEST_CASE("[export.remote_write] bad values are refused with the option named") {
    auto message_of = [](const std::string& toml) {
        try {
            validate(parse_config("[export.remote_write]\nurl = \"http://127.0.0.1:1/w\"\n" + toml,
                                  "test"));
        } catch (const ConfigError& e) {
            return std::string(e.what());
        }
        return std::string("accepted");
    };
    auto plain_message = [](const std::string& toml) {
        try {
            validate(parse_config(toml, "test"));
        } catch (const ConfigError& e) {
            return std::string(e.what());
        }
        return std::string("accepted");
    };
    CHECK(message_of("") == "accepted");
    CHECK_THAT(message_of("urll = 1"), Catch::Contains("export.remote_write.urll: unknown option"));
    CHECK_THAT(message_of("source = \"cooked\""), Catch::Contains("export.remote_write.source"));
    CHECK_THAT(message_of("select = ['{a']"), Catch::Contains("export.remote_write.select"));
    CHECK_THAT(message_of("select = []"), Catch::Contains("at least one"));
    CHECK_THAT(message_of("batch_samples = 0"),
               Catch::Contains("export.remote_write.batch_samples"));
    CHECK_THAT(message_of("min_backoff = \"2m\""),
               Catch::Contains("export.remote_write.max_backoff"));
    CHECK_THAT(message_of("bearer_token = \"t\"\nusername = \"u\""), Catch::Contains("not both"));
    CHECK_THAT(message_of("password = \"p\""), Catch::Contains("needs username"));
    CHECK_THAT(message_of("settle_delay = \"2d\""),
               Catch::Contains("export.remote_write.settle_delay"));
    CHECK(plain_message("[export.remote_write]\nurl = \"https://tsdb/w\"") == "accepted");
    CHECK_THAT(plain_message("[export.remote_write]\nurl = \"ftp://tsdb/w\""),
               Catch::Contains("must start with http:// or https://"));
    CHECK_THAT(message_of("tls_ca_file = \"/ca.pem\""), Catch::Contains("needs an https:// url"));
    CHECK_THAT(plain_message("[export.remote_write]\nurl = \"http://:80/w\""),
               Catch::Contains("no host"));
    CHECK_THAT(plain_message("[export]\nmqtt_thing = 1"), Catch::Contains("export.mqtt_thing"));
}

TEST_CASE("the configuration check reads [[upstream]] password and TLS files as a start would") {
    citygate::test::TempDir dir;
    const auto password = dir.path() / "password";
    std::ofstream(password) << "s3cret\nignored\n";
    Config config = parse_config(
        "[[upstream]]\nname = \"a\"\nurl = \"mqtt://h\"\ntopics = [\"t\"]\n"
        "password_file = \"" +
            password.string() + "\"\n",
        "test");
    CHECK_NOTHROW(check_upstream_files(config.upstreams));
    config.upstreams[0].password_file = dir.path() / "missing";
    CHECK_THROWS_WITH(check_upstream_files(config.upstreams),
                      Catch::Contains("upstream[0].password_file"));
    config.upstreams[0].password_file.clear();
    config.upstreams[0].url = "mqtts://h";
    config.upstreams[0].tls_ca_file = dir.path() / "no-ca.pem";
    CHECK_THROWS_WITH(check_upstream_files(config.upstreams),
                      Catch::Contains("upstream[0].tls_ca_file"));
}
