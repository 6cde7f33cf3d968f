// ReadingTags packing and the topic-first tag merge.
#include "protocols/payload/reading.hpp"

#include <algorithm>
#include <cassert>
#include <cstring>

namespace citygate::payload {
namespace {

std::size_t read_length(const char* at) {
    return static_cast<std::size_t>(static_cast<unsigned char>(at[0])) |
           (static_cast<std::size_t>(static_cast<unsigned char>(at[1])) << 8);
}

void append_length(std::string& out, std::size_t length) {
    out.push_back(static_cast<char>(length & 0xFF));
    out.push_back(static_cast<char>((length >> 8) & 0xFF));
}

}  // namespace

ReadingTags::value_type ReadingTags::iterator::operator*() const {
    std::size_t name_length = read_length(at_);
    const char* value = at_ + 2 + name_length;
    return {std::string_view(at_ + 2, name_length),
            std::string_view(value + 2, read_length(value))};
}

ReadingTags::iterator& ReadingTags::iterator::operator++() {
    const char* value = at_ + 2 + read_length(at_);
    at_ = value + 2 + read_length(value);
    return *this;
}

void ReadingTags::add(std::string_view name, std::string_view value) {
    assert(name.size() <= max_length && value.size() <= max_length);
    packed_.reserve(packed_.size() + 4 + name.size() + value.size());
    append_length(packed_, name.size());
    packed_.append(name);
    append_length(packed_, value.size());
    packed_.append(value);
}

std::size_t ReadingTags::size() const noexcept {
    return static_cast<std::size_t>(std::distance(begin(), end()));
}

std::optional<std::string_view> ReadingTags::find(std::string_view name) const noexcept {
    for (auto [tag, value] : *this)
        if (tag == name) return value;
    return std::nullopt;
}

std::size_t merge_tags(std::span<const std::pair<std::string_view, std::string_view>> topic_tags,
                       const ReadingTags& payload_tags,
                       std::vector<std::pair<std::string, std::string>>& out) {
    out.clear();
    for (const auto& [name, value] : topic_tags)
        out.emplace_back(name, value);
    std::size_t dropped = 0;
    for (auto [name, value] : payload_tags) {
        bool bound = std::any_of(topic_tags.begin(), topic_tags.end(),
                                 [name = name](const auto& tag) { return tag.first == name; });
        if (bound) {
            ++dropped;
            continue;
        }
        out.emplace_back(name, value);
    }
    return dropped;
}

Reading& Readings::emplace_back() {
    if (size_ == items_.size()) return items_.emplace_back(), items_[size_++];
    Reading& reading = items_[size_++];
    reading.measurement.clear();
    reading.value = 0;
    reading.timestamp_ms = 0;
    reading.tags.clear();
    return reading;
}

void Readings::erase(Reading* at) {
    std::rotate(at, at + 1, end());
    --size_;
}

void Readings::resize(std::size_t n) {
    if (n <= size_) {
        size_ = n;
        return;
    }
    while (size_ < n)
        emplace_back();
}

}  // namespace citygate::payload
