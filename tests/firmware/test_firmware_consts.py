"""The numbers the node keeps as private constants (`_NAME = const(...)`: nothing of them is left on
its heap, where every public name is a qstr) equal the shared definitions the host uses: the console
protocol (rnfw.protocol), the packet layout (rnfw.packet / rnfw.packet_decode), the segment flags
(rnfw.estimator / rnfw.packet_decode), the batch header (rnfw.mqtt_uplink / rnfw.batch) and the
MQTT client's link states (rnfw.mqtt / rnfw.mqtt_uplink). The node-side modules that need the
hardware (console, mqtt_uplink) are read as source."""

from __future__ import annotations

import re
import struct

from roadnode.mpy.fwimport import fw
from roadnode.paths import FIRMWARE_DIR


def _consts(module: str) -> dict[str, int]:
    """`_NAME = const(EXPR)` of a firmware module's source, evaluated in order."""
    out: dict[str, int] = {}
    text = (FIRMWARE_DIR / "rnfw" / f"{module}.py").read_text()
    for name, expr in re.findall(r"^(_[A-Z][A-Z0-9_]*) = const\((.+?)\)(?:\s*#.*)?$", text, re.M):
        out[name] = eval(expr, {}, dict(out))  # noqa: S307 - the firmware's own constant expressions
    return out


def test_the_console_keeps_the_protocols_numbers():
    P = fw("protocol")
    c = _consts("console")
    names = ["MARK", "LINE_MAX", "WINDOW", "PAYLOAD_MAX", "PING", "STATUS", "CONFIG_GET", "CONFIG_SET", "CONFIG_RESET",
             "REPLAY_START", "REPLAY_GPS", "REPLAY_IMU", "REPLAY_END", "RESTART", "MANIFEST", "CAPTURE", "OK", "MORE",
             "BAD_VALUE", "BAD_STATE", "UNKNOWN", "FAILED", "DATA"]
    assert {n: c["_" + n] for n in names} == {n: getattr(P, n) for n in names}
    # the handlers' and the capture stream's own copies too
    for m in ("request", "capture"):
        own = {k[1:]: v for k, v in _consts(m).items() if k[1:] in names}
        assert own and own == {n: getattr(P, n) for n in own}, m
    pk = fw("packet")
    assert c["_REQUEST"] == pk.VERSION << 4 | pk.T_REQUEST
    # every request command and reply status the protocol defines is one the console knows
    public = {n for n in dir(P) if n.isupper() and isinstance(getattr(P, n), int)} - {"ARGS_MAX"}
    assert public == set(names)


def test_the_packet_layout_and_flags_are_one():
    pk, pd = fw("packet"), fw("packet_decode")
    for n in ("T_SEGMENT", "T_EVENT", "T_STATUS", "T_REPLY", "HDR", "CRC_LEN", "SEG_BODY", "EVT_BODY", "LAT_OFF",
              "LON_OFF", "IRI_NA"):
        assert getattr(pk, "_" + n) == getattr(pd, "_" + n if n != "IRI_NA" else n), n
    assert pk._STA_BODY == pd.STA_BODY
    est = _consts("estimator")
    flags = {n: v for n, v in est.items() if n.startswith("_F_")}
    assert [flags["_F_" + f.upper()] for f in pd.SEG_FLAGS] == [1 << i for i in range(8)]
    assert est["_IRI_NA"] == pd.IRI_NA


def test_the_uplink_writes_the_collectors_batch_header():
    B = fw("batch")
    up = _consts("mqtt_uplink")
    assert up["_HDR"] == B.HDR == struct.calcsize("<BIIIB")
    text = (FIRMWARE_DIR / "rnfw" / "mqtt_uplink.py").read_text()
    assert 'struct.pack_into("<BIIIB", b, 0, %d,' % B.FORMAT in text  # format 1, as rnfw.batch puts it
    assert 'struct.unpack("<II", payload)' in text and B.ACK_LEN == 8
    h = bytearray(B.HDR)
    B.put_header(h, 7, 5, 9, 3)
    assert bytes(h) == struct.pack("<BIIIB", B.FORMAT, 7, 5, 9, 3)
    M = fw("mqtt")
    assert (up["_UP"], up["_DOWN"]) == (M._UP, M._DOWN)


def test_the_mqtt_clients_poll_and_errno_numbers_are_the_platforms():
    """The client's private event and errno numbers: CPython's on Linux, and MicroPython's."""
    import errno
    import select

    from roadnode.mpy import runtime

    M = fw("mqtt")
    want = [M._IN, M._OUT, M._BAD, M._EAGAIN]
    assert want == [select.POLLIN, select.POLLOUT, select.POLLERR | select.POLLHUP, errno.EAGAIN]
    assert M._EINPROGRESS == errno.EINPROGRESS
    out = runtime.run_code("import select, errno\nprint(select.POLLIN, select.POLLOUT, select.POLLERR | select.POLLHUP, "
                           "errno.EAGAIN, errno.EINPROGRESS)").stdout.split()
    assert [int(x) for x in out] == want + [M._EINPROGRESS]
