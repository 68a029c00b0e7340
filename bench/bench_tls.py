"""What TLS costs the node (docs/security.md "TLS on the node"): the handshake's calls on the unix port
(the longest one is the pass the measuring loop loses), scaled to the ESP32 by the in-run pystone
ratio; the MicroPython heap of the TLS objects; and the MQTT node's live heap and lost samples over
the drive of tests/node/test_uplink_heap.py, with TLS and without (same key, same broker, its TLS listener
or its plain one).

    python bench/bench_tls.py [--rounds 5]

The broker: Mosquitto (or amqtt) with a test CA's certificate (tests/fleet_helpers.py). mbedTLS's
own buffers are not on MicroPython's heap (the C library's on this unix build, ESP-IDF's on the
ESP32): they are not in these figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

# one TLS link from the unix port (no simulated board): the MicroPython heap of the context and the
# socket, and the time of every write (each drives the handshake) until the CONNECT goes out
_PROBE = """
import gc, socket, select, time, tls, json
gc.collect(); f0 = gc.mem_free()
ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
ctx.verify_mode = tls.CERT_REQUIRED
with open(%(ca)r, "rb") as f:
    ctx.load_verify_locations(f.read())
gc.collect(); f1 = gc.mem_free()
s = socket.socket()
s.setblocking(False)
try:
    s.connect(socket.getaddrinfo("127.0.0.1", %(port)d)[0][-1])
except OSError:
    pass
p = select.poll(); p.register(s, select.POLLOUT); p.poll(5000)
gc.collect(); f2 = gc.mem_free()
ss = ctx.wrap_socket(s, server_hostname="127.0.0.1", do_handshake_on_connect=False)
gc.collect(); f3 = gc.mem_free()
con = b"\\x10\\x0c\\x00\\x04MQTT\\x04\\x02\\x00\\x3c\\x00\\x00"
calls = []
while True:
    t = time.ticks_us()
    r = ss.write(con)
    calls.append(time.ticks_diff(time.ticks_us(), t))
    if r:
        break
    time.sleep_ms(2)
b = bytearray(4)
while not ss.readinto(b):
    time.sleep_ms(2)
c = ss.cipher()[0]  # (before close: cipher() on a closed SSLSocket reads freed memory on this build)
ss.close()
print(json.dumps({"ctx": f0 - f1, "sock": f2 - f3, "calls": calls, "connack": list(b), "cipher": c}))
"""


def main() -> int:
    """Run the measurements and print them (module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="handshakes timed on the unix port")
    ap.add_argument("--no-drive", action="store_true", help="skip the node's drives (heap, samples)")
    a = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from fleet_helpers import TlsBroker, make_test_pki
    from roadnode.mpy import runtime
    from roadnode.mpy.runtime import ESP32_HEAP

    ratio = runtime.cpu_ratio()
    with tempfile.TemporaryDirectory() as d:
        pki = make_test_pki(Path(d) / "pki")
        b = TlsBroker(Path(d), pki)
        try:
            longest, totals, probe = [], [], None
            for _ in range(a.rounds):
                out = runtime.run_code(_PROBE % {"ca": pki["ca_der"], "port": b.tls_port}).stdout.decode()
                probe = json.loads(out.strip().splitlines()[-1])
                assert probe["connack"][0] == 0x20, probe
                longest.append(max(probe["calls"]))
                totals.append(sum(probe["calls"]))
            lm, tm = statistics.median(longest), statistics.median(totals)
            print(f"handshake on the unix port ({probe['cipher']}, EC P-256 test certificates, "
                  f"{a.rounds} rounds, median): longest call {lm / 1000:.1f} ms, all calls {tm / 1000:.1f} ms, "
                  f"{len(probe['calls'])} calls")
            print(f"  scaled by the pystone ratio ({ratio:.0f}): longest pass ~{lm * ratio / 1e6:.2f} s on the "
                  f"ESP32 (an upper bound: mbedTLS is C, with the ESP32's crypto hardware)")
            print(f"MicroPython heap: SSLContext {probe['ctx']} B (kept), SSLSocket {probe['sock']} B per link")
            if a.no_drive:
                return 0
            from roadnode.scenario import make_scenario
            from roadnode.sim.offline import run_scenario

            sc = make_scenario(iso_class="C", length_m=800, speed_kmh=50, seed=3)
            ca = Path(pki["ca_der"]).read_bytes()
            for tls in (False, True):
                cfg = {"uplink": "mqtt", "wifi_ssid": "depot", "wifi_password": "roadnode", "mqtt_host": "127.0.0.1",
                       "mqtt_port": b.tls_port if tls else b.port, "device_id": 77, "heartbeat_s": 10,
                       "mqtt_tls": "on" if tls else "off"}
                r = run_scenario(sc, settings=cfg, key=bytes(range(16)), files={"ca.der": ca} if tls else None)
                h = r["heap"]
                used = h["total"] - h["sim"] - h["min_free"]
                print(f"MQTT node {'TLS  ' if tls else 'plain'}: live heap while measuring {used} B = "
                      f"{100 * used / ESP32_HEAP:.1f}% of {ESP32_HEAP}; {r['uplink']['connects']} connect(s), "
                      f"FIFO overflows {h['overflows']}, samples lost {h['lost']} of {h['produced']}")
        finally:
            b.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
