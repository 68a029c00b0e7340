"""Packet codec: one module, run by the node (MicroPython) and the host (CPython). See docs/packets.md.

Little-endian. Header (6 bytes): version<<4 | type, seq u16, device id u24. Body by type. Trailer:
CRC-16/CCITT-FALSE over header + body. Version 1. A decoder accepts a body longer than it knows
(fields are only ever appended within a version) and refuses a newer version.

The device encodes into preallocated buffers with struct.pack_into (no per-field allocation);
Decoding lives in rnfw.packet_decode (host and tests), off the node's heap.
"""

import struct

from micropython import const

from rnfw.crc import crc16

VERSION = const(1)
# the layout: private constants (nothing of them is left on the node's heap); rnfw.packet_decode keeps
# the same numbers (tests/firmware/test_firmware_consts.py, and the golden vectors of tests/firmware/test_packet.py)
_T_SEGMENT = const(1)
_T_EVENT = const(2)
_T_STATUS = const(3)
_T_REPLY = const(4)
T_REQUEST = const(5)  # host -> node, see rnfw.protocol

_HDR = const(6)
_CRC_LEN = const(2)
_SEG_BODY = const(16)
_EVT_BODY = const(15)
_STA_BODY = const(51)
_SC_BODY = const(56)  # with the self-calibration's fields (appended after 0.4)
_REPLY_MAX = const(200)
_SEG_LEN = const(24)  # _HDR + _SEG_BODY + _CRC_LEN
_EVT_LEN = const(23)
_STA_LEN = const(59)

_IRI_NA = const(0xFFFF)  # no IRI for this segment (never a made-up number)
# (the segment's quality flags are the estimator's, rnfw.estimator; docs/packets.md)
RESET_REASONS = ("unknown", "power_on", "deliberate", "watchdog", "crash", "soft", "brownout", "deepsleep")
# why the node could not start normally (this boot, in safe mode; or the boot before a reset)
BOOT_ERRORS = ("none", "board_missing", "board_invalid", "bus", "memory", "config", "other")

_LAT_OFF = const(9000000)  # 1e-5 degree offsets: lat 25 bits, lon 26 bits, packed in 7 bytes
_LON_OFF = const(18000000)


def _header(buf, t, seq, device_id):
    struct.pack_into("<BHHB", buf, 0, (VERSION << 4) | t, seq & 0xFFFF, device_id & 0xFFFF, (device_id >> 16) & 0xFF)


def _finish(buf, n):
    c = crc16(buf, n)
    buf[n] = c & 0xFF
    buf[n + 1] = c >> 8
    return n + _CRC_LEN


def _put_pos(buf, off, lat_e7, lon_e7):
    # round to 1e-5 degree (~1 m): enough for a segment on a map, and 7 bytes instead of 8
    la = (lat_e7 + 50) // 100 + _LAT_OFF
    lo = (lon_e7 + 50) // 100 + _LON_OFF
    if la < 0 or la > 2 * _LAT_OFF or lo < 0 or lo > 2 * _LON_OFF:
        la, lo = 0x1FFFFFF, 0x3FFFFFF  # "no position"
    # 51 bits: la in bits 0-24, lo in bits 25-50; split so no intermediate exceeds 31 bits
    buf[off] = la & 0xFF
    buf[off + 1] = (la >> 8) & 0xFF
    buf[off + 2] = (la >> 16) & 0xFF
    buf[off + 3] = ((la >> 24) & 0x01) | ((lo & 0x7F) << 1)
    buf[off + 4] = (lo >> 7) & 0xFF
    buf[off + 5] = (lo >> 15) & 0xFF
    buf[off + 6] = (lo >> 23) & 0x07


def _sat(v, hi):
    return 0 if v < 0 else (hi if v > hi else v)


def encode_segment(buf, seq, device_id, index, length_m, lat_e7, lon_e7, iri_cmkm, rms_cg, peak_dg, speed_kmh, flags):
    """iri_cmkm: IRI in 0.01 m/km or 0xFFFF (none); rms in 0.01 g; peak in 0.1 g. Returns 24."""
    _header(buf, _T_SEGMENT, seq, device_id)
    struct.pack_into("<HB", buf, _HDR, index & 0xFFFF, _sat((length_m + 5) // 10, 255))
    _put_pos(buf, _HDR + 3, lat_e7, lon_e7)
    struct.pack_into("<HBBBB", buf, _HDR + 10, iri_cmkm if iri_cmkm == _IRI_NA else _sat(iri_cmkm, 0xFFFE),
                     _sat(rms_cg, 255), _sat(peak_dg, 255), _sat(speed_kmh, 255), flags & 0xFF)
    return _finish(buf, _HDR + _SEG_BODY)


def encode_event(buf, seq, device_id, kind, peak_dg, lat_e7, lon_e7, dist_m, speed_kmh, tod_s):
    """Encode an event packet (a bump or pothole, its peak, place, speed and time of day) into ``buf``;
    returns its length."""
    _header(buf, _T_EVENT, seq, device_id)
    struct.pack_into("<BB", buf, _HDR, kind, _sat(peak_dg, 255))
    _put_pos(buf, _HDR + 2, lat_e7, lon_e7)
    struct.pack_into("<HBBH", buf, _HDR + 9, dist_m & 0xFFFF, (dist_m >> 16) & 0xFF, _sat(speed_kmh, 255),
                     _sat(tod_s // 2, 0xFFFF))
    return _finish(buf, _HDR + _EVT_BODY)


def encode_status(buf, seq, device_id, v, full=True):
    """v: a sequence of the STATUS_FIELDS values in order (see docs/packets.md; the six
    self-calibration values last, when given: 64 bytes). ``full`` False
    leaves out the uplink's fields (appended in 0.4): 47 bytes, within a LoRaWAN DR0-2 payload
    (51); decoders read a short heartbeat as from an older node (those fields null)."""
    _header(buf, _T_STATUS, seq, device_id)
    o = _HDR
    struct.pack_into("<IBBBBH", buf, o, v[0], v[1], v[2], v[3], v[4], _sat(v[5], 0xFFFF))
    o += 10
    for i in (6, 7):  # free / min free heap, u24
        x = _sat(v[i], 0xFFFFFF)
        struct.pack_into("<HB", buf, o, x & 0xFFFF, x >> 16)
        o += 3
    struct.pack_into("<HHBBHHHHHB", buf, o, _sat(v[8], 0xFFFF), _sat(v[9], 0xFFFF), _sat(v[10], 255),
                     _sat(v[11], 255), _sat(v[12], 0xFFFF), _sat(v[13], 0xFFFF), v[14] & 0xFFFF,
                     _sat(v[15], 0xFFFF), _sat(v[16], 0xFFFF), v[17] & 0xFF)
    o += 17
    struct.pack_into("<HBHB", buf, o, _sat(v[18], 0xFFFF), _sat(v[19], 255), _sat(v[20], 0xFFFF), v[21] & 0xFF)
    o += 6
    if not full:
        return _finish(buf, o)
    # the uplink (0.4): queue depth and drops (u24), link state, reconnects, last ack age, torn records
    for i in (22, 23):
        x = _sat(v[i], 0xFFFFFF)
        struct.pack_into("<HB", buf, o, x & 0xFFFF, x >> 16)
        o += 3
    struct.pack_into("<BHHB", buf, o, v[24] & 0xFF, _sat(v[25], 0xFFFF), _sat(v[26], 0xFFFF), _sat(v[27], 255))
    if len(v) < 34:
        return _finish(buf, _HDR + _STA_BODY)
    # self-calibration (rnfw.selfcal): state (bits 0-1) and windows / 2 (bits 2-7, at most 63),
    # wheel_hop_hz x10, wheel_damping x200, body_hz x50, mass_ratio x10: 64 bytes in all
    struct.pack_into("<BBBBB", buf, _HDR + _STA_BODY, (v[28] & 3) | (_sat(v[29] >> 1, 63) << 2), _sat(v[30], 255),
                     _sat(v[31], 255), _sat(v[32], 255), _sat(v[33], 255))
    return _finish(buf, _HDR + _SC_BODY)


def encode_reply(buf, seq, device_id, req, status, payload, n=-1):
    """Encode the console's reply to request ``req`` (status byte, ``n`` bytes of payload) into ``buf``;
    returns its length."""
    if n < 0:
        n = len(payload)
    if n > _REPLY_MAX:
        raise ValueError("reply payload too long")
    _header(buf, _T_REPLY, seq, device_id)
    buf[_HDR] = req & 0xFF
    buf[_HDR + 1] = status & 0xFF
    buf[_HDR + 2] = n
    for i in range(n):
        buf[_HDR + 3 + i] = payload[i]
    return _finish(buf, _HDR + 3 + n)
