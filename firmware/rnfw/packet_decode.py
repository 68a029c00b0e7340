"""The host's side of the wire formats: packet decoding and console request encoding (the node only
encodes packets and decodes requests: keeping this off the node saves ~5 KB of its heap). The
layout is rnfw.packet's (docs/packets.md); golden vectors hold the two together."""

import struct

from micropython import const

from rnfw import protocol as _P
from rnfw.batch import FORMAT as _BFORMAT, HDR as _BHDR
from rnfw.crc import crc16
from rnfw.packet import BOOT_ERRORS, RESET_REASONS, T_REQUEST as _T_REQUEST, VERSION

# rnfw.packet's layout (private constants there: the node keeps no names for them); the golden
# vectors (tests/firmware/test_packet.py: encoded by one module, decoded by the other) hold the two together
_T_SEGMENT = const(1)
_T_EVENT = const(2)
_T_STATUS = const(3)
_T_REPLY = const(4)
_HDR = const(6)
_CRC_LEN = const(2)
_SEG_BODY = const(16)
_EVT_BODY = const(15)
STA_BODY = const(51)
_LAT_OFF = const(9000000)
_LON_OFF = const(18000000)
IRI_NA = const(0xFFFF)

TYPE_NAMES = {1: "segment", 2: "event", 3: "status", 4: "reply", 5: "request"}
_STA_BODY = STA_BODY - 15  # the shortest status body accepted: fw 0.1's, before console_bad_frames

SEG_FLAGS = ("below_min_speed", "stopped", "gps_lost", "fifo_overflow", "clipping", "partial", "body_mount", "imu_fault")
EVENT_KINDS = ("bump", "pothole")
STATUS_FLAGS = ("config_fallback", "imu_fault", "gps_fix", "wdt_armed", "supply_at_rail", "safe_mode")
# the link byte of a heartbeat (0.4): WiFi state in bits 0-1, MQTT state in bits 2-3
WIFI_STATES = ("off", "connecting", "up", "failed")
MQTT_STATES = ("off", "down", "connecting", "up")


class PacketError(ValueError):
    """Bytes that are not a valid roadnode packet (length, version, type or CRC)."""



def _get_pos(b, off):
    la = b[off] | (b[off + 1] << 8) | (b[off + 2] << 16) | ((b[off + 3] & 1) << 24)
    lo = (b[off + 3] >> 1) | (b[off + 4] << 7) | (b[off + 5] << 15) | ((b[off + 6] & 0x07) << 23)
    if la == 0x1FFFFFF or lo == 0x3FFFFFF:
        return None, None
    return (la - _LAT_OFF) / 1e5, (lo - _LON_OFF) / 1e5



# order of the values given to encode_status (names are the decoded keys)
STATUS_FIELDS = (
    "uptime_s", "fw_major", "fw_minor", "fw_patch", "reset_reason", "unexpected_reboots",
    "free_heap", "min_free_heap", "fifo_overflows", "i2c_errors", "gps_fix", "gps_sats", "gps_hdop_c",
    "nmea_checksum_errors", "packets_sent", "packets_queued", "supply_mv", "flags", "samples_lost",
    "heartbeat_s", "console_bad_frames", "boot_error",
    "queue_depth", "queue_dropped", "link", "reconnects", "last_ack_s", "queue_torn",
)



SELF_CAL_STATES = ("off", "learning", "stored", "identified")


def _self_cal(sw, hop, damp, body, rho):
    """The heartbeat's self-calibration: state, windows it rests on (in 2s, 126 = 126 or more),
    the settings in force (null while learning or off)."""
    st = sw & 3
    d = {"state": SELF_CAL_STATES[st], "windows": (sw >> 2) * 2}
    on = st >= 2 and hop
    d.update({"wheel_hop_hz": hop / 10.0 if on else None, "wheel_damping": damp / 200.0 if on else None,
              "body_hz": body / 50.0 if on else None, "mass_ratio": rho / 10.0 if on else None})
    return d


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
    need = {_T_SEGMENT: _SEG_BODY, _T_EVENT: _EVT_BODY, _T_STATUS: _STA_BODY, _T_REPLY: 3, _T_REQUEST: 2}[ptype]
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
        o += 3
        # appended in 1.1: absent from older nodes' heartbeats
        v.append(struct.unpack_from("<H", b, o)[0] if body >= _STA_BODY + 2 else None)
        v.append(b[o + 2] if body >= _STA_BODY + 3 else None)  # boot_error, appended in 0.3
        o += 3
        if body >= _STA_BODY + 15:  # the uplink's fields, appended in 0.4
            for _ in range(2):
                lo16, hi8 = struct.unpack_from("<HB", b, o)
                v.append(lo16 | (hi8 << 16))
                o += 3
            v += list(struct.unpack_from("<BHHB", b, o))
        else:
            v += [None] * 6
        o = _HDR + STA_BODY
        # self-calibration, appended after 0.4: null from older nodes
        d["self_cal"] = _self_cal(*struct.unpack_from("<BBBBB", b, o)) if body >= STA_BODY + 5 else None
        for k, x in zip(STATUS_FIELDS, v):
            d[k] = x
        d["fw_version"] = "%d.%d.%d" % (v[1], v[2], v[3])
        r = v[4]
        d["reset_reason"] = RESET_REASONS[r] if r < len(RESET_REASONS) else "code%d" % r
        d["gps_hdop"] = v[12] / 100.0
        d["supply_mv"] = v[16] or None
        d["flags"] = _flags(v[17], STATUS_FLAGS)
        d["config_fallback"] = bool(v[17] & 1)
        e = v[21]
        d["boot_error"] = None if e is None else (BOOT_ERRORS[e] if e < len(BOOT_ERRORS) else "code%d" % e)
        lk = d.pop("link")
        d["wifi"] = None if lk is None else WIFI_STATES[lk & 3]
        d["mqtt"] = None if lk is None else MQTT_STATES[(lk >> 2) & 3]
        if d["last_ack_s"] == 0xFFFF:
            d["last_ack_s"] = None  # never acknowledged since boot (or longer ago than 18 h)
    elif ptype == _T_REQUEST:
        d.update({"req_id": b[o], "cmd": b[o + 1], "args": b[o + 2 : n - _CRC_LEN]})
    else:
        req, st, ln = b[o], b[o + 1], b[o + 2]
        if body < 3 + ln:
            raise PacketError("reply payload says %d bytes, packet has %d" % (ln, body - 3))
        d.update({"req_id": req, "status": st, "payload": b[o + 3 : o + 3 + ln]})
    return d


# ---- console requests (docs/protocol.md) ----
COMMANDS = ("", "ping", "status", "config_get", "config_set", "config_reset", "replay_start", "replay_gps",
            "replay_imu", "replay_end", "restart", "manifest")
STATUS_NAMES = ("ok", "more", "bad_value", "bad_state", "unknown_command", "failed")


def encode_request(seq, device_id, req_id, cmd, args=b""):
    """The request line (bytes) for the host to write."""
    import binascii

    if len(args) > _P.ARGS_MAX:
        raise ValueError("request arguments too long: %d bytes (max %d)" % (len(args), _P.ARGS_MAX))
    b = bytearray(8 + len(args) + 2)
    b[0] = (VERSION << 4) | _T_REQUEST
    b[1] = seq & 0xFF
    b[2] = (seq >> 8) & 0xFF
    b[3] = device_id & 0xFF
    b[4] = (device_id >> 8) & 0xFF
    b[5] = (device_id >> 16) & 0xFF
    b[6] = req_id & 0xFF
    b[7] = cmd & 0xFF
    b[8 : 8 + len(args)] = args
    c = crc16(b, 8 + len(args))
    b[-2] = c & 0xFF
    b[-1] = c >> 8
    return b"#" + binascii.b2a_base64(b).strip() + b"\n"


# ---- the MQTT uplink's batches (rnfw.batch, docs/uplink.md) ----------------------------------------
def encode_ack(epoch, upto):
    """The collector's acknowledgement: every seq <= upto of that epoch is stored."""
    return struct.pack("<II", epoch, upto)


class BatchError(ValueError):
    """Bytes that are not a valid uplink batch (header, lengths or seal)."""


def decode_batch(data):
    """(epoch, base, first, [packet bytes, ...]); BatchError (only) for anything malformed."""
    b = bytes(data)
    if len(b) < _BHDR:
        raise BatchError("batch of %d bytes: shorter than its %d-byte header" % (len(b), _BHDR))
    fmt, epoch, base, first, count = struct.unpack_from("<BIIIB", b, 0)
    if fmt != _BFORMAT:
        raise BatchError("batch format %d unknown (this reader knows %d)" % (fmt, _BFORMAT))
    if base > first:
        raise BatchError("batch base %d is after its first seq %d" % (base, first))
    out = []
    o = _BHDR
    for i in range(count):
        if o >= len(b):
            raise BatchError("batch says %d packets, holds %d" % (count, i))
        n = b[o]
        if o + 1 + n > len(b):
            raise BatchError("packet %d of the batch is cut short" % i)
        out.append(b[o + 1 : o + 1 + n])
        o += 1 + n
    if o != len(b):
        raise BatchError("%d bytes after the batch's last packet" % (len(b) - o))
    return epoch, base, first, out
