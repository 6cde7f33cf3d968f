// Remote-write request bodies: what a receiver decodes from them.
#include <catch2/catch.hpp>

#include "export/remote_write_encoding.hpp"
#include "protocols/remote/compression.hpp"
#include "protocols/remote/remote_write.hpp"

using namespace citygate::exports;

namespace {

std::string label_text(const citygate::remote::SeriesView& series) {
    std::string out;
    for (const auto& label : series.labels)
        out += std::string(label.name) + "=" + std::string(label.value) + ";";
    return out;
}

}  // namespace

TEST_CASE("names become legal Prometheus metric and label names") {
    CHECK(prometheus_metric_name("pm25") == "pm25");
    CHECK(prometheus_metric_name("air.pm2-5") == "air_pm2_5");
    CHECK(prometheus_metric_name("pm25:avg_1m") == "pm25:avg_1m");  // colons stay in metric names
    CHECK(prometheus_metric_name("2x") == "_2x");
    CHECK(prometheus_label_name("a:b.c-d") == "a_b_c_d");  // not in label names
    CHECK(prometheus_label_name("device") == "device");
}

TEST_CASE("a batch decodes back to its series: __name__ first, labels sorted, samples in order") {
    std::vector<ExportSeries> batch = {
        {R"(pm25{device="a-1",district="pudong",type="air"})", "", {1000, 2000}, {1.5, 2.5}},
        {R"(temp.c{Zone="n",device="b"})", ":avg_1m", {60000}, {-3}},
    };
    std::string body = encode_remote_write_body(batch);
    std::string protobuf;
    REQUIRE(citygate::remote::snappy_uncompress(body, 1 << 20, protobuf) ==
            citygate::remote::DecodeStatus::ok);
    citygate::remote::WriteRequestDecoder decoder;
    REQUIRE(!decoder.decode(protobuf));
    auto series = decoder.series();
    REQUIRE(series.size() == 2);
    CHECK(label_text(series[0]) == "__name__=pm25;device=a-1;district=pudong;type=air;");
    REQUIRE(series[0].samples.size() == 2);
    CHECK(series[0].samples[0].timestamp_ms == 1000);
    CHECK(series[0].samples[0].value == 1.5);
    CHECK(series[0].samples[1].timestamp_ms == 2000);
    CHECK(series[0].samples[1].value == 2.5);
    // "Zone" sorts before "__name__" (uppercase is below '_'): sorted by bytes, as 1.0 requires.
    CHECK(label_text(series[1]) == "Zone=n;__name__=temp_c:avg_1m;device=b;");
    CHECK(series[1].samples[0].value == -3);
    CHECK(sample_count(batch) == 3);
}

TEST_CASE("a key that does not parse is skipped and counted") {
    std::vector<ExportSeries> batch = {{"pm25{broken", "", {1}, {1}}, {"pm10{}", "", {1}, {2}}};
    std::size_t skipped = 0;
    std::string protobuf;
    encode_write_request(batch, protobuf, &skipped);
    CHECK(skipped == 1);
    citygate::remote::WriteRequestDecoder decoder;
    REQUIRE(!decoder.decode(protobuf));
    REQUIRE(decoder.series().size() == 1);
    CHECK(label_text(decoder.series()[0]) == "__name__=pm10;");
}

TEST_CASE("one sample's bytes are exact: TimeSeries{Label, Sample}") {
    std::vector<ExportSeries> batch = {{"m{}", "", {5}, {1.0}}};
    std::string protobuf;
    encode_write_request(batch, protobuf);
    const std::string expected(
        "\x0a\x1c"                              // WriteRequest.timeseries (1), 28 bytes
        "\x0a\x0d"                              // TimeSeries.labels (1), 13 bytes
        "\x0a\x08__name__"                      //   Label.name (1)
        "\x12\x01m"                             //   Label.value (2)
        "\x12\x0b"                              // TimeSeries.samples (2), 11 bytes
        "\x09\x00\x00\x00\x00\x00\x00\xf0\x3f"  // Sample.value (1), double 1.0
        "\x10\x05",                             // Sample.timestamp (2), 5
        30);
    CHECK(protobuf == expected);
}
