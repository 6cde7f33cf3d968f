// The HTML report renders in headless Chromium with data in all four charts, and needs nothing
// from the network.
#include <catch2/catch.hpp>

#include <fstream>

#include "loadgen/run_report.hpp"
#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

using namespace citygate::loadgen;

namespace {

RunReport sample_report() {
    RunReport report;
    report.scenario = *scenario_preset("smoke");
    report.broker = "127.0.0.1:1883";
    report.protocol = "5";
    report.format = "json";
    report.seconds = 5;
    report.connect_seconds = 1;
    PublisherStats stats;
    auto origin = LatencyTimeline::clock::time_point{};
    stats.ack_by_second.start(origin);
    stats.connack_by_second.start(origin);
    // 200 acks a second for 5 s; the third second (slot 2) is 5 ms slower.
    for (int i = 0; i < 1000; ++i) {
        auto latency = std::chrono::microseconds(200 + i % 200 + (i / 200 == 2 ? 5000 : 0));
        stats.ack_latency.record(latency);
        stats.ack_by_second.record(origin + std::chrono::milliseconds(5 * i), latency);
    }
    for (int i = 0; i < 10; ++i) {
        auto latency = std::chrono::microseconds(900 + 50 * i);
        stats.connack_latency.record(latency);
        stats.connack_by_second.record(origin + std::chrono::milliseconds(50 * i), latency);
    }
    stats.connected.add(10);
    stats.sent.add(1000);
    stats.acknowledged.add(1000);
    stats.drops[static_cast<std::size_t>(DropReason::closed_by_server)].add(2);
    report.totals.add(stats, true);
    for (int t = 0; t <= 5; ++t) {
        std::uint64_t n = std::uint64_t(t) * 200;
        report.timeline.push_back({double(t), t == 0 ? 0u : 10u, t == 0 ? 0u : 10u, n, n, 0, 0});
    }
    add_latency_over_time(report.timeline, report.totals);
    return report;
}

// The value of attribute `name` on the element with id `id` in serialised DOM `dom`.
std::string attribute_of(const std::string& dom, const std::string& id, const std::string& name) {
    std::size_t at = dom.find("id=\"" + id + "\"");
    if (at == std::string::npos) return {};
    std::size_t tag_start = dom.rfind('<', at), tag_end = dom.find('>', at);
    std::string tag = dom.substr(tag_start, tag_end - tag_start);
    std::size_t value = tag.find(name + "=\"");
    if (value == std::string::npos) return {};
    value += name.size() + 2;
    return tag.substr(value, tag.find('"', value) - value);
}

}  // namespace

TEST_CASE("the HTML report is self-contained and embeds the JSON report") {
    std::string html = to_html(sample_report());
    CHECK_THAT(html, Catch::Contains(to_json(sample_report())));
    CHECK_THAT(html, !Catch::Contains("http://") || Catch::Contains("http://www.w3.org/2000/svg"));
    CHECK_THAT(html, !Catch::Contains("https://"));
    CHECK_THAT(html, !Catch::Contains("src="));
}

TEST_CASE("the report's timeline carries each second's latency percentiles") {
    RunReport report = sample_report();
    REQUIRE(report.timeline.size() == 6);
    CHECK(report.timeline[0].ack_count == 0);
    for (std::size_t i = 1; i < 6; ++i) {
        INFO("sample " << i);
        CHECK(report.timeline[i].ack_count == 200);
        CHECK(report.timeline[i].ack_p50_ms < report.timeline[i].ack_p99_ms);
        // Only the third second was slow; the whole-run p99 would have hidden when.
        CHECK((report.timeline[i].ack_p99_ms > 5) == (i == 3));
    }
    CHECK(report.timeline[1].connack_count == 10);
    CHECK(report.timeline[2].connack_count == 0);
    CHECK_THAT(to_json(report), Catch::Contains("[3.000000,10,10,600,600,0,0,200,"));
}

TEST_CASE("the HTML report renders its charts with data in headless Chromium") {
    if (citygate::test::run_command("command -v chromium > /dev/null") != 0) {
        FAIL("chromium is not installed: run deploy/install-deps.sh");
    }
    citygate::test::TempDir dir("loadgen-html");
    auto page = dir.path() / "report.html";
    std::ofstream(page) << to_html(sample_report());
    std::string flags =
        " --headless --no-sandbox --disable-gpu --disable-background-networking "
        "--disable-component-update --disable-sync --no-first-run "
        "--user-data-dir=" +
        (dir.path() / "profile").string();
    std::string dom;
    int status = citygate::test::run_command(
        "timeout 60 chromium" + flags + " --dump-dom file://" + page.string() + " 2>/dev/null",
        &dom);
    REQUIRE(status == 0);
    INFO(dom.substr(0, 2000));
    CHECK_THAT(dom, Catch::Contains("data-rendered=\"yes\""));
    // Throughput: 5 per-second rates for each of 2 lines; latency over time: ack p50 and p99 in
    // 5 seconds, CONNACK p50 and p99 in the first; latency: 5 percentiles x 2; connections: 6
    // samples of open and drops plus 5 connect rates.
    CHECK(attribute_of(dom, "throughput", "data-points") == "10");
    CHECK(attribute_of(dom, "latency-over-time", "data-points") == "12");
    CHECK(attribute_of(dom, "latency", "data-points") == "10");
    CHECK(attribute_of(dom, "connections", "data-points") == "17");
    CHECK_THAT(dom, Catch::Contains("<polyline"));
    CHECK_THAT(dom, Catch::Contains("data-series=\"acknowledged/s\""));
    CHECK_THAT(dom, Catch::Contains("data-series=\"PUBACK/PUBCOMP p99\""));
    CHECK_THAT(dom, Catch::Contains("data-series=\"CONNACK p99\""));

    auto png = dir.path() / "report.png";
    status = citygate::test::run_command("timeout 60 chromium" + flags +
                                         " --window-size=900,1200 --screenshot=" + png.string() +
                                         " file://" + page.string() + " > /dev/null 2>&1");
    REQUIRE(status == 0);
    REQUIRE(std::filesystem::exists(png));
    CHECK(std::filesystem::file_size(png) > 10'000);
}
