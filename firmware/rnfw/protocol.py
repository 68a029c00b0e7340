"""Console request/response protocol: the format, shared by the node and the host. See docs/protocol.md.

Host -> node: one text line per request, b"#" + base64(request packet) + b"\\n". The packet is a
normal versioned packet (type 5: req_id u8, cmd u8, args) with the packets' CRC-16. Printable
text only, so a request never contains Ctrl-C (0x03: the REPL's interrupt, which must keep working
while the node measures) nor 0x00 (the node's frame delimiter). A line cut short, with a bad CRC
or not base64 is dropped and counted (vitals console_bad_frames), never acted on.
Node -> host: a reply packet (type 4: req_id, status, payload) as a COBS frame, like every packet.
The host's side (encode_request, names) is in rnfw.packet_decode. The node does not load this
module: rnfw.console decodes requests itself and keeps these numbers as private constants (no
names on its heap; tests/firmware/test_firmware_consts.py holds the two equal).
"""

from micropython import const

from rnfw import packet
from rnfw.crc import crc16

MARK = const(0x23)  # "#": a request line starts (a Python comment: harmless if a REPL reads it)
LINE_MAX = const(256)  # bytes of base64 in one request line (fits the ESP32's 260-byte stdin ring)
WINDOW = const(256)  # line bytes the host may have in flight (unanswered)
ARGS_MAX = const(180)  # raw argument bytes in one request (LINE_MAX of base64, less header and CRC)
PAYLOAD_MAX = const(160)  # reply payload bytes the node sends in one reply

# commands
PING = const(1)  # -> JSON {"fw", "board", "device_id", "uptime_s"}
STATUS = const(2)  # -> a status packet (the vitals now), as the payload
CONFIG_GET = const(3)  # args: u16 offset -> a piece of the config JSON from offset (MORE if not the end)
CONFIG_SET = const(4)  # args: JSON object of keys -> validated, saved atomically, applied by a restart
CONFIG_RESET = const(5)  # defaults (device_id kept), saved, applied by a restart
REPLAY_START = const(6)  # args: JSON {"odr_hz", "period_ms", "lsb_per_g", "settings"} -> JSON {"window", "cap"}
REPLAY_GPS = const(7)  # args: u32 t_ms, NMEA bytes
REPLAY_IMU = const(8)  # args: u32 t_ms, u8 more, int16 x,y,z samples (parts of a batch until more == 0)
REPLAY_END = const(9)  # the node restarts and measures live again
RESTART = const(10)  # deliberate restart (not counted as unexpected)
MANIFEST = const(11)  # -> JSON {"mpy", "m", "fw", "board", "id", "slot", "d", "n", "cf"}: what is installed
CAPTURE = const(12)  # args: u8 1 start (restart, then DATA records; a byte a second keeps it) | 0 stop

# reply status
OK = const(0)
MORE = const(1)  # OK, and there is more (CONFIG_GET)
BAD_VALUE = const(2)  # refused: the payload says which key and why; nothing was changed
BAD_STATE = const(3)  # e.g. replay data without REPLAY_START
UNKNOWN = const(4)  # unknown command (an older node)
FAILED = const(5)  # the node tried and failed (e.g. flash write error); payload says why
DATA = const(6)  # a record of the capture stream (rnfw.capture), sent unasked with request id 0


def decode_request(raw):
    """(req_id, cmd, args memoryview) from a request packet's bytes, or None if it is not a
    valid request (short, bad CRC, other version or type)."""
    n = len(raw)
    if n < 10:
        return None
    if crc16(raw, n - 2) != raw[n - 2] | (raw[n - 1] << 8):
        return None
    if raw[0] != (packet.VERSION << 4) | packet.T_REQUEST:
        return None
    return raw[6], raw[7], memoryview(raw)[8 : n - 2]
