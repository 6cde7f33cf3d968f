// Remote-write request bodies from stored series.
#include "export/remote_write_encoding.hpp"

#include <algorithm>

#include "protocols/remote/compression.hpp"
#include "protocols/remote/remote_write.hpp"
#include "storage/selector.hpp"

namespace citygate::exports {
namespace {

bool is_alpha(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

std::string legal_name(std::string_view name, bool colon_allowed) {
    std::string out;
    out.reserve(name.size() + 1);
    if (name.empty() || is_digit(name.front())) out += '_';
    for (char c : name) {
        bool ok = is_alpha(c) || is_digit(c) || (colon_allowed && c == ':');
        out += ok ? c : '_';
    }
    return out;
}

}  // namespace

std::string prometheus_metric_name(std::string_view name) {
    return legal_name(name, true);
}

std::string prometheus_label_name(std::string_view name) {
    return legal_name(name, false);
}

std::size_t sample_count(std::span<const ExportSeries> series) {
    std::size_t n = 0;
    for (const ExportSeries& one : series)
        n += one.timestamps_ms.size();
    return n;
}

void encode_write_request(std::span<const ExportSeries> series, std::string& protobuf,
                          std::size_t* skipped) {
    protobuf.clear();
    // Owned label strings per series, then views for the shared encoder: one series at a time,
    // so a batch's labels are never all held twice.
    std::vector<std::pair<std::string, std::string>> owned;
    std::vector<remote::Label> labels;
    std::vector<remote::Sample> samples;
    for (const ExportSeries& one : series) {
        auto parsed = storage::parse_series_key(one.key);
        if (!parsed.is_ok()) {
            if (skipped) ++*skipped;
            continue;
        }
        auto& [measurement, tags] = parsed.value();
        owned.clear();
        owned.emplace_back("__name__", prometheus_metric_name(measurement + one.name_suffix));
        for (auto& [name, value] : tags)
            owned.emplace_back(prometheus_label_name(name), std::move(value));
        std::sort(owned.begin(), owned.end(),
                  [](const auto& a, const auto& b) { return a.first < b.first; });
        labels.clear();
        for (const auto& [name, value] : owned)
            labels.push_back({name, value});
        samples.clear();
        for (std::size_t i = 0; i < one.timestamps_ms.size(); ++i)
            samples.push_back({one.values[i], one.timestamps_ms[i]});
        remote::SeriesView view{labels, samples};
        remote::encode_write_request(protobuf, std::span<const remote::SeriesView>(&view, 1));
    }
}

std::string encode_remote_write_body(std::span<const ExportSeries> series, std::size_t* skipped) {
    std::string protobuf;
    encode_write_request(series, protobuf, skipped);
    std::string body;
    remote::snappy_compress(protobuf, body);
    return body;
}

}  // namespace citygate::exports
