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
"""

import sys
import time

import machine
from micropython import const

from rnfw import packet
from rnfw.crc import crc16
from rnfw.uplink import ConsoleUplink
from rnfw.version import VERSION_STR

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
_OK = const(0)
_MORE = const(1)
_BAD_VALUE = const(2)
_BAD_STATE = const(3)
_UNKNOWN = const(4)
_FAILED = const(5)
_REPLY_LEN = const(6 + 3 + _PAYLOAD_MAX + 2)  # header + reply fields + payload + CRC
_BUDGET = const(512)  # request bytes read per service()


class Console:
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
            import rnfw

            rnfw.unload("manifest")  # loaded for this request only
        if self.after:
            self.after = 0
            self.restart()

    def reply(self, req, status, payload=b"", n=-1):
        node = self.node
        node.seq = (node.seq + 1) & 0xFFFF
        self.link.send(self.pkt, packet.encode_reply(self.pkt, node.seq, node.cfg["device_id"], req, status,
                                                     payload, n))

    def restart(self):
        from rnfw import vitals

        time.sleep_ms(50)  # let the reply leave the UART before the reset
        vitals.mark_deliberate()
        machine.reset()

    def _dispatch(self, req, cmd, args):
        import json

        node = self.node
        if cmd == _STATUS:
            m = node.status_packet()
            self.reply(req, _OK, node.pkt, m)
        elif cmd == _PING:
            e = node.config_error
            d = {"fw": VERSION_STR, "board": node.board_name, "device_id": node.cfg["device_id"],
                 "uptime_s": node.up_s, "replay": self.replay}
            if e:
                d["config_error"] = e[:64]
            st = node.vitals.config_status  # a fallback config: why, without "fallback: " (tools show it)
            if st != "ok":
                d["config_status"] = st[10:] if st.startswith("fallback: ") else st
            b = node.boot_text  # safe mode: why (only then)
            if b:
                d["boot_error"] = b
            for k in ("config_status", "boot_error"):  # cut to fit the reply's 160 bytes
                t = json.dumps(d, separators=(",", ":"))
                if k in d and len(t) > _PAYLOAD_MAX:
                    d[k] = d[k][: max(0, len(d[k]) - len(t) + _PAYLOAD_MAX)]
            self.reply(req, _OK, json.dumps(d, separators=(",", ":")).encode())
        elif cmd == _CONFIG_GET:
            off = args[0] | (args[1] << 8) if len(args) >= 2 else 0
            text = json.dumps(node.cfg)  # ASCII (control characters refused): one copy, not two
            piece = text[off : off + _PAYLOAD_MAX].encode()
            self.reply(req, _MORE if off + _PAYLOAD_MAX < len(text) else _OK, piece)
        elif cmd == _CONFIG_SET or cmd == _CONFIG_RESET:
            # merged with the running config and stored for the next boot, where it is validated
            # before it replaces /config.json (refused: config untouched, reason in `ping`)
            if cmd == _CONFIG_SET:
                try:
                    new = json.loads(bytes(args))
                except ValueError:
                    new = None
                if not isinstance(new, dict):
                    self.reply(req, _BAD_VALUE, b"expected a JSON object of keys and values")
                    return
                cfg = dict(node.cfg)
                cfg.update(new)
            else:
                cfg = {"device_id": node.cfg["device_id"]}  # defaults; identity survives
            try:
                # atomically (tmp + rename): a power cut leaves no half-written pending config.
                # Not parsed here: validating needs rnfw.config (~6 KB), kept off the heap while the
                # node measures; config.apply_pending() validates it first thing at boot.
                import os

                p = node.config_path + ".pending"
                with open(p + ".tmp", "w") as f:
                    f.write(json.dumps(cfg))
                os.rename(p + ".tmp", p)
            except OSError as e:
                self.reply(req, _FAILED, ("cannot write the config: %s" % e).encode())
                return
            self.reply(req, _OK)
            self.after = 1  # applied by a restart: every part of the node starts from the new config
        elif cmd == _MANIFEST:
            import os

            from rnfw import manifest

            slot = manifest.active_slot()
            d, n = manifest.installed(slot) if slot else ("", 0)
            m = {"mpy": sys.implementation._mpy, "m": os.uname().machine, "fw": VERSION_STR, "board": node.board_name,
                 "id": node.cfg["device_id"], "slot": slot, "d": d, "n": n,
                 "cf": 1 if node.vitals.config_fallback else 0}
            try:  # "ik": the identity file holds this id, a flash need not write it (rnfw.config.identity)
                with open(node.config_path[: node.config_path.rfind("/") + 1] + "identity.json") as f:
                    if json.load(f)["device_id"] == m["id"]:
                        m["ik"] = 1
            except Exception:
                pass
            t = json.dumps(m, separators=(",", ":"))
            if len(t) > _PAYLOAD_MAX:  # the machine name (only informative) shortened: the JSON stays whole
                m["m"] = m["m"][: max(0, len(m["m"]) - len(t) + _PAYLOAD_MAX)]
                t = json.dumps(m, separators=(",", ":"))
            self.reply(req, _OK, t.encode())
        elif cmd == _RESTART:
            self.reply(req, _OK)
            self.after = 1
        elif cmd == _REPLAY_START:
            # stored for the next boot, which starts the replay from a clean node (as the simulated
            # run starts from power-on) with its settings validated before the pipeline exists
            import os

            p = node.config_path + ".replay"
            with open(p + ".tmp", "wb") as f:
                f.write(args)
            os.rename(p + ".tmp", p)
            self.reply(req, _OK, json.dumps({"window": _WINDOW, "cap": len(node.samples) // 3}).encode())
            self.after = 1
        elif cmd == _REPLAY_GPS or cmd == _REPLAY_IMU or cmd == _REPLAY_END:
            if not self.replay:
                self.reply(req, _BAD_STATE, b"not replaying: send replay_start first")
                return
            if cmd == _REPLAY_END:
                self.reply(req, _OK)
                self.after = 1  # measure live again from a clean start
                return
            t = args[0] | (args[1] << 8) | (args[2] << 16) | (args[3] << 24)
            pipe = node.pipe
            if cmd == _REPLAY_GPS:
                pipe.feed_gps(args[4:], len(args) - 4, t)
            else:
                s = node.samples
                k = (len(args) - 5) // 2
                o = 3 * self.replay_n
                if o + k > len(s):
                    self.replay_n = 0
                    self.reply(req, _BAD_VALUE, b"IMU batch larger than the node's buffer")
                    return
                for i in range(k):
                    v = args[5 + 2 * i] | (args[6 + 2 * i] << 8)
                    s[o + i] = v - 65536 if v & 0x8000 else v
                self.replay_n += k // 3
                if not args[4]:  # the last part: the whole batch goes in at once, as a drain does
                    pipe.feed_imu(s, self.replay_n, t)
                    self.replay_n = 0
                    node.send_output()
            self.reply(req, _OK)
        else:
            self.reply(req, _UNKNOWN, ("unknown command %d" % cmd).encode())
