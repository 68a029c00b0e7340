"""`roadnode decode` through the CLI: hex, hex files, COBS frame captures, bad packets."""

from __future__ import annotations

import json
from pathlib import Path

from roadnode.mpy.fwimport import fw

GOLD = json.loads((Path(__file__).parents[1] / "golden" / "packets.json").read_text())["vectors"]


def test_hex_string(cli):
    r = cli("decode", GOLD[0]["hex"], "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["type"] == "segment" and d["iri_m_per_km"] == 3.45 and d["start_m"] == 300


def test_cobs_capture_with_noise_and_a_corrupt_frame(cli, tmp_path):
    C = fw("cobs")
    raw = bytearray(b"\x13\x37noise")
    for i, v in enumerate(GOLD):
        pkt = bytearray.fromhex(v["hex"])
        if i == 2:
            pkt[5] ^= 0xFF  # corrupted on the wire
        enc = bytearray(C.max_encoded(len(pkt)))
        n = C.encode(pkt, len(pkt), enc)
        raw += b"\x00" + enc[:n] + b"\x00"
    f = tmp_path / "cap.bin"
    f.write_bytes(bytes(raw))
    r = cli("decode", str(f), "--json")
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert r.returncode == 1  # one bad packet
    types = [x["type"] for x in rows]
    assert types.count("error") == 2  # the leading noise frame and the corrupted one
    assert [t for t in types if t != "error"] == ["segment", "segment", "status", "reply"]


def test_hex_file_and_table(cli, tmp_path):
    f = tmp_path / "pk.txt"
    f.write_text("# captured\n" + "\n".join(v["hex"] for v in GOLD) + "\n")
    r = cli("decode", str(f))
    assert r.returncode == 0 and "pothole" in r.stdout and "status" in r.stdout


def test_unreadable_input_exit_2(cli):
    r = cli("decode", "not-hex-or-file")
    assert r.returncode == 2 and "neither a file nor a hex string" in r.stderr


def test_request_packet_as_json(cli):
    """A request's arguments are bytes: shown as hex (JSON has no bytes; this used to crash)."""
    import base64

    line = bytes(fw("packet_decode").encode_request(3, 9, 4, 2, b"\x01xy"))
    r = cli("decode", base64.b64decode(line[1:].strip()).hex(), "--json")
    assert r.returncode == 0, r.stderr
    o = json.loads(r.stdout)
    assert o["type"] == "request" and o["args"] == "017879" and o["req_id"] == 4
