"""Packet codec: one module, run by the node (MicroPython) and the host (CPython). See docs/packets.md.

Little-endian. Header (6 bytes): version<<4 | type, seq u16, device id u24. Body by type. Trailer:
CRC-16/CCITT-FALSE over header + body. Version 1. A decoder accepts a body longer than it knows
(fields are only ever appended within a version) and refuses a newer version.

The device encodes into preallocated buffers with struct.pack_into (no per-field allocation);
decode() builds a dict and is meant for the host and tests.
"""

import struct

from micropython import const

from rnfw.crc import crc16

VERSION = const(1)
_T_SEGMENT = const(1)
_T_EVENT = const(2)
_T_STATUS = const(3)
_T_REPLY = const(4)
TYPE_NAMES = {1: "segment", 2: "event", 3: "status", 4: "reply"}

_HDR = const(6)
_CRC_LEN = const(2)
_SEG_BODY = const(16)
_EVT_BODY = const(15)
_STA_BODY = const(36)
_REPLY_MAX = const(200)
_SEG_LEN = const(24)  # _HDR + _SEG_BODY + _CRC_LEN
_EVT_LEN = const(23)
_STA_LEN = const(44)

IRI_NA = const(0xFFFF)  # no IRI for this segment (never a made-up number)

# segment quality flags
F_BELOW_MIN_SPEED = const(0x01)
F_STOPPED = const(0x02)
F_GPS_LOST = const(0x04)
F_FIFO_OVERFLOW = const(0x08)
F_CLIPPING = const(0x10)
F_PARTIAL = const(0x20)
F_BODY_MOUNT = const(0x40)
F_IMU_FAULT = const(0x80)
SEG_FLAGS = ("below_min_speed", "stopped", "gps_lost", "fifo_overflow", "clipping", "partial", "body_mount", "imu_fault")
EVENT_KINDS = ("bump", "pothole")
RESET_REASONS = ("unknown", "power_on", "deliberate", "watchdog", "crash", "soft", "brownout", "deepsleep")
STATUS_FLAGS = ("config_fallback", "imu_fault", "gps_fix", "wdt_armed")

_LAT_OFF = const(9000000)  # 1e-5 degree offsets: lat 25 bits, lon 26 bits, packed in 7 bytes
_LON_OFF = const(18000000)


class PacketError(ValueError):
    pass


def _header(buf, ptype, seq, device_id):
    struct.pack_into("<BHHB", buf, 0, (VERSION << 4) | ptype, seq & 0xFFFF, device_id & 0xFFFF, (device_id >> 16) & 0xFF)


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


def _get_pos(b, off):
    la = b[off] | (b[off + 1] << 8) | (b[off + 2] << 16) | ((b[off + 3] & 1) << 24)
    lo = (b[off + 3] >> 1) | (b[off + 4] << 7) | (b[off + 5] << 15) | ((b[off + 6] & 0x07) << 23)
    if la == 0x1FFFFFF or lo == 0x3FFFFFF:
        return None, None
    return (la - _LAT_OFF) / 1e5, (lo - _LON_OFF) / 1e5


def _sat(v, hi):
    return 0 if v < 0 else (hi if v > hi else v)


def encode_segment(buf, seq, device_id, index, length_m, lat_e7, lon_e7, iri_cmkm, rms_cg, peak_dg, speed_kmh, flags):
    """iri_cmkm: IRI in 0.01 m/km or IRI_NA; rms in 0.01 g; peak in 0.1 g. Returns 24."""
    _header(buf, _T_SEGMENT, seq, device_id)
    struct.pack_into("<HB", buf, _HDR, index & 0xFFFF, _sat((length_m + 5) // 10, 255))
    _put_pos(buf, _HDR + 3, lat_e7, lon_e7)
    struct.pack_into("<HBBBB", buf, _HDR + 10, iri_cmkm if iri_cmkm == IRI_NA else _sat(iri_cmkm, 0xFFFE),
                     _sat(rms_cg, 255), _sat(peak_dg, 255), _sat(speed_kmh, 255), flags & 0xFF)
    return _finish(buf, _HDR + _SEG_BODY)


def encode_event(buf, seq, device_id, kind, peak_dg, lat_e7, lon_e7, dist_m, speed_kmh, tod_s):
    _header(buf, _T_EVENT, seq, device_id)
    struct.pack_into("<BB", buf, _HDR, kind, _sat(peak_dg, 255))
    _put_pos(buf, _HDR + 2, lat_e7, lon_e7)
    struct.pack_into("<HBBH", buf, _HDR + 9, dist_m & 0xFFFF, (dist_m >> 16) & 0xFF, _sat(speed_kmh, 255),
                     _sat(tod_s // 2, 0xFFFF))
    return _finish(buf, _HDR + _EVT_BODY)


def encode_status(buf, seq, device_id, v):
    """v: a sequence of the STATUS_FIELDS values in order (see docs/packets.md)."""
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
    struct.pack_into("<HB", buf, o, _sat(v[18], 0xFFFF), _sat(v[19], 255))
    return _finish(buf, _HDR + _STA_BODY)


# order of the values given to encode_status (names are the decoded keys)
STATUS_FIELDS = (
    "uptime_s", "fw_major", "fw_minor", "fw_patch", "reset_reason", "unexpected_reboots",
    "free_heap", "min_free_heap", "fifo_overflows", "i2c_errors", "gps_fix", "gps_sats", "gps_hdop_c",
    "nmea_checksum_errors", "packets_sent", "packets_queued", "supply_mv", "flags", "samples_lost",
    "heartbeat_s",
)


def encode_reply(buf, seq, device_id, req_id, status, payload, n=-1):
    if n < 0:
        n = len(payload)
    if n > _REPLY_MAX:
        raise PacketError("reply payload too long")
    _header(buf, _T_REPLY, seq, device_id)
    buf[_HDR] = req_id & 0xFF
    buf[_HDR + 1] = status & 0xFF
    buf[_HDR + 2] = n
    for i in range(n):
        buf[_HDR + 3 + i] = payload[i]
    return _finish(buf, _HDR + 3 + n)


def _flags(v, names):
    return [names[i] for i in range(len(names)) if v & (1 << i)]


def decode(data):
    """Decode one packet to a dict; raises PacketError (only) for anything wrong."""
    try:
        b = bytes(data)
    except Exception:
        raise PacketError("not bytes")
    n = len(b)
    if n < _HDR + _CRC_LEN:
        raise PacketError("truncated: %d bytes, a packet has at least %d" % (n, _HDR + _CRC_LEN))
    want = b[n - 2] | (b[n - 1] << 8)
    got = crc16(b, n - 2)
    if want != got:
        raise PacketError("CRC mismatch (corrupt or truncated): 0x%04X != 0x%04X" % (want, got))
    ver = b[0] >> 4
    ptype = b[0] & 0x0F
    if ver > VERSION:
        raise PacketError("packet version %d is newer than this decoder (%d): update roadnode" % (ver, VERSION))
    if ver < 1:
        raise PacketError("packet version %d is not valid" % ver)
    if ptype not in TYPE_NAMES:
        raise PacketError("unknown packet type %d" % ptype)
    seq, dlo, dhi = struct.unpack_from("<HHB", b, 1)
    d = {"type": TYPE_NAMES[ptype], "version": ver, "seq": seq, "device_id": dlo | (dhi << 16)}
    body = n - _HDR - _CRC_LEN
    need = {_T_SEGMENT: _SEG_BODY, _T_EVENT: _EVT_BODY, _T_STATUS: _STA_BODY, _T_REPLY: 3}[ptype]
    if body < need:
        raise PacketError("%s packet body is %d bytes, needs %d (truncated)" % (d["type"], body, need))
    o = _HDR
    if ptype == _T_SEGMENT:
        idx, lenx = struct.unpack_from("<HB", b, o)
        lat, lon = _get_pos(b, o + 3)
        iri, rms, peak, spd, fl = struct.unpack_from("<HBBBB", b, o + 10)
        seg_len = lenx * 10
        d.update({"seg_index": idx, "segment_length_m": seg_len, "start_m": idx * seg_len,
                  "end_m": (idx + 1) * seg_len, "lat": lat, "lon": lon,
                  "iri_m_per_km": None if iri == IRI_NA else iri / 100.0, "rms_g": rms / 100.0,
                  "peak_g": peak / 10.0, "speed_kmh": spd, "flags": _flags(fl, SEG_FLAGS)})
    elif ptype == _T_EVENT:
        kind, peak = struct.unpack_from("<BB", b, o)
        lat, lon = _get_pos(b, o + 2)
        dlo2, dhi2, spd, tod2 = struct.unpack_from("<HBBH", b, o + 9)
        d.update({"kind": EVENT_KINDS[kind] if kind < len(EVENT_KINDS) else "kind%d" % kind,
                  "peak_g": peak / 10.0, "lat": lat, "lon": lon, "dist_m": dlo2 | (dhi2 << 16),
                  "speed_kmh": spd, "tod_s": tod2 * 2})
    elif ptype == _T_STATUS:
        v = list(struct.unpack_from("<IBBBBH", b, o))
        o += 10
        for _ in range(2):
            lo16, hi8 = struct.unpack_from("<HB", b, o)
            v.append(lo16 | (hi8 << 16))
            o += 3
        v += list(struct.unpack_from("<HHBBHHHHHB", b, o))
        o += 17
        v += list(struct.unpack_from("<HB", b, o))
        for k, x in zip(STATUS_FIELDS, v):
            d[k] = x
        d["fw_version"] = "%d.%d.%d" % (v[1], v[2], v[3])
        r = v[4]
        d["reset_reason"] = RESET_REASONS[r] if r < len(RESET_REASONS) else "code%d" % r
        d["gps_hdop"] = v[12] / 100.0
        d["supply_mv"] = v[16] or None
        d["flags"] = _flags(v[17], STATUS_FLAGS)
        d["config_fallback"] = bool(v[17] & 1)
    else:
        req, st, ln = b[o], b[o + 1], b[o + 2]
        if body < 3 + ln:
            raise PacketError("reply payload says %d bytes, packet has %d" % (ln, body - 3))
        d.update({"req_id": req, "status": st, "payload": b[o + 3 : o + 3 + ln]})
    return d
