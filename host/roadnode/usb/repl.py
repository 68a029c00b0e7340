"""The raw REPL of a board, through mpremote's serial transport (raw-paste mode, its flow control),
opened the way ESP32 boards need: DTR/RTS left alone (they drive EN and IO0 and would reset or
strand the board), and a few tries to get in before giving up with a clear message.

Entering can soft-reset in the raw REPL (Ctrl-D there): the ESP32 port then runs boot.py but not
main.py, so the interrupted node's objects no longer hold the heap (a flash needs ~16 KB in one
piece to unpack). The watchdog the node armed keeps running across that reset and nothing feeds it
any more (soft timers are gone), so every exec that may last re-arms it (WDT_FEED).
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
import time

from roadnode.usb.stream import RECONNECT_S, open_port_when_there
from roadnode.errors import DeviceError

# the ESP32's watchdog cannot be stopped or queried; creating machine.WDT again sets its timeout and
# restarts it. 60 s, as the firmware's app.at_repl() sets at the REPL: longer than any one exec.
WDT_MS = 60000
WDT_FEED = f"import machine\nmachine.WDT(timeout={WDT_MS}).feed()\n"


def _transport_class():
    """mpremote's SerialTransport opened our way. Its __init__ opens the port with pyserial's
    defaults (DTR/RTS asserted: an ESP32 resets or stays in its bootloader), so ours replaces it
    and sets what it sets; pyproject.toml pins the mpremote versions this is checked against
    (tests/cli/test_repl_transport.py)."""
    from mpremote.transport_serial import SerialTransport

    class Transport(SerialTransport):
        """SerialTransport on a port opened without resetting the board."""

        def __init__(self, port: str, baud: int):  # noqa: D401 - replaces the port opening only
            self.in_raw_repl = False
            self.use_raw_paste = True
            self.device_name = port
            self.mounted = False
            self.serial = open_port_when_there(port, baud)
            self.serial.timeout = 5  # a blocking read of mpremote's never waits forever
            self.is_pty = False  # inWaiting() works on ptys too: read as for a real port

    return Transport


class _ThreadMute(io.TextIOBase):
    """sys.stdout that drops what the threads in ``_muted`` write. contextlib.redirect_stdout swaps
    the process's sys.stdout: two boards flashed in parallel restore each other's swap, and the
    results printed afterwards vanish into a StringIO."""

    _muted = threading.local()

    def __init__(self, real):
        self.real = real

    def write(self, s):
        """Write, unless this thread is muted (then the text is dropped, its length returned)."""
        return len(s) if getattr(self._muted, "on", False) else self.real.write(s)

    def flush(self):
        """Flush the real stdout."""
        self.real.flush()

    def __getattr__(self, name):
        return getattr(self.real, name)


_mute_lock = threading.Lock()


@contextlib.contextmanager
def _quiet():
    """This thread's prints dropped (mpremote's own), other threads' untouched."""
    with _mute_lock:
        if not isinstance(sys.stdout, _ThreadMute):
            sys.stdout = _ThreadMute(sys.stdout)
    _ThreadMute._muted.on = True
    try:
        yield
    finally:
        _ThreadMute._muted.on = False


class _Restarted(Exception):
    """The board's output showed it restarted in the middle of a command."""


class BoardRestarted(DeviceError):
    """The board restarted while it ran a command (a power cut, a reset, the watchdog): what runs
    now is its firmware, not the raw REPL; ``RawRepl.enter`` gets the REPL back."""


class _Deadline:
    """The port, with reads refused past a deadline and watched for the ESP32's ROM lines (the board
    restarted: said at once, wherever the exchange was, instead of after its timeouts); the rest
    passes through."""

    def __init__(self, ser, until: float, max_bytes: int = 0, sent: set | None = None):
        self._ser, self._until = ser, until
        self._tail = b""
        self._left = max_bytes or -1  # bytes that may still come (-1: any number)
        self.flooded = False  # the budget ran out: the port sends more than any answer
        # the byte values written (shared by the tries of one enter): a port that sends back only
        # those is silent or a loopback, no sign of a board (whose banners and prompts are text)
        self.sent = set() if sent is None else sent
        self.heard = False  # the port sent a byte of its own

    def write(self, data) -> int:
        """Write to the port, remembering which byte values were sent."""
        self.sent.update(bytes(data))
        return self._ser.write(data)

    def read(self, n: int = 1) -> bytes:
        """Read from the port; past the deadline (or the byte budget) raise TransportError instead
        of waiting on."""
        if time.monotonic() > self._until:
            from mpremote.transport import TransportError

            raise TransportError("no end of the answer in time (the board sends something else: did it reset?)")
        if self._left == 0:
            from mpremote.transport import TransportError

            self.flooded = True
            raise TransportError("the port sends far more than a board's answer (not a MicroPython REPL?)")
        d = self._ser.read(n)
        if d:
            if not self.heard:
                self.heard = any(b not in self.sent for b in d)
            if self._left > 0:
                self._left = max(0, self._left - len(d))
            self._tail = (self._tail + d)[-64:]
            if ROM_MARK in self._tail and b"ets " in self._tail:
                raise _Restarted
        return d

    def __getattr__(self, name):
        return getattr(self._ser, name)


# entering keeps trying this long (beyond its `tries`) while the port shows a board's life (bytes of
# its own: not silence, not an echo of ours) and does not flood
ENTER_PATIENCE_S = 20.0
# one try at entering the raw REPL: far more bytes than the exchange (banners, prompts, a running
# node's packets in flight) means a port that floods; the time bound is above mpremote's own waits
# (4 s of silence for the banner, 10 s for the prompt, 4 s for the test exec) on a loaded host
ENTER_TRY_BYTES = 32768
ENTER_TRY_S = 30.0

# the ESP32's mask ROM prints this at every reset but a soft one ("rst:0x1 (POWERON_RESET),boot:...")
ROM_MARK = b"\nrst:0x"


class RawRepl:
    """A board's raw REPL: enter (optionally soft-resetting), exec with a deadline, restart."""

    def __init__(self, port: str, baud: int = 115200):
        self.port = port
        self.baud = baud
        self.t = _transport_class()(port, baud)

    def _reopen(self) -> None:
        """The port went away (a native-USB board resetting): the same name, once it is back."""
        try:
            self.t.serial.close()
        except OSError:
            pass
        self.t.serial = open_port_when_there(self.port, self.baud, RECONNECT_S, gone=True)
        self.t.serial.timeout = 5
        self.t.in_raw_repl = False

    def enter(self, tries: int = 3, soft_reset: bool = False) -> None:
        """Stop what runs (Ctrl-C) and enter the raw REPL; ``soft_reset``: then a clean interpreter
        (boot.py only) with the watchdog re-armed for WDT_MS."""
        from mpremote.transport import TransportError

        last = None
        flood = alive = False
        sent: set = set()  # byte values written while entering (see _Deadline)
        t0 = time.monotonic()
        k = 0
        # How many tries: one on a port that has sent no byte of its own (silent, or a loopback
        # echoing ours): a board answers a Ctrl-C at once, running or at its REPL, so another try
        # would only wait out the same silence. On a port that shows life, `tries`, and more while
        # no try met a flood and ENTER_PATIENCE_S has not passed: a board slow to come up (a
        # restart, a first boot formatting its flash, a busy host) answers late.
        while k < (tries if alive else 1) or (alive and not flood and time.monotonic() - t0 < ENTER_PATIENCE_S):
            k += 1
            ser = self.t.serial
            try:
                # mpremote's waits end only after a silence: on a port that never stops sending (a
                # wrong baud rate, a stray device, a reader slower than the sender) they would
                # never end, so each try has a byte budget of its own, and a deadline as a backstop
                # (long: cut short, a slow board is left inside a raw-paste, deaf to the next try)
                self.t.serial = dl = _Deadline(ser, time.monotonic() + ENTER_TRY_S, ENTER_TRY_BYTES, sent)
                try:
                    with _quiet():  # mpremote prints what it read on a failure
                        self.t.enter_raw_repl(soft_reset=soft_reset, timeout_overall=4)
                    # a board still booting, or a line typed at its REPL before, can leave the first
                    # exec garbled: prove the raw REPL works before trusting it
                    out, err = self.t.exec_raw((WDT_FEED if soft_reset else "") + "print('rn' + 'ok')", timeout=4)
                finally:
                    self.t.serial = ser
                    alive = alive or dl.heard
                if out.strip() == b"rnok" and not err:
                    return
                last = f"unexpected answer {out[-40:]!r} {err[-60:]!r}"
            except _Restarted:  # the board reset while we knocked: its REPL comes back after boot
                last = "the board restarted"
                alive = True
            except TransportError as e:
                last = e
                flood = flood or dl.flooded
                try:
                    dl.write(b"\r\x03\x03\x02")  # interrupt again, back to the friendly REPL (through
                    # the try's _Deadline, which notes the bytes as ours)
                    self.t.serial.reset_input_buffer()
                except OSError:
                    self._reopen()
            except OSError as e:  # pyserial's SerialException too: the board reset under us
                last = e
                self._reopen()
        raise DeviceError(f"{self.port}: could not enter the raw REPL ({last}); is it a MicroPython board? "
                          "Try pressing its RST button.")

    def exec(self, code: str | bytes, timeout: float = 30) -> bytes:
        """Run code; its stdout. An exception on the board raises DeviceError with its message.
        ``timeout`` bounds the whole exec: mpremote's own timeouts restart with every byte read,
        so a board that reset into its firmware and streams packets would hold the exec for ever."""
        from mpremote.transport import TransportError

        ser = self.t.serial
        self.t.serial = _Deadline(ser, time.monotonic() + timeout + 5)
        try:
            self.t.exec_raw_no_follow(code)
            out = self._answer(timeout)  # what it printed, then what it raised
            err = self._answer(timeout)
        except _Restarted:
            raise self._restarted() from None
        except TransportError as e:
            if self._restart_follows():
                # the exchange broke on the first byte of the ROM's boot lines (mpremote's raw paste
                # reads it as flow control): the rest of them say it; said now, not after timeouts
                raise self._restarted() from None
            raise DeviceError(f"{self.port}: the board stopped answering ({e})") from None
        except OSError as e:
            raise DeviceError(f"{self.port}: serial error: {e}") from None
        finally:
            self.t.serial = ser
        if err:
            lines = err.decode(errors="replace").strip().splitlines()
            raise DeviceError(f"{self.port}: on the board: {lines[-1] if lines else err!r}")
        return out

    def _restarted(self) -> BoardRestarted:
        self.t.in_raw_repl = False
        return BoardRestarted(f"{self.port}: the board restarted while it ran the command (a power cut or a reset); "
                              "run it again")

    def _restart_follows(self, wait: float = 1.0) -> bool:
        """After an exchange broke: do the ESP32's ROM lines follow within ``wait`` seconds (at
        115200 baud they take ~20 ms)? Reads through the exec's _Deadline, which knows them."""
        d = self.t.serial
        if not isinstance(d, _Deadline):
            return False
        end = time.monotonic() + wait
        ser = d._ser
        old = ser.timeout
        try:
            ser.timeout = 0.05
            while time.monotonic() < end:
                d.read(1)  # byte by byte: the ROM lines are looked for in the last 64 bytes
        except _Restarted:
            return True
        except Exception:  # the port went away, or the deadline passed: not the ROM's lines
            return False
        finally:
            try:
                ser.timeout = old
            except Exception:
                pass
        return False

    def _answer(self, timeout: float) -> bytes:
        """One part of an exec's answer, up to its end mark (mpremote's follow(), watched): a restart
        (power cut, watchdog) is said at once instead of after the timeout's silence. It shows as
        the ESP32's ROM lines on a USB-UART bridge board (_Deadline sees them), or as a zero byte,
        never in a command's text, which starts the node's first packet frame."""
        from mpremote.transport import TransportError

        got = bytearray()

        def watch(b):  # mpremote hands the bytes over one at a time
            got.extend(b)
            if b == b"\x00":
                raise _Restarted

        self.t.read_until(1, b"\x04", timeout=timeout, data_consumer=watch)
        if not got.endswith(b"\x04"):
            raise TransportError("timeout waiting for the end of the answer")
        return bytes(got[:-1])

    def restart(self) -> None:
        """Leave the raw REPL and soft-reset: boot.py and main.py run again (the port stays up,
        which a hard reset of a native-USB board would not keep). A port that goes away meanwhile
        is a board that reset itself (boot.py and main.py run after that too): it is waited for."""
        try:
            self.t.exit_raw_repl()
            self.t.serial.write(b"\x04")
        except OSError:
            self._reopen()
        self.t.in_raw_repl = False

    def close(self) -> None:
        """Close the port, whatever state it is in."""
        try:
            self.t.serial.close()
        except Exception:
            pass
