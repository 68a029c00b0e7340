"""The console protocol's format on both runtimes: the host encodes request lines (CPython), the
node decodes them (MicroPython); corrupted lines are refused, never misread."""

from __future__ import annotations

import binascii
import random

from roadnode.mpy import runtime
from roadnode.mpy.fwimport import fw

PD = fw("packet_decode")
P = fw("protocol")


def _lines():
    return [PD.encode_request(i, 7, i & 0xFF, 1 + i % 11, bytes(range(i % 40))) for i in range(50)]


def test_request_lines_are_printable_without_ctrl_c_or_nul():
    for line in _lines():
        assert line[:1] == b"#" and line.endswith(b"\n")
        assert all(32 <= c < 127 for c in line[:-1])  # no 0x03 (Ctrl-C), no 0x00 (frame end)


def test_micropython_decodes_host_requests_and_refuses_corrupt_ones():
    rng = random.Random(1)
    good = [line[1:-1] for line in _lines()]
    bad = []
    for line in good:
        b = bytearray(binascii.a2b_base64(line))
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)  # one flipped bit
        bad.append(binascii.b2a_base64(bytes(b)).strip())
    bad += [g[: len(g) // 2] for g in good[:10]]  # cut short
    code = f"""
import binascii
from rnfw import protocol
got = []
for g in {[x.decode() for x in good]!r}:
    r = protocol.decode_request(binascii.a2b_base64(g))
    got.append('-' if r is None else '%d/%d/%s' % (r[0], r[1], binascii.hexlify(bytes(r[2])).decode()))
print(' '.join(got))
rej = 0
for b in {[x.decode() for x in bad]!r}:
    try:
        raw = binascii.a2b_base64(b)
    except ValueError:
        rej += 1
        continue
    rej += protocol.decode_request(raw) is None
print(rej)
r = protocol.decode_request(binascii.a2b_base64({good[13].decode()!r}))
print(r[0], r[1], bytes(r[2]).hex())
"""
    out = runtime.run_code(code).stdout.decode().split("\n")
    # every request decodes to exactly what the host encoded (id, command, payload)
    assert out[0].split() == [f"{i & 0xFF}/{1 + i % 11}/{bytes(range(i % 40)).hex()}" for i in range(50)]
    assert int(out[1]) == len(bad)
    assert out[2] == f"13 {1 + 13 % 11} {bytes(range(13)).hex()}"


def test_host_decoder_reads_requests_too():
    d = PD.decode(binascii.a2b_base64(_lines()[5][1:-1]))
    assert d["type"] == "request" and d["req_id"] == 5 and d["cmd"] == 6 and d["device_id"] == 7
