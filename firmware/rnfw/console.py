"""The node's side of the console protocol (rnfw.protocol): requests arrive as text lines on the USB
serial console while the node measures; replies go out as COBS frames like every packet.

The main loop calls wait(us) instead of sleeping until its next pass, so a request is answered
within a few milliseconds and the sampling grid is untouched (the IMU's FIFO times the samples).
Reading is one byte at a time into preallocated buffers: select.poll says a byte is there, and
readinto() of one byte never blocks. Ctrl-C is not ours: MicroPython turns it into
KeyboardInterrupt before we see it, so mpremote still gets the REPL.

Replay: REPLAY_START stores the replay's settings and restarts the node, which comes up with the
console as its sensor source (rnfw.app). The host sends the batches the node would have drained
from its IMU FIFO and GPS UART (rnfw.pipeline.run_batches cuts them the same way), the node runs
them through the same Pipeline and sends its packets back. Flow control: every request is
answered, and the host keeps at most WINDOW line bytes unanswered.

Capture: the other way round. CAPTURE start stores a flag and restarts the node; at that boot
rnfw.capture streams what the main loop feeds the pipeline (IMU batches, GPS bytes) until the host
stops it or stays silent for _LEASE_MS.

Requests go to one handler per command (the table `cmds`); files go through rnfw.save (atomic).
"""

import sys
import time

import machine
from micropython import const

import rnfw
from rnfw import packet
from rnfw.crc import crc16
from rnfw.uplink import ConsoleUplink

# The protocol's numbers (rnfw.protocol defines them for the host, and a test holds these equal):
# private constants here, so the node does not load that module (names and code on its heap)
_MARK = const(0x23)
_LINE_MAX = const(256)
_WINDOW = const(256)
_PAYLOAD_MAX = const(160)
_REQUEST = const(0x15)  # the first byte of a request packet: version 1, type 5
_PING = const(1)
_STATUS = const(2)
_CONFIG_GET = const(3)
_CONFIG_SET = const(4)
_CONFIG_RESET = const(5)
_REPLAY_START = const(6)
_REPLAY_GPS = const(7)
_REPLAY_IMU = const(8)
_REPLAY_END = const(9)
_RESTART = const(10)
_MANIFEST = const(11)
_CAPTURE = const(12)
_OK = const(0)
_MORE = const(1)
_BAD_VALUE = const(2)
_BAD_STATE = const(3)
_UNKNOWN = const(4)
_FAILED = const(5)
_DATA = const(6)  # (rnfw.capture's stream records)
_REPLY_LEN = const(6 + 3 + _PAYLOAD_MAX + 2)  # header + reply fields + payload + CRC
_BUDGET = const(512)  # request bytes read per service()


class Console:
    """The node's end of the console protocol: reads request lines between passes (wait), hands
    them to rnfw.request's handlers, sends the replies; holds the capture stream while one runs."""

    def __init__(self, node, inp=None, out=None):
        import select

        self.node = node
        si = inp or sys.stdin
        self.inp = getattr(si, "buffer", si)
        # replies leave as every packet does: a COBS frame on the console (own buffer: replies
        # are longer than measured packets, and go out whatever the node's uplink is)
        self.link = ConsoleUplink(out, _REPLY_LEN)
        self.poll = select.poll()
        self.poll.register(si, select.POLLIN)
        self.line = bytearray(_LINE_MAX)
        self.n = -1  # bytes of the request line so far; -1 = not in a request (text is ignored)
        self.one = bytearray(1)
        self.pkt = bytearray(_REPLY_LEN)
        self.replay = False
        self.replay_n = 0  # samples of the IMU batch received so far (multi-part batches)
        self.after = 0  # action after the reply is out: 1 = restart
        self.cap = None  # rnfw.capture's stream while a host records the drive (the main loop feeds it)
        p = getattr(node, "config_path", None)  # (a bare stand-in node has none: no capture)
        if p:
            import os

            try:  # a capture asked for before the restart (capture start): once only
                os.remove(p + ".capture")
                if not node.safe:
                    from rnfw import capture

                    self.cap = capture.Capture(self)
            except OSError:
                pass

    # ---- input -----------------------------------------------------------------------------------
    def _ready(self):
        for _ in self.poll.ipoll(0):  # ipoll: no list allocated per call
            return True
        return False

    def service(self):
        """Read what has arrived (up to _BUDGET bytes); handle complete requests."""
        one = self.one
        n = _BUDGET
        while n > 0 and self._ready():
            n -= 1
            if not self.inp.readinto(one, 1):
                break
            c = one[0]
            if c == _MARK:
                if self.n > 0:  # a request cut short by the next one
                    self.node.vitals.console_bad_frames += 1
                self.n = 0
            elif self.n < 0:
                continue  # text typed at a running node, or line noise: not a request
            elif c == 10 or c == 13:
                if self.n:
                    self._handle(self.n)
                self.n = -1
            elif self.n >= _LINE_MAX:
                self.node.vitals.console_bad_frames += 1  # too long: not ours, or corrupt
                self.n = -1
            else:
                self.line[self.n] = c
                self.n += 1
        if n < _BUDGET and self.cap is not None:  # the host is there (any byte): the capture runs on
            self.cap.t0 = self.node.ms

    def wait(self, us):
        """Sleep for us microseconds, answering requests meanwhile.

        The sleep is poll() on the console with a timeout: on the ESP32 that blocks the task in
        FreeRTOS (other tasks and the idle task run) until a byte arrives or a tick passes, where
        time.sleep_us() spins the CPU for the whole wait (and sleep_ms spins its sub-tick rest). A
        request is served as soon as its bytes arrive. Only the last part of a millisecond is
        spun, so a pass starts on its grid time (the simulated board's runs equal the offline
        ones bit for bit); a poll that overslept (up to a tick, 10 ms) leaves none to spin, and
        the IMU's FIFO absorbs the late start."""
        t_end = time.ticks_add(time.ticks_us(), us)
        p = self.poll
        while True:
            self.service()
            left = time.ticks_diff(t_end, time.ticks_us())
            if left < 1000:
                break
            for _ in p.ipoll(left // 1000):  # an iterator, no list: nothing allocated per wait
                break
        if left > 0:
            time.sleep_us(left)

    # ---- requests --------------------------------------------------------------------------------
    def _handle(self, n):
        import binascii

        try:
            raw = binascii.a2b_base64(memoryview(self.line)[:n])
        except ValueError:
            raw = b""
        # a request packet (rnfw.protocol.decode_request): long enough, its CRC, version and type
        n = len(raw)
        if n < 10 or crc16(raw, n - 2) != raw[n - 2] | (raw[n - 1] << 8) or raw[0] != _REQUEST:
            self.node.vitals.console_bad_frames += 1
            return
        req, cmd, args = raw[6], raw[7], memoryview(raw)[8 : n - 2]
        try:
            self._dispatch(req, cmd, args)
        except Exception as e:  # a request must never stop the node
            self.reply(req, _FAILED, str(e)[: _PAYLOAD_MAX].encode())
        if cmd == _MANIFEST:
            rnfw.unload("manifest")  # loaded for this request only
        if not self.replay:  # a replay's requests come every pass: kept meanwhile
            rnfw.unload("request")
        if self.after:
            self.after = 0
            self.restart()

    def reply(self, req, status, payload=b"", n=-1):
        """A reply packet (payload[:n], all of it by default) as a COBS frame on the console."""
        node = self.node
        node.seq = (node.seq + 1) & 0xFFFF
        self.link.send(self.pkt, packet.encode_reply(self.pkt, node.seq, node.cfg["device_id"], req, status,
                                                     payload, n))

    def restart(self):
        """A deliberate reset, once the reply is out (the next boot does not count it as a crash)."""
        from rnfw import vitals

        time.sleep_ms(50)  # let the reply leave the UART before the reset
        vitals.mark_deliberate()
        machine.reset()

    def _dispatch(self, req, cmd, args):
        """The command's handler from rnfw.request's table (loaded for requests, see _handle)."""
        from rnfw import request

        t = request.table
        if 0 < cmd < len(t):
            t[cmd](self, req, cmd, args)
        else:
            self.reply(req, _UNKNOWN, ("unknown command %d" % cmd).encode())

