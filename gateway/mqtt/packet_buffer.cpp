// Heap or mapped storage for one incomplete packet.
#include "gateway/mqtt/packet_buffer.hpp"

#include <sys/mman.h>

#include <new>
#include <utility>

namespace citygate::gateway {

PacketBuffer& PacketBuffer::operator=(PacketBuffer&& other) noexcept {
    if (this != &other) {
        release();
        data_ = std::exchange(other.data_, nullptr);
        size_ = std::exchange(other.size_, 0);
    }
    return *this;
}

PacketBuffer PacketBuffer::allocate(std::size_t size) {
    PacketBuffer buffer;
    if (size == 0 || size > UINT32_MAX) return buffer;
    if (size >= map_threshold) {
        void* memory =
            ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (memory == MAP_FAILED) return buffer;
        buffer.data_ = static_cast<std::uint8_t*>(memory);
    } else {
        buffer.data_ = new (std::nothrow) std::uint8_t[size];
        if (!buffer.data_) return buffer;
    }
    buffer.size_ = static_cast<std::uint32_t>(size);
    return buffer;
}

void PacketBuffer::release() noexcept {
    if (!data_) return;
    if (mapped()) {
        ::munmap(data_, size_);
    } else {
        delete[] data_;
    }
    data_ = nullptr;
    size_ = 0;
}

}  // namespace citygate::gateway
