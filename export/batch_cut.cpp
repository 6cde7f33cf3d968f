// The cut of a remote-write batch.
#include "export/batch_cut.hpp"

#include <algorithm>

namespace citygate::exports {

std::int64_t batch_cut(std::vector<std::int64_t>& timestamps, std::size_t limit, std::int64_t start,
                       std::int64_t end, std::int64_t granularity) {
    if (timestamps.size() <= limit) return end;
    // The (limit+1)-th smallest timestamp: cutting there leaves at most `limit` before it.
    auto nth = timestamps.begin() + static_cast<std::ptrdiff_t>(limit);
    std::nth_element(timestamps.begin(), nth, timestamps.end());
    std::int64_t cut = *nth;
    cut = start + (cut - start) / granularity * granularity;  // rollup cuts stay on minutes
    if (cut <= start) cut = std::min(end, start + granularity);
    return cut;
}

}  // namespace citygate::exports
