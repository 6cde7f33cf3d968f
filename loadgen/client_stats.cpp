// Drop reason names and summing of per-thread stats.
#include "loadgen/client_stats.hpp"

#include <algorithm>
#include <numeric>

namespace citygate::loadgen {

std::string_view drop_reason_name(DropReason reason) {
    switch (reason) {
        case DropReason::connect_error:
            return "connect_error";
        case DropReason::connect_timeout:
            return "connect_timeout";
        case DropReason::tls_handshake:
            return "tls_handshake";
        case DropReason::connack_refused:
            return "connack_refused";
        case DropReason::server_disconnect:
            return "server_disconnect";
        case DropReason::closed_by_server:
            return "closed_by_server";
        case DropReason::write_error:
            return "write_error";
        case DropReason::protocol_error:
            return "protocol_error";
        case DropReason::keepalive_timeout:
            return "keepalive_timeout";
    }
    return "unknown";
}

void StatsTotals::add(const PublisherStats& s, bool with_histograms) {
    attempts += s.attempts.get();
    connected += s.connected.get();
    reconnected += s.reconnected.get();
    connect_failed += s.connect_failed.get();
    open += s.open.get();
    sent += s.sent.get();
    acknowledged += s.acknowledged.get();
    negative_acks += s.negative_acks.get();
    protocol_errors += s.protocol_errors.get();
    disconnected_early += s.disconnected_early.get();
    unacknowledged += s.unacknowledged.get();
    pings += s.pings.get();
    last_connect_ns = std::max(last_connect_ns, s.last_connect_ns.get());
    for (std::size_t i = 0; i < drop_reason_count; ++i) {
        drops[i] += s.drops[i].get();
        reconnects[i] += s.reconnects[i].get();
    }
    if (with_histograms) {
        connack_latency.merge(s.connack_latency);
        ack_latency.merge(s.ack_latency);
        connack_by_second.merge(s.connack_by_second);
        ack_by_second.merge(s.ack_by_second);
    }
}

std::uint64_t StatsTotals::drops_total() const {
    return std::accumulate(drops.begin(), drops.end(), std::uint64_t{0});
}

}  // namespace citygate::loadgen
