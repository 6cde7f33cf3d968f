#!/usr/bin/env python3
# Writes the small seed corpora under tests/fuzz/corpus/ from hand-checked packet vectors.
import os

HERE = os.path.dirname(os.path.abspath(__file__))

def h(text):
    return bytes.fromhex("".join(text.split()))

def s(text):
    return text.encode().hex()

V3 = {
    "connect": "10 10 0004" + s("MQTT") + "04 02 003c 0004" + s("dev1"),
    "connect_full": "10 2a 0004" + s("MQTT") + "04 ee 003c 0002" + s("id") + "0005" + s("w/top")
        + "0004" + s("gone") + "0005" + s("alice") + "0006" + s("secret"),
    "connack": "20 02 01 00",
    "publish0": "30 0a 0003" + s("a/b") + s("hello"),
    "publish1": "32 09 0003" + s("a/b") + "0001" + s("hi"),
    "publish2": "3d 09 0003" + s("a/b") + "0002" + s("hi"),
    "puback": "40 02 0001",
    "pubrec": "50 02 0002",
    "pubrel": "62 02 0002",
    "pubcomp": "70 02 0002",
    "subscribe": "82 0e 000a 0003" + s("a/+") + "01 0003" + s("b/#") + "02",
    "suback": "90 04 000a 01 80",
    "unsubscribe": "a2 07 000b 0003" + s("a/+"),
    "unsuback": "b0 02 000b",
    "pingreq": "c0 00",
    "pingresp": "d0 00",
    "disconnect": "e0 00",
}

V5 = {
    "connect": "10 11 0004" + s("MQTT") + "05 02 003c 00 0004" + s("dev1"),
    "connect_props": "10 35 0004" + s("MQTT") + "05 c6 001e"
        + "0d 11 0000000a 21 0010 27 00001000"       # session expiry, receive max, max packet
        + "0000"                                     # empty client id
        + "07 01 01 18 00000005"                     # will: payload utf8, delay 5
        + "0003" + s("w/t") + "0002" + s("by")
        + "0003" + s("bob") + "0003" + s("pwd"),
    "connack": "20 10 00 00 0d 21 0100 22 0040 27 00040000 29 00",
    "publish_alias": "32 13 0003" + s("a/b") + "0001 0a 23 0001 26 0001" + s("k") + "0001" + s("v")
        + s("x"),
    "publish_aliased": "30 07 0000 03 23 0001" + s("y"),
    "publish_props": "34 23 0003" + s("a/b") + "0003 19 01 01 02 0000003c 03 0004" + s("json")
        + "08 0003" + s("r/t") + "09 0002 0102" + s("{}"),
    "puback_reason": "40 03 0001 10",
    "pubrec_props": "50 0b 0002 80 07 1f 0004" + s("full"),
    "pubrel": "62 02 0002",
    "pubcomp_nf": "70 03 0002 92",
    "subscribe": "82 1a 000a 02 0b 05 0003" + s("a/+") + "2d 000c" + s("$share/g/x/#") + "01",
    "suback": "90 06 000a 00 00 01 a2",
    "unsubscribe": "a2 08 000b 00 0003" + s("a/+"),
    "unsuback": "b0 05 000b 00 00 11",
    "pingreq": "c0 00",
    "disconnect_reason": "e0 01 04",
    "disconnect_props": "e0 0b 80 09 1f 0006" + s("bye!!!"),
    "auth": "f0 0d 18 0b 15 0004" + s("SCRM") + "16 0001 ff",
}

def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

for name, text in V3.items():
    write("mqtt_parser_fuzz", "v3_" + name, b"\x00" + h(text))
for name, text in V5.items():
    write("mqtt_parser_fuzz", "v5_" + name, b"\x01" + h(text))

def feed(data):
    out = b""
    while data:
        chunk, data = data[:64], data[64:]
        out += bytes([len(chunk) - 1]) + chunk
    return out

def session(version, packets, ops=b""):
    table = V5 if version == 5 else V3
    stream = h(table["connect"]) + b"".join(h(table[p]) for p in packets)
    return feed(stream) + ops

write("mqtt_session_fuzz", "v3_qos", b"\x07" + session(3, ["publish0", "publish1", "publish2"],
      b"\xf1\xf0" + feed(h(V3["pubrel"])) + feed(h(V3["pingreq"]))))
write("mqtt_session_fuzz", "v3_sub", b"\x07" + session(3, ["subscribe", "unsubscribe", "disconnect"]))
write("mqtt_session_fuzz", "v5_qos", b"\x0f" + session(5, ["publish_alias", "publish_aliased",
      "publish_props"], b"\xf0\xf4" + feed(h(V5["pubrel"])) + b"\xf8"))
write("mqtt_session_fuzz", "v5_sub", b"\x8f" + session(5, ["subscribe", "unsubscribe",
      "disconnect_reason"]))
write("mqtt_session_fuzz", "v5_connect_props", b"\x0f" + feed(h(V5["connect_props"])) + b"\xfa")
write("mqtt_session_fuzz", "timeout", b"\x00\xf9")

# http_query_fuzz: request targets of the query endpoints (path?query, encoded as sent).
HTTP = {
    "raw": "/api/v1/query_range?series=pm25%7Bdistrict%3D%22pudong%22%7D&start=1000&end=2000",
    "step": "/api/v1/query_range?series=pm25&start=0&end=240000000000&step=60000",
    "group": "/api/v1/query_range?match=%7B__name__%3D~%22pm.*%22%2Ctype!~%22a%7Cb%22%7D"
        "&start=1&end=3600000&step=5m&function=rate&group_by=district,type&source=raw",
    "series": "/api/v1/series?match=pm25%7Bdevice%3D~%22(a%2B)%2B%24%22%7D",
    "labels": "/api/v1/labels/__name__/values?match=%7Bdistrict!%3D%22%22%7D",
    "export": "/api/v1/export?series=pm10&start=-5&end=9223372036854775807&format=jsonl&rollup=1h",
    # found by hand, not by 60 s of fuzzing: step's ms overflowed int64 in parse_duration (UBSan)
    "step_overflow": "/api/v1/query_range?series=a&start=0&end=1&step=99999999999999d",
}
for name, text in HTTP.items():
    write("http_query_fuzz", name, text.encode())
