// What a decoded payload yields: readings (measurement, value, time, payload tags) and the count
// of fields skipped inside an otherwise good payload.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace citygate::payload {

// Tags a payload attaches to one reading: line protocol tags, the SenML unit. Topic tags are
// not here (see merge_tags). Packed into one string of length-prefixed names and values, so
// `unit=Cel` costs no allocation (small-string buffer) and a line's tags one per reading.
class ReadingTags {
  public:
    using value_type = std::pair<std::string_view, std::string_view>;
    // Names and values are at most this long; longer is a broken precondition.
    static constexpr std::size_t max_length = 0xFFFF;

    class iterator {
      public:
        using iterator_category = std::forward_iterator_tag;
        using value_type = ReadingTags::value_type;
        using difference_type = std::ptrdiff_t;
        using pointer = void;
        using reference = value_type;

        iterator() = default;
        value_type operator*() const;
        iterator& operator++();
        iterator operator++(int) {
            iterator before = *this;
            ++*this;
            return before;
        }
        bool operator==(const iterator& other) const { return at_ == other.at_; }

      private:
        friend class ReadingTags;
        explicit iterator(const char* at) : at_(at) {}
        const char* at_ = nullptr;
    };

    void add(std::string_view name, std::string_view value);
    void clear() noexcept { packed_.clear(); }
    bool empty() const noexcept { return packed_.empty(); }
    // The tags as stored: equal tags in equal order give equal bytes (a cache key).
    std::string_view packed() const noexcept { return packed_; }
    std::size_t size() const noexcept;
    // The value of the first tag called `name`, if any.
    std::optional<std::string_view> find(std::string_view name) const noexcept;

    iterator begin() const noexcept { return iterator(packed_.data()); }
    iterator end() const noexcept { return iterator(packed_.data() + packed_.size()); }

    bool operator==(const ReadingTags& other) const = default;

  private:
    std::string packed_;  // per tag: u16 name length, name, u16 value length, value
};

struct Reading {
    std::string measurement;
    double value = 0;
    std::int64_t timestamp_ms = 0;
    ReadingTags tags;  // from the payload; empty for JSON objects and plain numbers
};

// The readings decoders append to, reused from payload to payload: an element past size() keeps
// its strings' buffers, so a reading whose measurement or tags outgrow the small-string buffer
// (a device id tag does) allocates once per element ever used, not once per payload. Holds as
// many elements as the largest payload needed. Vector-like, for what decoders do with it.
class Readings {
  public:
    Readings() = default;
    explicit Readings(std::size_t n) { resize(n); }

    // A reading as a default-constructed one, at the end.
    Reading& emplace_back();
    void push_back(Reading&& reading) { emplace_back() = std::move(reading); }
    void pop_back() noexcept { --size_; }
    // Removes the reading at `at`; the later ones move up (its buffers go to the end, kept).
    void erase(Reading* at);
    void resize(std::size_t n);
    void clear() noexcept { size_ = 0; }

    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    Reading& operator[](std::size_t i) noexcept { return items_[i]; }
    const Reading& operator[](std::size_t i) const noexcept { return items_[i]; }
    const Reading& at(std::size_t i) const {
        if (i >= size_) throw std::out_of_range("Readings::at");
        return items_[i];
    }
    Reading& back() noexcept { return items_[size_ - 1]; }
    Reading* begin() noexcept { return items_.data(); }
    Reading* end() noexcept { return items_.data() + size_; }
    const Reading* begin() const noexcept { return items_.data(); }
    const Reading* end() const noexcept { return items_.data() + size_; }

  private:
    std::vector<Reading> items_;  // [0, size_) in use, the rest kept for their buffers
    std::size_t size_ = 0;
};

// Fields skipped inside an otherwise good payload, by why. Never stored.
struct SkippedFields {
    std::size_t non_numeric = 0;   // strings, booleans, null, arrays, objects, SenML vs/vb/vd
    std::size_t bad_name = 0;      // empty, overlong or (SenML) invalid names
    std::size_t out_of_range = 0;  // NaN, infinities, beyond a double or a 64-bit integer

    std::size_t total() const { return non_numeric + bad_name + out_of_range; }
};

// The tag set of a reading's series: `topic_tags` first, then each payload tag whose name the
// topic does not bind. Topic tags win because the topic is what authentication and the ACL
// checked (a device publishes only under its own topic); a tag in the payload must not move a
// reading into another device's or district's series. Replaces the contents of `out` (storage
// takes this type as its tag list). Returns how many payload tags were dropped for a clash.
std::size_t merge_tags(std::span<const std::pair<std::string_view, std::string_view>> topic_tags,
                       const ReadingTags& payload_tags,
                       std::vector<std::pair<std::string, std::string>>& out);

}  // namespace citygate::payload
