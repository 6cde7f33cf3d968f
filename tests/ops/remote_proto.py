"""Prometheus remote write / read messages by hand (no generated code): enough of the protobuf
wire format for prometheus.WriteRequest, ReadRequest and ReadResponse. Shared by
tests/ops/prometheus_remote.py and bench/remote_write_compare.py."""

import struct


def _varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number, wire_type):
    return _varint((number << 3) | wire_type)


def _len_field(number, payload):
    return _field(number, 2) + _varint(len(payload)) + payload


def _labels(labels):
    out = b""
    for name in sorted(labels):
        label = _len_field(1, name.encode()) + _len_field(2, labels[name].encode())
        out += _len_field(1, label)
    return out


def encode_write_request(series):
    """series: [(labels dict, [(timestamp_ms, value), ...]), ...] -> WriteRequest bytes"""
    out = bytearray()
    for labels, samples in series:
        body = bytearray(_labels(labels))
        for ts, value in samples:
            sample = _field(1, 1) + struct.pack("<d", value) + _field(2, 0) + _varint(ts)
            body += _len_field(2, sample)
        out += _len_field(1, bytes(body))
    return bytes(out)


MATCH = {"=": 0, "!=": 1, "=~": 2, "!~": 3}


def encode_read_request(queries, accepted=(0,)):
    """queries: [(start_ms, end_ms, [(name, op, value), ...]), ...]"""
    out = bytearray()
    for start, end, matchers in queries:
        q = _field(1, 0) + _varint(start) + _field(2, 0) + _varint(end)
        for name, op, value in matchers:
            m = _field(1, 0) + _varint(MATCH[op]) + _len_field(2, name.encode()) + \
                _len_field(3, value.encode())
            q += _len_field(3, m)
        out += _len_field(1, q)
    if accepted:
        out += _len_field(2, b"".join(_varint(a) for a in accepted))
    return bytes(out)


def _fields(data):
    i = 0
    while i < len(data):
        key, i = _read_varint(data, i)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, i = _read_varint(data, i)
        elif wire_type == 1:
            value, i = data[i:i + 8], i + 8
        elif wire_type == 2:
            length, i = _read_varint(data, i)
            value, i = data[i:i + length], i + length
        elif wire_type == 5:
            value, i = data[i:i + 4], i + 4
        else:
            raise ValueError("wire type %d" % wire_type)
        yield number, value


def _read_varint(data, i):
    shift = result = 0
    while True:
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def decode_read_response(data):
    """ReadResponse bytes -> [[(labels dict, [(ts, value), ...]), ...] per query]"""
    results = []
    for number, result in _fields(data):
        if number != 1:
            continue
        series_list = []
        for n2, ts_bytes in _fields(result):
            if n2 != 1:
                continue
            labels, samples = {}, []
            for n3, part in _fields(ts_bytes):
                if n3 == 1:
                    kv = dict(_fields(part))
                    labels[kv.get(1, b"").decode()] = kv.get(2, b"").decode()
                elif n3 == 2:
                    value, ts = 0.0, 0
                    for n4, v in _fields(part):
                        if n4 == 1:
                            value = struct.unpack("<d", v)[0]
                        elif n4 == 2:
                            ts = v if v < (1 << 63) else v - (1 << 64)
                    samples.append((ts, value))
            series_list.append((labels, samples))
        results.append(series_list)
    return results
