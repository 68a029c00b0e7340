"""The raw REPL of a board, through mpremote's serial transport (raw-paste mode, its flow control),
opened the way ESP32 boards need: DTR/RTS left alone (they drive EN and IO0 and would reset or
strand the board), no soft reset on entry (every command re-resetting the board is what users of
board tools complain about), and a few tries to get in before giving up with a clear message.
"""

from __future__ import annotations

from roadnode.board.console import open_port
from roadnode.errors import DeviceError


def _transport_class():
    from mpremote.transport_serial import SerialTransport

    class Transport(SerialTransport):
        def __init__(self, port: str, baud: int):  # noqa: D401 - replaces the port opening only
            self.in_raw_repl = False
            self.use_raw_paste = True
            self.device_name = port
            self.mounted = False
            self.serial = open_port(port, baud)
            self.serial.timeout = 5  # a blocking read of mpremote's never waits forever
            self.is_pty = False  # inWaiting() works on ptys too: read as for a real port

    return Transport


class RawRepl:
    def __init__(self, port: str, baud: int = 115200):
        self.port = port
        self.t = _transport_class()(port, baud)

    def enter(self, tries: int = 3) -> None:
        """Stop what runs (Ctrl-C) and enter the raw REPL, without a soft reset."""
        from mpremote.transport import TransportError

        last = None
        for _ in range(tries):
            try:
                self.t.enter_raw_repl(soft_reset=False, timeout_overall=4)
                # a board still booting, or a line typed at its REPL before, can leave the first
                # exec garbled: prove the raw REPL works before trusting it
                out, err = self.t.exec_raw("print('rn' + 'ok')", timeout=4)
                if out.strip() == b"rnok" and not err:
                    return
                last = f"unexpected answer {out[-40:]!r} {err[-60:]!r}"
            except TransportError as e:
                last = e
                self.t.serial.write(b"\r\x03\x03\x02")  # interrupt again, back to the friendly REPL
                self.t.serial.reset_input_buffer()
        raise DeviceError(f"{self.port}: could not enter the raw REPL ({last}); is it a MicroPython board? "
                          "Try pressing its RST button.")

    def exec(self, code: str | bytes, timeout: float = 30) -> bytes:
        """Run code; its stdout. An exception on the board raises DeviceError with its message."""
        from mpremote.transport import TransportError

        try:
            out, err = self.t.exec_raw(code, timeout=timeout)
        except TransportError as e:
            raise DeviceError(f"{self.port}: the board stopped answering ({e})") from None
        except OSError as e:
            raise DeviceError(f"{self.port}: serial error: {e}") from None
        if err:
            lines = err.decode(errors="replace").strip().splitlines()
            raise DeviceError(f"{self.port}: on the board: {lines[-1] if lines else err!r}")
        return out

    def restart(self) -> None:
        """Leave the raw REPL and soft-reset: boot.py and main.py run again (the port stays up,
        which a hard reset of a native-USB board would not keep)."""
        self.t.exit_raw_repl()
        self.t.serial.write(b"\x04")
        self.t.in_raw_repl = False

    def close(self) -> None:
        try:
            self.t.serial.close()
        except Exception:
            pass
