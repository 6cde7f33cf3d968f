// The bytes of one incomplete MQTT packet, sized once to the whole packet so that later reads go
// straight behind what is held. Large buffers are mapped from the system directly: their memory
// goes back when they are freed (malloc would keep it for reuse), and pages count only once
// written, so a header promising 256 KiB costs what actually arrived.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace citygate::gateway {

class PacketBuffer {
  public:
    // At or above this size a buffer is mapped rather than taken from the heap.
    static constexpr std::size_t map_threshold = 64 * 1024;

    PacketBuffer() = default;
    ~PacketBuffer() { release(); }
    PacketBuffer(PacketBuffer&& other) noexcept : data_(other.data_), size_(other.size_) {
        other.data_ = nullptr;
        other.size_ = 0;
    }
    PacketBuffer& operator=(PacketBuffer&& other) noexcept;
    PacketBuffer(const PacketBuffer&) = delete;
    PacketBuffer& operator=(const PacketBuffer&) = delete;

    // `size` uninitialised bytes; an empty buffer if the system refuses the memory.
    static PacketBuffer allocate(std::size_t size);

    std::uint8_t* data() { return data_; }
    std::size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    bool mapped() const { return size_ >= map_threshold; }
    std::span<const std::uint8_t> bytes(std::size_t count) const { return {data_, count}; }

  private:
    void release() noexcept;

    std::uint8_t* data_ = nullptr;
    std::uint32_t size_ = 0;  // packets are at most 256 MiB
};

}  // namespace citygate::gateway
