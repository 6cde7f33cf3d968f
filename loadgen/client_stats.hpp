// Counters of one I/O thread's simulated sensors. Each thread owns one PublisherStats and is its
// only writer; the progress line and timeline read the counters live from another thread, the
// histograms only after the threads have joined.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>

#include "loadgen/latency_histogram.hpp"
#include "loadgen/latency_timeline.hpp"

namespace citygate::loadgen {

// Single writer, any reader: a relaxed load and store instead of a locked add, so counting costs
// the owning thread nothing.
class Counter {
  public:
    void add(std::uint64_t n = 1) {
        value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    void subtract(std::uint64_t n = 1) {
        value_.store(value_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
    }
    void set(std::uint64_t n) { value_.store(n, std::memory_order_relaxed); }
    std::uint64_t get() const { return value_.load(std::memory_order_relaxed); }

  private:
    std::atomic<std::uint64_t> value_{0};
};

// Why a connection (or an attempt at one) ended other than by our own DISCONNECT.
enum class DropReason : std::uint8_t {
    connect_error,      // TCP connect or socket setup failed (refused, no ports left, ...)
    connect_timeout,    // no CONNACK within the connect timeout
    tls_handshake,      // TLS handshake failed (certificate, protocol)
    connack_refused,    // CONNACK with a failure reason code
    server_disconnect,  // the server sent DISCONNECT (MQTT 5)
    closed_by_server,   // end of stream or reset without DISCONNECT
    write_error,        // a write failed
    protocol_error,     // the server sent something the codec or the client flow refuses
    keepalive_timeout,  // PINGREQs went unanswered
};
inline constexpr std::size_t drop_reason_count = 9;
std::string_view drop_reason_name(DropReason reason);

struct alignas(64) PublisherStats {
    Counter attempts;            // connection attempts, first ones and reconnects
    Counter connected;           // clients whose first connection got a CONNACK
    Counter reconnected;         // later CONNACKs after a drop
    Counter connect_failed;      // clients that never connected (gave up)
    Counter open;                // connections open right now
    Counter sent;                // PUBLISH packets queued, retransmissions excluded
    Counter acknowledged;        // PUBACK/PUBCOMP received; for QoS 0: written
    Counter negative_acks;       // v5 reason code >= 0x80
    Counter protocol_errors;     // anything the client flow refused
    Counter disconnected_early;  // clients lost after connecting and not brought back
    Counter unacknowledged;      // messages in flight when their connection was lost
    Counter pings;               // PINGREQs sent
    Counter last_connect_ns;     // steady clock at the latest first CONNACK
    std::array<Counter, drop_reason_count> drops;       // each drop, by reason
    std::array<Counter, drop_reason_count> reconnects;  // by why the connection was lost
    LatencyHistogram connack_latency;
    LatencyHistogram ack_latency;
    LatencyTimeline connack_by_second;  // the same samples, per second of the run
    LatencyTimeline ack_by_second;
};

// A plain sum of several threads' stats, taken after they have joined (or, for the counters
// only, at any time).
struct StatsTotals {
    std::uint64_t attempts = 0, connected = 0, reconnected = 0, connect_failed = 0, open = 0,
                  sent = 0, acknowledged = 0, negative_acks = 0, protocol_errors = 0,
                  disconnected_early = 0, unacknowledged = 0, pings = 0,
                  last_connect_ns = 0;  // the latest over the threads
    std::array<std::uint64_t, drop_reason_count> drops{}, reconnects{};
    LatencyHistogram connack_latency, ack_latency;
    LatencyTimeline connack_by_second, ack_by_second;

    // Adds the counters; the histograms and timelines too when `with_histograms` (the writer has
    // stopped).
    void add(const PublisherStats& stats, bool with_histograms);
    std::uint64_t drops_total() const;
};

}  // namespace citygate::loadgen
