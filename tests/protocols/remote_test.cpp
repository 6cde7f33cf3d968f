// Prometheus remote write/read messages and the HTTP body encodings: byte-exact vectors (a
// comment per field), hostile input (every truncation, wrong wire types, limits), round trips.
#include <catch2/catch.hpp>

#include <string>

#include "protocols/remote/compression.hpp"
#include "protocols/remote/remote_read.hpp"
#include "protocols/remote/remote_write.hpp"

using namespace citygate::remote;

namespace {

std::string bytes(std::initializer_list<int> list) {
    std::string out;
    for (int b : list)
        out += static_cast<char>(b);
    return out;
}

// WriteRequest{timeseries: [{labels: [__name__="up", job="a"], samples: [{1.0, 1000}]}]}
const std::string kWriteRequest =
    bytes({0x0A, 0x28,                                            // timeseries, 40 bytes
           0x0A, 0x0E,                                            //   labels, 14 bytes
           0x0A, 0x08, '_', '_', 'n', 'a', 'm', 'e',  '_',  '_',  //     name "__name__"
           0x12, 0x02, 'u', 'p',                                  //     value "up"
           0x0A, 0x08,                                            //   labels, 8 bytes
           0x0A, 0x03, 'j', 'o', 'b',                             //     name "job"
           0x12, 0x01, 'a',                                       //     value "a"
           0x12, 0x0C,                                            //   samples, 12 bytes
           0x09, 0,    0,   0,   0,   0,   0,   0xF0, 0x3F,       //     value 1.0 (fixed64)
           0x10, 0xE8, 0x07});                                    //     timestamp 1000 (varint)

}  // namespace

TEST_CASE("remote write: a WriteRequest decodes into its series, labels and samples") {
    WriteRequestDecoder decoder;
    REQUIRE_FALSE(decoder.decode(kWriteRequest));
    REQUIRE(decoder.series().size() == 1);
    const SeriesView& series = decoder.series()[0];
    REQUIRE(series.labels.size() == 2);
    CHECK(series.labels[0].name == "__name__");
    CHECK(series.labels[0].value == "up");
    CHECK(series.labels[1].name == "job");
    CHECK(series.labels[1].value == "a");
    REQUIRE(series.samples.size() == 1);
    CHECK(series.samples[0].value == 1.0);
    CHECK(series.samples[0].timestamp_ms == 1000);
    CHECK(decoder.samples() == 1);
}

TEST_CASE("remote write: the encoder writes the same bytes") {
    Label labels[] = {{"__name__", "up"}, {"job", "a"}};
    Sample samples[] = {{1.0, 1000}};
    SeriesView series[] = {{labels, samples}};
    std::string out;
    encode_write_request(out, series);
    CHECK(out == kWriteRequest);
}

TEST_CASE("remote write: unknown fields, metadata, exemplars and histograms are skipped") {
    std::string request = kWriteRequest;
    request += bytes({0x1A, 0x02, 0x08, 0x01});  // metadata {type: 1}
    request += bytes({0x78, 0x05});              // field 15, varint 5 (unknown)
    request += bytes({0x0D, 1, 2, 3, 4});        // field 1 as fixed32: timeseries must be LEN
    WriteRequestDecoder decoder;
    CHECK(decoder.decode(request) == errc::bad_wire_type);

    request = kWriteRequest;
    request += bytes({0x1A, 0x02, 0x08, 0x01, 0x78, 0x05, 0x25, 1, 2, 3, 4});  // + fixed32 f4
    REQUIRE_FALSE(decoder.decode(request));
    CHECK(decoder.series().size() == 1);

    // A series with an exemplar (3) and a native histogram (4) keeps its samples.
    std::string series =
        bytes({0x0A, 0x06, 0x0A, 0x01, 'x', 0x12, 0x01, 'y', 0x1A, 0x00, 0x22, 0x00});
    std::string with = bytes({0x0A, static_cast<int>(series.size())}) + series;
    REQUIRE_FALSE(decoder.decode(with));
    CHECK(decoder.series().size() == 1);
    CHECK(decoder.histograms() == 1);
    CHECK(decoder.exemplars() == 1);
}

TEST_CASE("remote write: every truncation of a request is an error, never a crash") {
    WriteRequestDecoder decoder;
    for (std::size_t n = 1; n < kWriteRequest.size(); ++n) {
        INFO("prefix of " << n << " bytes");
        CHECK(decoder.decode(std::string_view(kWriteRequest).substr(0, n)));
        CHECK(decoder.series().empty());
    }
    CHECK_FALSE(decoder.decode({}));  // an empty request is a valid one with no series
}

TEST_CASE("remote write: lengths past the end, long varints and groups are refused") {
    WriteRequestDecoder decoder;
    CHECK(decoder.decode(bytes({0x0A, 0x7F, 0x00})) == errc::truncated);
    CHECK(decoder.decode(bytes({0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                0x01})) == errc::truncated);
    CHECK(decoder.decode(bytes({0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                                0x01})) == errc::bad_varint);
    CHECK(decoder.decode(bytes({0x0B, 0x0C})) == errc::bad_wire_type);  // start group
    CHECK(decoder.decode(bytes({0x00, 0x00})) == errc::bad_field_number);
    // A sample whose value is a varint.
    CHECK(decoder.decode(bytes({0x0A, 0x04, 0x12, 0x02, 0x08, 0x01})) == errc::bad_wire_type);
}

TEST_CASE("remote write: the limits refuse before the arrays grow") {
    std::string request;
    Label labels[] = {{"__name__", "m"}};
    std::vector<Sample> samples(10, Sample{2.5, 7});
    SeriesView series[] = {{labels, samples}, {labels, samples}};
    encode_write_request(request, series);

    WriteRequestDecoder by_samples(WriteLimits{100, 15, 8});
    CHECK(by_samples.decode(request) == errc::too_many_samples);
    WriteRequestDecoder by_series(WriteLimits{1, 100, 8});
    CHECK(by_series.decode(request) == errc::too_many_series);
    WriteRequestDecoder by_labels(WriteLimits{100, 100, 0});
    CHECK(by_labels.decode(request) == errc::too_many_labels);
    WriteRequestDecoder enough(WriteLimits{2, 20, 1});
    REQUIRE_FALSE(enough.decode(request));
    CHECK(enough.samples() == 20);
    CHECK(enough.series()[1].samples[9].value == 2.5);
}

TEST_CASE("remote read: a ReadRequest decodes its queries, matchers and response types") {
    std::string request = bytes({
        0x0A, 0x26,                                            // queries, 38 bytes
        0x08, 0xE8, 0x07,                                      //   start_timestamp_ms 1000
        0x10, 0xD0, 0x0F,                                      //   end_timestamp_ms 2000
        0x1A, 0x10,                                            //   matchers, 16 bytes
        0x08, 0x00,                                            //     type EQ
        0x12, 0x08, '_',  '_',  'n', 'a', 'm', 'e', '_', '_',  //     name
        0x1A, 0x02, 'u',  'p',                                 //     value
        0x1A, 0x0C,                                            //   matchers, 12 bytes
        0x08, 0x02,                                            //     type RE
        0x12, 0x03, 'j',  'o',  'b',                           //     name
        0x1A, 0x03, 'a',  '.',  '*',                           //     value
        0x12, 0x02, 0x01, 0x00,  // accepted_response_types, packed: STREAMED_XOR_CHUNKS, SAMPLES
    });
    ReadRequest read;
    REQUIRE_FALSE(decode_read_request(request, read));
    REQUIRE(read.queries.size() == 1);
    const Query& query = read.queries[0];
    CHECK(query.start_ms == 1000);
    CHECK(query.end_ms == 2000);
    REQUIRE(query.matchers.size() == 2);
    CHECK(query.matchers[0].type == LabelMatcher::Type::equal);
    CHECK(query.matchers[0].name == "__name__");
    CHECK(query.matchers[0].value == "up");
    CHECK(query.matchers[1].type == LabelMatcher::Type::regex);
    CHECK(query.matchers[1].value == "a.*");
    CHECK(read.accepted.size() == 2);
    CHECK(read.accepts_samples());

    ReadRequest chunks_only;
    REQUIRE_FALSE(decode_read_request(bytes({0x10, 0x01}), chunks_only));  // unpacked
    CHECK_FALSE(chunks_only.accepts_samples());

    for (std::size_t n = 1; n < request.size(); ++n) {
        if (n == 40) continue;  // the query is whole there: a valid request without types
        ReadRequest partial;
        INFO("prefix of " << n << " bytes");
        CHECK(decode_read_request(std::string_view(request).substr(0, n), partial));
    }
    ReadRequest bad;
    CHECK(decode_read_request(bytes({0x0A, 0x02, 0x1A, 0x05}), bad) == errc::truncated);
    CHECK(decode_read_request(bytes({0x0A, 0x04, 0x1A, 0x02, 0x08, 0x07}), bad) ==
          errc::bad_matcher_type);
}

TEST_CASE("remote read: a ReadResponse of SAMPLES has the exact bytes") {
    std::int64_t timestamps[] = {1000};
    double values[] = {1.0};
    ResultSeries series{{{"__name__", "up"}}, timestamps, values};
    std::string out;
    append_query_result(out, {&series, 1});
    std::string expected = bytes({
        0x0A, 0x20,                                             // results, 32 bytes
        0x0A, 0x1E,                                             //   timeseries, 30 bytes
        0x0A, 0x0E,                                             //     labels, 14 bytes
        0x0A, 0x08, '_',  '_', 'n', 'a', 'm', 'e',  '_',  '_',  //       name
        0x12, 0x02, 'u',  'p',                                  //       value
        0x12, 0x0C,                                             //     samples, 12 bytes
        0x09, 0,    0,    0,   0,   0,   0,   0xF0, 0x3F,       //       value 1.0
        0x10, 0xE8, 0x07,                                       //       timestamp 1000
    });
    CHECK(out == expected);
    CHECK(query_result_size({&series, 1}) == expected.size());

    // An empty result is an empty QueryResult: the client still sees one per query.
    std::string empty;
    append_query_result(empty, {});
    CHECK(empty == bytes({0x0A, 0x00}));
}

TEST_CASE("compression: snappy round trip and its output bound") {
    std::string text(100'000, 'x');
    for (std::size_t i = 0; i < text.size(); i += 7)
        text[i] = static_cast<char>('a' + i % 26);
    std::string packed, unpacked;
    snappy_compress(text, packed);
    CHECK(packed.size() < text.size());
    CHECK(snappy_uncompress(packed, text.size(), unpacked) == DecodeStatus::ok);
    CHECK(unpacked == text);
    CHECK(snappy_uncompress(packed, text.size() - 1, unpacked) == DecodeStatus::too_large);
    CHECK(unpacked.empty());
    CHECK(snappy_uncompress("\xff\xff\xff\xff\x0f garbage", 1 << 30, unpacked) != DecodeStatus::ok);
    CHECK(snappy_uncompress(std::string_view(packed).substr(0, packed.size() / 2), text.size(),
                            unpacked) == DecodeStatus::corrupt);
}

TEST_CASE("compression: gzip round trip, members back to back, truncation and bombs") {
    std::string text;
    for (int i = 0; i < 20'000; ++i)
        text += "pm25,district=d" + std::to_string(i % 16) + " value=" + std::to_string(i) + "\n";
    std::string packed = gzip_compress(text);
    std::string out;
    CHECK(gzip_uncompress(packed, text.size(), out) == DecodeStatus::ok);
    CHECK(out == text);
    CHECK(gzip_uncompress(packed + gzip_compress("tail\n"), 2 * text.size(), out) ==
          DecodeStatus::ok);
    CHECK(out == text + "tail\n");
    CHECK(gzip_uncompress(std::string_view(packed).substr(0, packed.size() - 9), text.size(),
                          out) == DecodeStatus::corrupt);
    CHECK(gzip_uncompress("not gzip at all", 1000, out) == DecodeStatus::corrupt);
    std::string zeros(10 << 20, '\0');  // 10 MiB of zeros packs into ~10 KiB
    std::string bomb = gzip_compress(zeros);
    CHECK(bomb.size() < 64 * 1024);
    CHECK(gzip_uncompress(bomb, 1 << 20, out) == DecodeStatus::too_large);
    CHECK(out.empty());
}
