// Backup and restore through the real binary: a checkpoint taken over the HTTP API while the
// gateway runs, restored with `citygate --restore` into a fresh data directory, serves the same
// data; checkpoints go into <data_dir>/backups by default and are pruned to storage.backup_keep;
// one at a time (409); a checkpoint that cannot be written is logged and counted.
#include <catch2/catch.hpp>

#include <simdjson.h>

#include <signal.h>

#include <fstream>

#include "tests/integration/gateway_fixture.hpp"

using citygate::test::GatewayUnderTest;
using citygate::test::run_command;
using citygate::test::TempDir;

namespace {

std::string post(const GatewayUnderTest& gateway, const std::string& path) {
    std::string output;
    run_command("curl -sS -X POST --max-time 30 http://127.0.0.1:" +
                    std::to_string(gateway.http_port()) + path,
                &output);
    return output;
}

// One POST with curl: the HTTP status and the body.
citygate::test::HttpReply post_reply(const GatewayUnderTest& gateway, const std::string& path) {
    std::string body_file = (gateway.dir() / "post-body").string();
    std::string output;
    citygate::test::HttpReply reply;
    if (run_command(
            "curl -sS -X POST --max-time 30 -o " + body_file +
                " -w '%{http_code}' http://127.0.0.1:" + std::to_string(gateway.http_port()) + path,
            &output) != 0) {
        return reply;
    }
    reply.status = std::stoi(output);
    std::ifstream in(body_file);
    reply.body.assign(std::istreambuf_iterator<char>(in), {});
    return reply;
}

std::vector<std::string> names_in(const std::filesystem::path& directory) {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(directory, ec))
        names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

std::size_t stored(const GatewayUnderTest& gateway) {
    auto reply = gateway.get(
        "/api/v1/query_range",
        {{"series", "level{device=\"b-1\"}"}, {"start", "0"}, {"end", "9000000000000"}});
    REQUIRE(reply.status == 200);
    simdjson::dom::parser parser;
    simdjson::dom::element doc = parser.parse(reply.body);
    simdjson::dom::array result = doc["data"]["result"];
    return result.size() == 0 ? 0 : result.at(0)["values"].get_array().size();
}

}  // namespace

TEST_CASE("a checkpoint taken over HTTP restores into a new data directory with its data") {
    TempDir backups("citygate-backups");
    GatewayUnderTest gateway("[storage]\nbackup_dir = \"" + backups.path().string() + "\"\n");
    std::int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
    std::string lines;
    for (int i = 0; i < 50; ++i) {
        lines += "{\"ts\":" + std::to_string(now - 50'000 + i * 1000) +
                 ",\"level\":" + std::to_string(i) + "}\n";
    }
    std::string output;
    REQUIRE(run_command("printf '%s' " + GatewayUnderTest::shell_quote(lines) +
                            " | mosquitto_pub -h 127.0.0.1 -p " +
                            std::to_string(gateway.mqtt_port()) + " -q 1 -t city/d/water/b-1 -l",
                        &output) == 0);
    REQUIRE(stored(gateway) == 50);

    std::string answer = post(gateway, "/api/v1/admin/checkpoint");
    INFO(answer);
    simdjson::dom::parser parser;
    simdjson::dom::element doc = parser.parse(answer);
    REQUIRE(std::string_view(doc["status"]) == "success");
    std::string checkpoint{std::string_view(doc["data"]["path"])};
    CHECK(checkpoint.starts_with(backups.path().string()));

    // Written after the checkpoint: not in it.
    REQUIRE(run_command("mosquitto_pub -h 127.0.0.1 -p " + std::to_string(gateway.mqtt_port()) +
                            " -q 1 -t city/d/water/b-1 -m '{\"level\": 99}'",
                        &output) == 0);
    CHECK(stored(gateway) == 51);
    CHECK(gateway.get("/api/v1/admin/checkpoint").status == 405);

    TempDir restored("citygate-restored");
    std::string data = (restored.path() / "var").string();
    REQUIRE(run_command(
                std::string(CITYGATE_BINARY) + " --restore " + checkpoint + " --data-dir " + data,
                &output) == 0);
    // Restoring over existing data is refused.
    CHECK(run_command(
              std::string(CITYGATE_BINARY) + " --restore " + checkpoint + " --data-dir " + data,
              &output) == 2);
    CHECK_THAT(output, Catch::Contains("not empty"));

    citygate::test::Process copy(
        {CITYGATE_BINARY, "--mqtt-listen", "127.0.0.1", "--http-listen", "127.0.0.1", "--mqtt-port",
         "0", "--http-port", "0", "--data-dir", data},
        restored.path() / "citygate.log");
    auto line = copy.wait_for_log("http listening on ", std::chrono::seconds(30));
    REQUIRE(line);
    std::size_t at = line->find(':', line->find("http listening on "));
    std::string port = std::to_string(std::stoi(line->substr(at + 1)));
    std::string body;
    REQUIRE(run_command("curl -sS -G --max-time 10 http://127.0.0.1:" + port +
                            "/api/v1/query_range --data-urlencode 'series=level{device=\"b-1\"}'"
                            " --data-urlencode start=0 --data-urlencode end=9000000000000",
                        &body) == 0);
    simdjson::dom::element result = parser.parse(body);
    CHECK(result["data"]["result"].at(0)["values"].get_array().size() == 50);
}

TEST_CASE("checkpoints go into the data directory by default and only backup_keep of them stay") {
    GatewayUnderTest gateway("[http]\ncheckpoint_interval = \"0s\"\n[storage]\nbackup_keep = 3\n");
    std::string output;
    REQUIRE(run_command("mosquitto_pub -h 127.0.0.1 -p " + std::to_string(gateway.mqtt_port()) +
                            " -q 1 -t city/d/water/b-1 -m '{\"level\": 7}'",
                        &output) == 0);
    const std::filesystem::path backups = std::filesystem::path(gateway.data_dir()) / "backups";
    std::vector<std::string> taken;
    simdjson::dom::parser parser;
    for (int i = 0; i < 10; ++i) {
        auto reply = post_reply(gateway, "/api/v1/admin/checkpoint");
        INFO(reply.body);
        REQUIRE(reply.status == 200);
        simdjson::dom::element doc = parser.parse(reply.body);
        std::filesystem::path path{std::string(std::string_view(doc["data"]["path"]))};
        CHECK(path.parent_path() == backups);
        taken.push_back(path.filename().string());
        // Never more than keep on disk, also right after each one.
        CHECK(names_in(backups).size() == std::min<std::size_t>(i + 1, 3));
    }
    // The three newest are the ones left, and each is a complete checkpoint.
    CHECK(names_in(backups) == std::vector<std::string>(taken.end() - 3, taken.end()));
    for (const auto& name : names_in(backups))
        CHECK(std::filesystem::exists(backups / name / "engine.meta"));
    CHECK(gateway.metric("citygate_checkpoints_total{result=\"ok\"}") == 10);
    CHECK(gateway.metric("citygate_checkpoints_total{result=\"failed\"}") == 0);
    // The data directory with its backups/ beside the shards still opens after a restart.
    REQUIRE(gateway.process().signal(SIGTERM));
    REQUIRE(gateway.process().wait_for(std::chrono::seconds(30)) == 0);
    gateway.start();
    CHECK(stored(gateway) == 1);
}

TEST_CASE("a checkpoint asked for while one runs gets 409 and the running one completes") {
    GatewayUnderTest gateway("[http]\ncheckpoint_interval = \"0s\"\n[storage]\nbackup_keep = 0\n");
    // Some data in memtables, so each checkpoint (which flushes them) takes a while.
    std::string lines;
    for (int i = 0; i < 2000; ++i)
        lines += "{\"level\":" + std::to_string(i) + ",\"flow\":" + std::to_string(i) + "}\n";
    std::string output;
    REQUIRE(run_command("printf '%s' " + GatewayUnderTest::shell_quote(lines) +
                            " | mosquitto_pub -h 127.0.0.1 -p " +
                            std::to_string(gateway.mqtt_port()) + " -q 1 -t city/d/water/b-1 -l",
                        &output) == 0);
    std::string script;
    for (int i = 0; i < 4; ++i) {
        script += "curl -s -w ' %{http_code}\\n' -X POST --max-time 30 http://127.0.0.1:" +
                  std::to_string(gateway.http_port()) + "/api/v1/admin/checkpoint & ";
    }
    script += "wait";
    std::size_t ok = 0, conflicts = 0;
    // Four at once on two query threads overlap almost always; rounds until one did.
    for (int round = 0; round < 40 && conflicts == 0; ++round) {
        REQUIRE(run_command("bash -c " + GatewayUnderTest::shell_quote(script), &output) == 0);
        INFO(output);
        for (std::size_t at = output.find(" 200"); at != std::string::npos;
             at = output.find(" 200", at + 1))
            ++ok;
        for (std::size_t at = output.find(" 409"); at != std::string::npos;
             at = output.find(" 409", at + 1)) {
            ++conflicts;
        }
        if (conflicts > 0) CHECK_THAT(output, Catch::Contains("already running"));
        CHECK(output.find(" 500") == std::string::npos);
    }
    CHECK(conflicts > 0);
    // Every 200 left a complete checkpoint; a 409 wrote nothing.
    auto names = names_in(std::filesystem::path(gateway.data_dir()) / "backups");
    CHECK(names.size() == ok);
    CHECK(gateway.metric("citygate_checkpoints_total{result=\"ok\"}") == static_cast<double>(ok));
}

TEST_CASE("a checkpoint that cannot be written answers 500, is logged at error and counted") {
    TempDir blocked("citygate-blocked");
    // A plain file where the backup directory's parent should be: not creatable, even for root.
    std::ofstream(blocked.path() / "not-a-directory") << "x";
    GatewayUnderTest gateway("[storage]\nbackup_dir = \"" +
                             (blocked.path() / "not-a-directory" / "backups").string() + "\"\n");
    auto reply = post_reply(gateway, "/api/v1/admin/checkpoint");
    CHECK(reply.status == 500);
    CHECK_THAT(reply.body, Catch::Contains("cannot create the backup directory"));
    auto line = gateway.process().wait_for_log("checkpoint failed", std::chrono::seconds(10));
    REQUIRE(line);
    CHECK_THAT(*line, Catch::Contains("error"));
    CHECK_THAT(*line, Catch::Contains("Not a directory"));
    CHECK(gateway.metric("citygate_checkpoints_total{result=\"failed\"}") == 1);
    CHECK(gateway.metric("citygate_checkpoints_total{result=\"ok\"}") == 0);
}
