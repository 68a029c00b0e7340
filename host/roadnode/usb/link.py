"""Talk to a running node over its USB serial console with the request/response protocol
(firmware/rnfw/protocol.py): status, config, replay. The node keeps measuring while it answers;
its other packets (segments, events, heartbeats) arrive in between and go to ``on_packet``.

The port is opened without touching DTR/RTS (they reset ESP32 dev boards), and nothing here
enters the REPL, so asking a node for its status never stops it. A port that goes away (a native-
USB board re-enumerating after a reset) is reopened: a restart, a power cut or a watchdog reset
of the node is waited out, not an error.
"""

from __future__ import annotations

import json
import secrets
import struct
import time
from typing import Callable

from roadnode.usb.stream import RECONNECT_S, ConsoleSplitter, open_port_when_there
from roadnode.errors import DeviceError, InputError
from roadnode.mpy.fwimport import fw

# how long close() waits for replies to requests still unanswered (a node answers in milliseconds;
# one that does not answer within this is booting, hung, or no node)
CLOSE_DRAIN_S = 0.3
# frames failing their check, with none passing, that make a port "not the roadnode protocol"
JUNK_FRAMES = 20


# a REPL prints its prompt this soon after echoing a line; an echo without one is no REPL
_ECHO_PROMPT_S = 1.0


class Rejected(InputError):
    """The node refused a request (bad value): nothing was changed."""


class NodeLink:
    """The console protocol to a running node over its serial port (docs/protocol.md): requests,
    their replies, the packets that come meanwhile."""

    def __init__(self, port: str, baud: int = 115200, timeout: float = 3.0,
                 on_packet: Callable[[dict], None] | None = None):
        self.port = port
        self.P = fw("protocol")
        self.PD = fw("packet_decode")
        self.C = fw("cobs")
        self.baud = baud
        self.s = open_port_when_there(port, baud)
        self.reconnects = 0  # times the port went away and was reopened
        self.timeout = timeout
        self.on_packet = on_packet
        self.sp = ConsoleSplitter()
        self.replies: dict[int, dict] = {}
        self.bad_frames = 0
        self.good_frames = 0  # frames that passed their check: the port speaks the protocol
        self.tail = b""  # last text seen: tells a node at the REPL from a silent one
        self.text_bytes = 0  # console text seen (a node's replies are frames; text is prints or not a node)
        self.rx_bytes = 0  # bytes of any kind since the port was opened
        self._echo = b"\x00"
        self.echoed = False
        self._echo_at = None  # when our request came back as text without a REPL prompt after it
        # request numbers start where an earlier link's cannot be expected: a reply carries only
        # its request's number, and a node answers a request read while it booted after the
        # link that sent it has gone (a new link counting from 0 would take it for its own)
        self._req = secrets.randbelow(256)
        self._seq = 0
        self._asked: set[int] = set()  # requests sent and not answered yet
        self.boots = 0  # boot heartbeats seen (the node restarted)
        self._reads = {self.P.PING, self.P.STATUS, self.P.CONFIG_GET, self.P.MANIFEST}

    def close(self):
        """Close the port, after the replies still due (up to CLOSE_DRAIN_S): a reply left on the
        line would reach the next tool, and a reply carries only its request's number."""
        end = time.monotonic() + CLOSE_DRAIN_S
        try:
            while self._asked - self.replies.keys() and not self.echoed and time.monotonic() < end:
                self.pump(min(0.05, max(0.0, end - time.monotonic())))
        except Exception:  # closing whatever happened
            pass
        self.s.close()

    def _reconnect(self) -> None:
        """The port went away (the node reset and its native USB left the bus): reopen it. What
        was in flight is lost: a frame cut short is dropped, an unanswered request is asked again
        by request(), and wait_boot() keeps asking."""
        try:
            self.s.close()
        except OSError:
            pass
        self.s = open_port_when_there(self.port, self.baud, RECONNECT_S, gone=True)
        self.sp = ConsoleSplitter()
        self.reconnects += 1

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    # ---- frames ------------------------------------------------------------------------------
    def _decode(self, raw: bytes):
        dst = bytearray(len(raw))
        n = self.C.decode(raw, len(raw), dst)
        if n < 0:
            return None
        try:
            return self.PD.decode(bytes(dst[:n]))
        except self.PD.PacketError:
            return None

    def pump(self, timeout: float = 0.05) -> None:
        """Read what the port has (waiting up to ``timeout`` for the first byte)."""
        try:
            self.s.timeout = timeout
            data = self.s.read(1)  # returns at the first byte (read(4096) would wait out the timeout)
            if not data:
                return
            n = self.s.in_waiting
            if n:
                data += self.s.read(n)
        except OSError:  # pyserial's SerialException too: the device vanished
            self._reconnect()
            return
        self.rx_bytes += len(data)
        for kind, item in self.sp.feed(data):
            if kind == "text":
                self.tail = (self.tail + item)[-200:]
                self.text_bytes += len(item)
                continue
            d = self._decode(item)
            if d is None:
                self.bad_frames += 1  # noise or a frame cut short: counted, never misread
                continue
            self.good_frames += 1
            if d["type"] == "reply":
                self.replies[d["req_id"]] = d
            else:
                if d["type"] == "status" and d.get("uptime_s", 1 << 30) <= 1:
                    self.boots += 1  # a boot heartbeat: the node (re)started
                if self.on_packet:
                    self.on_packet(d)

    # ---- requests ----------------------------------------------------------------------------
    def send(self, cmd: int, args: bytes = b"") -> int:
        """Send a request; its request number, to wait() for."""
        self._req = (self._req + 1) & 0xFF
        self._seq = (self._seq + 1) & 0xFFFF
        self.replies.pop(self._req, None)
        self._asked.add(self._req)
        line = self.PD.encode_request(self._seq, 0, self._req, cmd, bytes(args))
        try:
            self.s.write(line)
        except OSError:  # gone under us: a request to a node that just reset goes to the new port
            self._reconnect()
            self.s.write(line)
        self.last_len = len(line)
        self._echo = line[-41:-1]  # a friendly REPL echoes what it reads: the sign no firmware runs
        self.echoed = False
        self._echo_at = None
        return self._req

    def wait(self, req: int, timeout: float | None = None, stop: Callable[[], bool] | None = None) -> dict | None:
        """The reply to request ``req``, or None after ``timeout`` (or at once when a REPL echoes the
        request, the port sends only junk, or ``stop()`` becomes true)."""
        end = time.monotonic() + (self.timeout if timeout is None else timeout)
        while req not in self.replies:
            left = end - time.monotonic()
            if left <= 0:
                return None
            self.pump(min(left, 0.05))
            if self.junk() or (stop is not None and stop()):
                return None
            if self._echo in self.tail:
                if self.tail.rstrip().endswith(b">>>"):
                    self.echoed = True  # a REPL read the request (a comment to it): no firmware running
                    return None
                # the request came back as it was sent: a REPL prints its prompt right after it, a
                # loopback or a bare terminal never does; either way no firmware reads the port
                now = time.monotonic()
                self._echo_at = self._echo_at or now
                if now - self._echo_at > _ECHO_PROMPT_S:
                    self.echoed = True
                    return None
        self._asked.discard(req)
        return self.replies.pop(req)

    def junk(self) -> bool:
        """The port sends frames and not one of them passes its check: a wrong baud rate or another
        device, not a roadnode node (whose replies, even on a noisy line, would pass). Asking
        again would only wait out more timeouts."""
        return self.bad_frames >= JUNK_FRAMES and not self.good_frames

    def _silent(self) -> DeviceError:
        t = self.tail
        if self._at_repl() and b"no firmware installed" not in t:
            why = "the board is at the REPL, not running the firmware (press Ctrl-D there, or `roadnode flash`)"
        elif b"no firmware installed" in t:
            why = "the board has no firmware: run `roadnode flash`"
        elif self.echoed:
            why = "no answer: the port sends back what it is sent (a loopback or a terminal, not a roadnode node)"
        elif self.bad_frames:
            why = (f"no answer; what the port sends is not the roadnode protocol ({self.bad_frames} frames that fail "
                   "their check): wrong baud rate, or not a roadnode node?")
        elif self.text_bytes:
            last = t.decode(errors="replace").strip().splitlines()[-1:] or [""]
            why = f"no answer; the port prints text, no roadnode replies (last: {last[0][-60:]!r}): right port?"
        else:
            why = "no answer (is the roadnode firmware running? right port and baud?)"
        return DeviceError(f"{self.port}: {why}")

    def request(self, cmd: int, args: bytes = b"", timeout: float | None = None, tries: int = 3) -> dict:
        """Send and wait for the reply; a lost or corrupted request or reply is sent again. A
        request that only reads (ping, status, config, manifest) is sent again at once when the
        node's boot heartbeat shows it restarted meanwhile (what it was sent while it booted is
        lost), without waiting out the timeout and without counting as a try."""
        again = 3 if cmd in self._reads else 0  # restarts asked through (a boot loop is not waited on)
        n = 0
        while n < tries:
            boots = self.boots
            r = self.wait(self.send(cmd, args), timeout, stop=(lambda: self.boots != boots) if again else None)
            if r is None and again and self.boots != boots:
                again -= 1
                continue  # it booted under the request: ask again, now that it listens
            if r is not None:
                return r
            if self.echoed or self.junk():
                break  # no point in asking again: the firmware is not running, or not on this line
            if not self.rx_bytes:
                # not one byte since the port opened: a running node answers within milliseconds
                # and a booting one says so (its boot heartbeat, then it is asked again above);
                # asking again would only wait out the same silence (9 s instead of 3 for a user)
                break
            n += 1
        raise self._silent()

    def _at_repl(self) -> bool:
        t = self.tail
        # the prompts exactly: ">>> ", or the raw REPL's ">" alone on its line (a log line that ends
        # in ">", as ESP-IDF's wifi lines do, is no prompt)
        return (b">>> " in t[-8:] or b"raw REPL" in t or t.endswith(b"\n>") or t.endswith(b"\n> ")
                or b"no firmware installed" in t)

    def call(self, cmd: int, args: bytes = b"", **kw) -> bytes:
        """request(), and the payload of an OK reply; a refusal raises Rejected, a failure DeviceError."""
        r = self.request(cmd, args, **kw)
        P = self.P
        st = r["status"]
        if st in (P.OK, P.MORE):
            return bytes(r["payload"])
        msg = bytes(r["payload"]).decode(errors="replace")
        name = self.PD.STATUS_NAMES[st] if st < len(self.PD.STATUS_NAMES) else str(st)
        if st == P.BAD_VALUE:
            raise Rejected(f"refused by the node: {msg}; nothing was changed")
        if st == P.UNKNOWN:
            raise DeviceError(f"{self.port}: the node's firmware does not know this command (update it: roadnode flash)")
        raise DeviceError(f"{self.port}: {name}: {msg}")

    # ---- commands ----------------------------------------------------------------------------
    def ping(self) -> dict:
        """The node's identity and versions (PING)."""
        return json.loads(self.call(self.P.PING))

    def status(self) -> dict:
        """The vitals now (a status packet made for this request), field names as in heartbeats."""
        d = self.PD.decode(self.call(self.P.STATUS))
        d["type"] = "status"
        return d

    def config_get(self) -> dict:
        """The node's config, read in pieces (the reply frame is short)."""
        P = self.P
        text = b""
        while True:
            r = self.request(P.CONFIG_GET, struct.pack("<H", len(text)))
            if r["status"] not in (P.OK, P.MORE):
                raise DeviceError(f"{self.port}: config read failed: {bytes(r['payload']).decode(errors='replace')}")
            text += bytes(r["payload"])
            if r["status"] == P.OK:
                return json.loads(text)

    def config_set(self, changes: dict) -> dict:
        """Validate with the firmware's schema here first (the node checks again), then apply.
        Returns the node's new config after it restarted with it."""
        C = fw("config")
        for k, v in changes.items():
            try:
                C.check(k, v)
            except C.ConfigError as e:
                raise Rejected(f"{e}; nothing was changed") from None
        args = json.dumps(changes, separators=(",", ":")).encode()
        if len(args) > self.P.ARGS_MAX:  # known before a byte is sent: nothing is asked of the node
            # several requests would not be atomic; the node takes ~180 bytes of settings at once
            raise InputError(f"too many settings in one go ({len(args)} bytes of JSON, max {self.P.ARGS_MAX}): split them")
        cur = self.config_get()
        try:
            C.validate({**cur, **changes})
        except C.ConfigError as e:
            raise Rejected(f"{e}; nothing was changed") from None
        self.call(self.P.CONFIG_SET, args)
        self.wait_boot()
        err = self.ping().get("config_error")
        if err:  # the node validates again at boot, before it replaces its config
            raise Rejected(f"refused by the node: {err}; nothing was changed")
        return self.config_get()

    def config_reset(self) -> dict:
        """Back to the default config (the node restarts): the config it then holds."""
        self.call(self.P.CONFIG_RESET)
        self.wait_boot()
        return self.config_get()

    def restart(self):
        """Restart the node; its first status after."""
        self.call(self.P.RESTART)
        return self.wait_boot()

    def wait_boot(self, timeout: float = 30.0, fresh: bool = True) -> dict:
        """Wait for the node after a restart: its boot heartbeat, or (a node whose uplink is not
        the console sends none on the USB port) its answer to a status request, asked once a
        second. ``fresh``: only a status from the first seconds after boot counts."""
        got: list[dict] = []
        prev = self.on_packet
        limit = 3 if fresh else 1 << 30

        def catch(d):
            """Keep a fresh boot status; pass every packet on to the previous handler."""
            if d["type"] == "status" and d.get("uptime_s", 1 << 30) <= limit:
                got.append(d)
            if prev:
                prev(d)

        self.on_packet = catch
        end = time.monotonic() + timeout
        try:
            while not got and time.monotonic() < end:
                # the reply, for up to a second: a boot heartbeat ends the wait at once (a request
                # sent while the node boots is never answered)
                r = self.wait(self.send(self.P.STATUS), min(1.0, max(0.0, end - time.monotonic())),
                              stop=lambda: bool(got))
                if not got and r is not None and r["status"] == self.P.OK:
                    d = self.PD.decode(bytes(r["payload"]))
                    if d["uptime_s"] <= limit:
                        got.append(d)
        finally:
            self.on_packet = prev
        if not got:
            tail = self.tail.decode(errors="replace").strip().splitlines()[-3:]
            raise DeviceError(f"{self.port}: the node did not come back within {timeout:.0f} s after its restart"
                              + (f"; the console said: {' | '.join(tail)}" if tail else ""))
        return got[0]
