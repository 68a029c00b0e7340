"""What usb.repl relies on in mpremote (pinned in pyproject.toml): its serial transport is set up
without mpremote's __init__ (which opens the port with pyserial's defaults: DTR/RTS toggled, which
resets or strands an ESP32), so every attribute that __init__ sets must be set by ours too, and the
methods usb.repl calls must take the arguments it passes. (That the whole exchange works through
it is what the flash tests show against the simulated board.)"""

from __future__ import annotations

import inspect

import pytest

import serial
from mpremote.transport_serial import SerialTransport

from roadnode.usb import repl


def _ours(monkeypatch):
    monkeypatch.setattr(repl, "open_port_when_there", lambda port, baud: serial.serial_for_url("loop://", baud))
    return repl._transport_class()("loop://", 115200)


def test_our_transport_sets_everything_mpremotes_init_sets(monkeypatch):
    theirs = SerialTransport("loop://", 115200)
    try:
        ours = _ours(monkeypatch)
        missing = set(vars(theirs)) - set(vars(ours))
        assert not missing, f"mpremote's SerialTransport.__init__ sets {sorted(missing)}, usb.repl does not"
        assert isinstance(ours, SerialTransport)
        assert ours.in_raw_repl is False and ours.use_raw_paste is True and ours.device_name == "loop://"
    finally:
        theirs.serial.close()


def test_the_methods_board_repl_calls_take_its_arguments():
    sig = inspect.signature
    sig(SerialTransport.enter_raw_repl).bind(None, soft_reset=True, timeout_overall=4)
    sig(SerialTransport.exec_raw).bind(None, "print(1)", timeout=4)
    sig(SerialTransport.exit_raw_repl).bind(None)
    from mpremote.transport import TransportError  # raised by those, caught by usb.repl

    assert issubclass(TransportError, Exception)



FLOOD = """
import os, random, sys
m = int(sys.argv[1])
junk = random.Random(5).randbytes(4096).replace(b">", b"?")
while True:
    try:
        os.write(m, junk)  # blocks while the port's buffer is full: the reader never finds it empty
    except OSError:  # the test closed its end
        break
"""


def test_entering_gives_up_on_a_port_that_never_stops_sending(monkeypatch):
    """mpremote's waits end only after a silence; a port that sends faster than it is read (a wrong
    baud rate, a stray device, a reader starved of CPU) has none. Each try has its own byte budget, so
    the flash says "could not enter the raw REPL" instead of hanging (as it did in CI)."""
    import os
    import subprocess
    import sys
    import threading

    from roadnode.errors import DeviceError

    m, s = os.openpty()
    port = os.ttyname(s)
    os.close(s)
    flood = subprocess.Popen([sys.executable, "-c", FLOOD, str(m)], pass_fds=(m,))
    monkeypatch.setattr(repl, "ENTER_TRY_S", 600.0)  # the byte budget is what ends each try
    got = []
    try:
        r = repl.RawRepl(port)
        t = threading.Thread(target=lambda: got.append(pytest.raises(DeviceError, r.enter, tries=2)), daemon=True)
        t.start()
        t.join(60)  # two tries of 32 KB each, and mpremote's 4 s quiet timeouts never start
        assert not t.is_alive(), "entering the raw REPL on a flooding port hangs"
        assert "could not enter the raw REPL" in str(got[0].value)
        r.close()
    finally:
        flood.kill()
        flood.wait()
        os.close(m)


def test_an_echo_is_no_sign_of_a_board_but_bytes_of_its_own_are():
    """Entering is patient (ENTER_PATIENCE_S beyond its tries) only with a port that showed life:
    a loopback returns what was sent (in any order: an earlier try's echo may come late), which is
    not life; one byte of its own is."""
    port = serial.serial_for_url("loop://", 115200, timeout=0.1)
    try:
        dl = repl._Deadline(port, float("inf"))
        dl.write(b"\r\x03\r\x01")
        assert dl.read(3) == b"\r\x03\r" and dl.read(1) == b"\x01" and not dl.heard
        port.write(b"\x03\r")  # an echo of an earlier write, out of step
        assert dl.read(2) == b"\x03\r" and not dl.heard
        port.write(b"\r\n>>> ")  # the friendly REPL's prompt: not what was sent
        assert dl.read(6) == b"\r\n>>> " and dl.heard
    finally:
        port.close()


@pytest.mark.slow
def test_entering_a_silent_port_is_not_patient(monkeypatch):
    """A port that never sends a byte gets its tries, not ENTER_PATIENCE_S more (a board that sent
    anything, a restart's ROM lines included, does)."""
    import os

    from roadnode.errors import DeviceError

    m, s = os.openpty()
    port = os.ttyname(s)
    os.close(s)
    tries = []
    real = repl._Deadline

    class Counted(real):
        def __init__(self, *a, **k):
            tries.append(1)
            super().__init__(*a, **k)

    monkeypatch.setattr(repl, "_Deadline", Counted)
    monkeypatch.setattr(repl, "ENTER_PATIENCE_S", 12.0)  # room for more tries, were it patient
    try:
        r = repl.RawRepl(port)
        with pytest.raises(DeviceError, match="could not enter the raw REPL"):
            r.enter(tries=1)
        r.close()
    finally:
        os.close(m)
    assert len(tries) == 1
