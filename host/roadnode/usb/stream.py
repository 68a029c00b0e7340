"""The node's console carries text (REPL, prints) and binary packet frames: COBS-encoded packets
between 0x00 bytes. This splits the stream, decodes frames with the firmware's codec, and counts
frames that fail (noise, a cut cable) instead of misreading them."""

from __future__ import annotations

import errno
import os
import stat
import time
from dataclasses import dataclass, field

from roadnode.errors import DeviceError, InputError
from roadnode.packets import decode_packet, is_text


_MAX_FRAME = 300  # bytes: the longest frame (a reply) is ~175 COBS bytes


@dataclass
class ConsoleSplitter:
    """Feed bytes; get ("text", bytes) and ("frame", raw_cobs_bytes) items in order.

    Frames are 0x00 COBS 0x00; anything else is text (prints, the REPL, ESP-IDF log lines). The
    phase is not trusted blindly: a port opened in the middle of a frame, a stray 0x00 in the
    text or a frame cut short would otherwise swap text and frames for good. So what follows a
    0x00 is held until the next one and classified by its bytes (text is never a frame, see
    roadnode.packets.is_text); held bytes that can only be text (a line or prompt end, or longer
    than any frame) are handed on at once, so a REPL prompt is seen without waiting."""

    in_frame: bool = False  # after a 0x00 that may open a frame: bytes are held
    buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes):
        """The items completed by these bytes, in order (held bytes wait for the next 0x00)."""
        out = []
        for part_i, part in enumerate(data.split(b"\x00")):
            if part_i:  # a 0x00: what was held is complete
                seg = bytes(self.buf)
                self.buf.clear()
                if not self.in_frame:
                    self.in_frame = True  # text was handed on already; this 0x00 opens a frame
                elif seg and is_text(seg):
                    out.append(("text", seg))  # text between a stray 0x00 and this one, which opens a frame
                elif seg:
                    out.append(("frame", seg))
                    self.in_frame = False  # this 0x00 closed the frame
                # empty: 0x00 0x00 between two frames, the second opens the next
            if self.in_frame:
                self.buf += part
            elif part:
                out.append(("text", part))
        b = self.buf
        if self.in_frame and b and is_text(b) and (len(b) > _MAX_FRAME or b.endswith((b"\n", b">>> ", b"> "))):
            out.append(("text", bytes(b)))
            b.clear()
            self.in_frame = False
        return out


def decode_frame(raw: bytes) -> dict:
    """A frame's packet as a dict (roadnode.packets), or {"type": "error", ...} if it is no COBS frame."""
    from roadnode.mpy.fwimport import fw

    C = fw("cobs")
    dst = bytearray(len(raw))
    n = C.decode(raw, len(raw), dst)
    if n < 0:
        return {"type": "error", "error": "not a COBS frame", "hex": raw.hex()}
    return decode_packet(bytes(dst[:n]))


_LockedSerial = None


def _serial_class():
    """serial.Serial whose close() also releases the port's lock (see usb.portlock)."""
    global _LockedSerial
    if _LockedSerial is None:
        import serial

        class LockedSerial(serial.Serial):
            """A port that holds its lock (``portlock``) until closed."""

            portlock = None

            def close(self):
                """Close the port, then release its lock (also when closing fails)."""
                try:
                    super().close()
                finally:
                    lk, self.portlock = self.portlock, None
                    if lk is not None:
                        lk.release()

        _LockedSerial = LockedSerial
    return _LockedSerial


def open_port(port: str, baud: int = 115200):
    """Open a board's port for this command alone: the port's lock first (another roadnode command
    on it: PortBusy naming it, before a byte is read or written), then the device opened with
    pyserial's exclusive flock, which other well-behaved tools respect too."""
    import serial

    from roadnode.usb.portlock import CHANGING_S, acquire, device_holders

    lock = acquire(port)
    # the device's flock held by someone else is asked again for a moment: a child forked by this
    # process (a simulated board restarting its interpreter, any subprocess) holds this process's
    # open descriptors from its fork to its exec, and a tool that probes ports lets go at once
    end = time.monotonic() + CHANGING_S
    try:
        while True:
            # no DTR/RTS toggling: on ESP32 dev boards they drive EN/IO0 and would reset the node
            s = _serial_class()()
            s.port = port
            s.baudrate = baud
            s.timeout = 0.05
            s.dtr = False
            s.rts = False
            s.exclusive = True
            try:
                s.open()
                break
            except (serial.SerialException, OSError) as e:  # (pyserial closed its descriptor)
                if not _flock_busy(e) or time.monotonic() >= end:
                    raise
            time.sleep(0.02)
    except (serial.SerialException, OSError) as e:
        lock.release()
        if _flock_busy(e):
            raise DeviceError(f"{port} is busy: {device_holders(port)}; wait for it or stop it") from None
        raise DeviceError(_cannot_open(port, e)) from None
    except (ValueError, OverflowError) as e:  # pyserial on a baud rate it or the driver cannot take
        lock.release()
        if isinstance(e, OverflowError) or "baud" in str(e):
            raise InputError(f"baud rate {baud}: not usable on {port} ({e})") from None
        raise InputError(f"port {port!r}: {e}") from None
    except BaseException:
        lock.release()
        raise
    s.portlock = lock
    return s


def _flock_busy(e: Exception) -> bool:
    """pyserial's exclusive open refused: another descriptor holds the device's flock."""
    return getattr(e, "errno", None) in (errno.EWOULDBLOCK, errno.EAGAIN) and "lock" in str(e)


def _cannot_open(port: str, e: Exception) -> str:
    """Why ``port`` could not be opened, in the user's terms: pyserial's messages repeat the name
    and say "Inappropriate ioctl" where the path is simply no serial port (a file, a folder, a FIFO,
    /dev/null)."""
    try:
        mode = os.stat(port).st_mode
    except FileNotFoundError:
        return f"cannot open {port}: no such port (is the board plugged in? see `ls /dev/ttyUSB* /dev/ttyACM*`)"
    except OSError as se:
        return f"cannot open {port}: {se.strerror or se}"
    for test, what in ((stat.S_ISDIR, "a directory"), (stat.S_ISREG, "a regular file"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return f"cannot open {port}: it is {what}, not a serial port"
    if getattr(e, "errno", None) in (errno.EACCES, errno.EPERM):
        return f"cannot open {port}: permission denied (on Linux: add yourself to the dialout group)"
    if getattr(e, "errno", None) == errno.ENOTTY or "Inappropriate ioctl" in str(e):
        return f"cannot open {port}: not a serial port (a device that is not a terminal)"
    return f"cannot open {port}: {e}"


# A native-USB board (ESP32-S3) leaves the bus at every reset but a soft one and comes back ~1 s
# later under the same name (/dev/ttyACM0, /dev/serial/by-id/...): a tool holding the port reopens
# it for this long before it gives up.
RECONNECT_S = 10.0
# a port missing when a command starts may be a board re-enumerating right now (a typo costs this)
APPEAR_S = 3.0


def open_port_when_there(port: str, baud: int = 115200, within: float = APPEAR_S, gone: bool = False, stop=None):
    """open_port, waiting up to ``within`` s while the port is not there. ``gone``: it just went
    away under us (a reset of a native-USB board): any failure to reopen it is retried, as the
    new device node may show up before it can be opened; a port another command holds is not.
    ``stop`` (a threading.Event): set, the wait ends at once with None."""
    from roadnode.usb.portlock import PortBusy

    end = time.monotonic() + within
    while stop is None or not stop.is_set():
        if os.path.exists(port) or time.monotonic() >= end:  # (opened once it is there: one lock taken)
            try:
                return open_port(port, baud)
            except PortBusy:
                raise
            except DeviceError as e:
                if not gone or "is busy" in str(e) or time.monotonic() >= end:
                    if gone:
                        raise DeviceError(f"{port}: the port went away and did not come back within {within:.0f} s ({e})") from None
                    raise
        time.sleep(0.1)
    return None


def monitor(port: str, duration: float | None = None, record=None, baud: int = 115200, on_note=None, opened=None,
            stop=None):
    """Yield decoded packets (dicts) from the port; ``record`` (a binary file) gets every raw
    frame with its 0x00 delimiters, readable by `roadnode decode`. A port that goes away (a native-
    USB board resetting) is reopened (``on_note`` gets a line saying so) within RECONNECT_S.
    ``opened``: the port already opened with open_port_when_there (the caller learns at once that it
    cannot be opened, before it shows anything); the watch closes it. ``stop`` (a threading.Event,
    set from a signal handler): the watch ends within one read (50 ms), cleanly, wherever it is."""
    s = opened if opened is not None else open_port_when_there(port, baud, stop=stop)
    if s is None:
        return
    sp = ConsoleSplitter()
    end = None if duration is None else time.monotonic() + duration
    try:
        while (end is None or time.monotonic() < end) and (stop is None or not stop.is_set()):
            try:
                data = s.read(4096)
            except OSError:  # pyserial's SerialException too: the device vanished
                s.close()
                if on_note:
                    on_note(f"{port}: port went away: reconnecting")
                within = RECONNECT_S if end is None else min(RECONNECT_S, max(end - time.monotonic(), 0.1))
                try:
                    s = open_port_when_there(port, baud, within, gone=True, stop=stop)
                except DeviceError:
                    if end is not None and time.monotonic() >= end:
                        return  # the watch ended while the port was away
                    raise
                if s is None:
                    return  # stopped while the port was away
                sp = ConsoleSplitter()  # a frame cut by the reset is dropped, not glued to the next
                if on_note:
                    on_note(f"{port}: reconnected")
                continue
            if not data:
                continue
            for kind, item in sp.feed(data):
                if kind == "frame":
                    if record is not None:
                        record.write(b"\x00" + item + b"\x00")
                        record.flush()
                    yield decode_frame(item)
    finally:
        if s is not None:
            s.close()
