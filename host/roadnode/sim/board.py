"""The simulated board: the unchanged firmware on the MicroPython unix port behind a pseudo-terminal
that behaves like an ESP32's USB serial port.

The supervisor owns two ptys: the user's (its slave path is the "port") and the interpreter's. It
relays bytes (CRLF line ends, as the ESP32's console prints), and does what the board's hardware and
MicroPython's ESP32 port do around the interpreter: a soft reset (Ctrl-D) ends the unix-port process,
so it starts a new one, prints "MPY: soft reboot" (friendly REPL) or "soft reboot" and comes back in
the raw REPL (raw REPL), as mpremote expects; machine.reset() and the watchdog restart it with the
matching reset cause. The flash is a LittleFS image in the flash folder, kept across resets.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import threading
import time
import tty
from pathlib import Path

from roadnode.mpy.runtime import ESP32_HEAP, SIM_HEAP_ALLOWANCE, micropython_cmd, micropython_env
from roadnode.paths import BOARDS_DIR, SIM_MPY_DIR

RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n>"
EXIT_SOFT, EXIT_HARD, EXIT_WDT = 0, 3, 4
CAUSE = {EXIT_SOFT: 5, EXIT_HARD: 2, EXIT_WDT: 3}
# resets raised while boot.py/main.py run arrive as signals (see simboot._exit)
SIGNAL_EXIT = {-signal.SIGUSR1: EXIT_SOFT, -signal.SIGUSR2: EXIT_HARD, -signal.SIGTERM: EXIT_WDT}


class SimBoard:
    def __init__(self, board: str = "esp32-devkitc-mpu6050-neo6m", flash_dir: str | Path | None = None,
                 tape_dir: str | Path | None = None, gps_baud: int = 9600, baud: int = 0,
                 realtime: bool = False, faults: dict | None = None):
        bp = BOARDS_DIR / f"{board}.json"
        if not bp.exists():
            from roadnode.errors import InputError

            raise InputError(f"unknown board {board!r}")
        self.board_path = bp
        import tempfile

        bd = json.loads(bp.read_text())
        self._tmp = None
        if flash_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="roadnode-flash-")
            flash_dir = self._tmp.name
        self.flash_dir = Path(flash_dir)
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        self.fs_blocks = bd["mcu"].get("fs_bytes", 2097152) // 4096
        self.tape_dir = tape_dir
        self.gps_baud = gps_baud
        self.baud = baud  # pace the port like a USB-UART bridge at this baud (0 = unpaced)
        self.realtime = realtime
        self.faults = dict(faults or {})
        self.um, us = pty.openpty()
        tty.setraw(us)
        self._us = us
        self.port = os.ttyname(us)
        self.raw = False
        self.proc = None
        self.m = -1
        self.resets = 0
        self._stop = threading.Event()
        self._cut = False
        self._in_frame = False
        self._t_free = {"in": 0.0, "out": 0.0}
        self._thread = None

    # ---- interpreter ---------------------------------------------------------------------------
    def _start(self, cause: int, raw: bool):
        m, s = pty.openpty()
        tty.setraw(s)
        env = micropython_env((), sim=True)
        env["MICROPYPATH"] = os.pathsep.join([str(SIM_MPY_DIR), ".frozen"])
        env.update({
            "RNSIM_FLASH": str(self.flash_dir / "flash.img"),
            "RNSIM_FS_BLOCKS": str(self.fs_blocks),
            "RNSIM_BOARD": str(self.board_path),
            "RNSIM_STATE": str(self.flash_dir),
            "RNSIM_RESET_CAUSE": str(cause),
            "RNSIM_RAW": "1" if raw else "0",
            "RNSIM_GPS_BAUD": str(self.gps_baud),
            "RNSIM_REALTIME": "1" if self.realtime else "0",
            "RNSIM_FAULTS": json.dumps(self.faults),
        })
        if self.tape_dir:
            env["RNSIM_TAPE"] = str(self.tape_dir)
        cmd = micropython_cmd(["-i", str(SIM_MPY_DIR / "simboot.py")], heap=ESP32_HEAP + SIM_HEAP_ALLOWANCE)
        self.proc = subprocess.Popen(cmd, stdin=s, stdout=s, stderr=s, env=env, close_fds=True,
                                     start_new_session=True)
        os.close(s)
        self.m = m
        if raw:  # come back in the raw REPL, hiding the banner, as the ESP32 does after soft reboot
            self._expect_raw()

    def _read_child(self, timeout):
        r, _, _ = select.select([self.m], [], [], timeout)
        if not r:
            return b""
        try:
            return os.read(self.m, 4096)
        except OSError:
            return b""

    def _expect_raw(self, timeout=10.0):
        buf = b""
        t_end = time.monotonic() + timeout
        while b">>> " not in buf and time.monotonic() < t_end:
            buf += self._read_child(0.05)
        os.write(self.m, b"\x01")
        buf = b""
        while RAW_PROMPT not in buf and time.monotonic() < t_end:
            buf += self._read_child(0.05)
        self._to_user(RAW_PROMPT[:-1] + b">" if RAW_PROMPT in buf else b"")
        self.raw = True

    def _cook(self, data: bytes) -> bytes:
        """Text gets the ESP32 console's CRLF line ends; binary packet frames (COBS between 0x00
        bytes, written raw as the ESP32's sys.stdout.buffer does) pass untouched."""
        parts = data.split(b"\x00")
        out = []
        for i, part in enumerate(parts):
            if i:
                out.append(b"\x00")
                self._in_frame = not self._in_frame
            out.append(part if self._in_frame else part.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
        return b"".join(out)

    def _to_user(self, data: bytes):
        if not data:
            return
        data = self._cook(data)
        if self.baud:
            self._paced(self.um, data, "out")
        else:
            os.write(self.um, data)

    def _paced(self, fd, data: bytes, way: str):
        """Write at the bridge's byte rate (10 bits per byte), each direction on its own clock."""
        rate = self.baud / 10.0
        t = max(time.monotonic(), self._t_free[way])
        for i in range(0, len(data), 64):
            chunk = data[i : i + 64]
            t += len(chunk) / rate
            delay = t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            os.write(fd, chunk)
        self._t_free[way] = t

    @staticmethod
    def _idle(tail: bytes) -> bool:
        """The interpreter waits at a prompt (friendly or raw), so a Ctrl-C byte is for the REPL."""
        return tail.endswith(b">>> ") or tail.endswith(b"\r\n>") or tail.endswith(b"\x04>") or tail.endswith(b"... ")

    def _interrupt_armed(self) -> bool:
        """Is Ctrl-C an interrupt right now? MicroPython arms it while it executes code and
        disarms it while the REPL reads a line (mp_hal_set_interrupt_char), as the ESP32's UART
        ISR sees it when the byte arrives. The unix port arms it by catching SIGINT: read that
        from the kernel instead of guessing from the prompt."""
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("SigCgt:"):
                        return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
        except (OSError, ValueError):
            pass
        return False

    # ---- relay -----------------------------------------------------------------------------------
    def _loop(self):
        self._start(1, False)  # power on
        tail = b""
        while not self._stop.is_set():
            r, _, _ = select.select([self.um, self.m], [], [], 0.05)
            if self.um in r:
                try:
                    d = os.read(self.um, 4096)
                except OSError:
                    d = b""
                if d:
                    if self.raw and b"\x02" in d:
                        self.raw = False
                    if b"\x03" in d and self._interrupt_armed():
                        # a running program: Ctrl-C is a keyboard interrupt (the unix port takes it
                        # as SIGINT; its tty here is raw, so the supervisor delivers it)
                        self.proc.send_signal(signal.SIGINT)
                        d = d.replace(b"\x03", b"")
                    try:
                        if self.baud:
                            self._paced(self.m, d, "in")
                        else:
                            os.write(self.m, d)
                    except OSError:
                        pass
            if self.m in r:
                d = self._read_child(0)
                if d:
                    tail = (tail + d)[-64:]
                    if b"raw REPL; CTRL-B to exit" in tail:
                        self.raw = True
                    self._to_user(d)
            code = self.proc.poll()
            if code is not None:
                # drain what it printed last
                while True:
                    d = self._read_child(0.02)
                    if not d:
                        break
                    self._to_user(d)
                code = SIGNAL_EXIT.get(code, code)
                os.close(self.m)
                self._in_frame = False
                self.resets += 1
                cause = CAUSE.get(code, 2)
                if self._cut:  # power came back: RTC memory is gone, reset cause is power-on
                    self._cut = False
                    (self.flash_dir / "rtc.bin").unlink(missing_ok=True)
                    cause = 1
                    self.raw = False
                if code == EXIT_SOFT:
                    self._to_user(b"soft reboot\r\n" if self.raw else b"MPY: soft reboot\r\n")
                self._start(cause, self.raw and code == EXIT_SOFT)
                tail = b""

    def deploy(self, config: dict | None = None, timeout: float = 60) -> None:
        """Put the current firmware on the board's flash as a technician would (compiled .mpy,
        board definition, config, boot.py/main.py) with mpremote, then soft-reset so main.py runs."""
        import json as _json
        import subprocess
        import sys
        import tempfile

        from roadnode.mpy.build import compiled_firmware
        from roadnode.paths import FIRMWARE_DIR

        mp = [sys.executable, "-m", "mpremote", "connect", self.port]
        with tempfile.TemporaryDirectory() as d:
            cfg = Path(d) / "config.json"
            cfg.write_text(_json.dumps(config or {}))
            steps = [
                ["fs", "cp", "-r", str(compiled_firmware() / "rnfw"), ":"],
                ["fs", "cp", str(self.board_path), ":board.json"],
                ["fs", "cp", str(cfg), ":config.json"],
                ["fs", "cp", str(FIRMWARE_DIR / "boot.py"), ":boot.py"],
                ["fs", "cp", str(FIRMWARE_DIR / "main.py"), ":main.py"],
            ]
            for st in steps:
                r = subprocess.run(mp + st, capture_output=True, text=True, timeout=timeout)
                if r.returncode != 0:
                    raise RuntimeError(f"deploy step {' '.join(st)} failed: {r.stderr.strip()}")
        # as a user at the port: leave the raw REPL (Ctrl-B), then Ctrl-D: soft reboot runs main.py
        os.write(self._us, b"\r\x02")
        time.sleep(0.2)
        os.write(self._us, b"\x04")

    def power_cut(self):
        """Cut the power now: the interpreter dies mid-whatever; the flash image keeps exactly what
        was written; the board then powers up again (reset cause PWRON, RTC memory lost)."""
        self._cut = True
        if self.proc and self.proc.poll() is None:
            self.proc.kill()

    def start(self):
        if self._thread is not None:  # `with board.start()` or a second start: one relay only
            return self
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for fd in (self.um, self._us):
            try:
                os.close(fd)
            except OSError:
                pass
        if self._tmp:
            self._tmp.cleanup()

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()
