// snappy and zlib behind the decoders' output bounds.
#include "protocols/remote/compression.hpp"

#include <snappy.h>
#include <zlib.h>

namespace citygate::remote {

DecodeStatus snappy_uncompress(std::string_view in, std::size_t max_bytes, std::string& out) {
    out.clear();
    std::size_t length = 0;
    if (!snappy::GetUncompressedLength(in.data(), in.size(), &length)) return DecodeStatus::corrupt;
    if (length > max_bytes) return DecodeStatus::too_large;
    out.resize(length);
    if (!snappy::RawUncompress(in.data(), in.size(), out.data())) {
        out.clear();
        return DecodeStatus::corrupt;
    }
    return DecodeStatus::ok;
}

void snappy_compress(std::string_view in, std::string& out) {
    out.resize(snappy::MaxCompressedLength(in.size()));
    std::size_t length = 0;
    snappy::RawCompress(in.data(), in.size(), out.data(), &length);
    out.resize(length);
}

DecodeStatus gzip_uncompress(std::string_view in, std::size_t max_bytes, std::string& out) {
    out.clear();
    z_stream stream{};
    if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK) return DecodeStatus::corrupt;
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    stream.avail_in = static_cast<uInt>(in.size());
    DecodeStatus status = DecodeStatus::ok;
    constexpr std::size_t step = 64 * 1024;
    for (;;) {
        std::size_t have = out.size();
        if (have >= max_bytes + 1) {
            status = DecodeStatus::too_large;
            break;
        }
        std::size_t room = std::min(step, max_bytes + 1 - have);
        out.resize(have + room);
        stream.next_out = reinterpret_cast<Bytef*>(out.data() + have);
        stream.avail_out = static_cast<uInt>(room);
        int rc = inflate(&stream, Z_NO_FLUSH);
        out.resize(have + room - stream.avail_out);
        if (rc == Z_STREAM_END) {
            if (stream.avail_in == 0) break;
            // Another gzip member follows.
            if (inflateReset(&stream) != Z_OK) {
                status = DecodeStatus::corrupt;
                break;
            }
            continue;
        }
        if (rc == Z_BUF_ERROR && stream.avail_in == 0) {  // input ends inside a member
            status = DecodeStatus::corrupt;
            break;
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            status = DecodeStatus::corrupt;
            break;
        }
    }
    inflateEnd(&stream);
    if (status == DecodeStatus::ok && out.size() > max_bytes) status = DecodeStatus::too_large;
    if (status != DecodeStatus::ok) out.clear();
    return status;
}

std::string gzip_compress(std::string_view in) {
    z_stream stream{};
    deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
    std::string out(deflateBound(&stream, static_cast<uLong>(in.size())), '\0');
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    stream.avail_in = static_cast<uInt>(in.size());
    stream.next_out = reinterpret_cast<Bytef*>(out.data());
    stream.avail_out = static_cast<uInt>(out.size());
    deflate(&stream, Z_FINISH);
    out.resize(out.size() - stream.avail_out);
    deflateEnd(&stream);
    return out;
}

}  // namespace citygate::remote
