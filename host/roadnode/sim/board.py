"""The simulated board: the unchanged firmware on the MicroPython unix port behind a pseudo-terminal
that behaves like an ESP32's USB serial port.

The supervisor owns two ptys: the user's (its slave path is the "port") and the interpreter's. It
relays bytes (CRLF line ends, as the ESP32's console prints), and does what the board's hardware and
MicroPython's ESP32 port do around the interpreter: a soft reset (Ctrl-D) ends the unix-port process,
so it starts a new one, prints "MPY: soft reboot" (friendly REPL) or "soft reboot" and comes back in
the raw REPL (raw REPL), as mpremote expects; machine.reset() and the watchdog restart it with the
matching reset cause. The flash is a LittleFS image in the flash folder, kept across resets.

The console's input path is the ESP32's: MicroPython's 260-byte stdin ring between the USB and the
interpreter (its fill is the unread bytes of the interpreter's pty). On a USB-UART bridge board the
UART ISR drops what does not fit; on a native-USB board (ESP32-S3) the host's bytes wait, and the
USB device leaves the bus at every reset but a soft one: the port (a /dev/serial/by-id-like link)
goes away and comes back on a new tty, as a vanished /dev/ttyACM0 does. On a bridge board every
reset but a soft one first prints the ESP32's ROM bootloader lines on the UART at 115200 baud
("ets Jun  8 2016 00:22:57", "rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)", ...), as
the chip's mask ROM does before any firmware runs; a tool sees a restart by them at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import threading
import time
import tty
from pathlib import Path

from roadnode.errors import DeviceError
from roadnode.mpy.runtime import ESP32_HEAP, NET_HEAP, SIM_HEAP_ALLOWANCE, micropython_cmd, micropython_env
from roadnode.mpy.build import compiled_sim
from roadnode.paths import BOARDS_DIR

RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n>"
EXIT_SOFT, EXIT_HARD, EXIT_WDT = 0, 3, 4
CAUSE = {EXIT_SOFT: 5, EXIT_HARD: 2, EXIT_WDT: 3}
# resets raised while boot.py/main.py run arrive as signals (see simboot._exit)
SIGNAL_EXIT = {-signal.SIGUSR1: EXIT_SOFT, -signal.SIGUSR2: EXIT_HARD, -signal.SIGTERM: EXIT_WDT}
# ports/esp32/mphalport.c: `static uint8_t stdin_ringbuf_array[260]`, filled by the console's
# receive path and read by mp_hal_stdin_rx_chr; py/ringbuf.h keeps one slot free, so it holds 259.
STDIN_RING = 260 - 1
# A native-USB board is back on the host's bus this long after a reset (boot, then TinyUSB's
# mp_usbd_init after boot.py, then enumeration and udev: ~0.5-1 s on an ESP32-S3).
USB_ENUM_S = 0.7
# TinyUSB's CDC TX FIFO (shared/tinyusb/tusb_config.h CFG_TUD_CDC_TX_BUFSIZE, full speed): what the
# board prints while no host reads the port waits there, the oldest bytes overwritten
CDC_TX_FIFO = 256
# a Ctrl-C the firmware has not taken at a clock read after this much of its CPU time: SIGINT
KBD_SIGINT_CPU_S = 1.0
# ... or once it has slept in a system call this long (a script blocked reading stdin)
KBD_SIGINT_BLOCKED_S = 0.3
# the host reads the device's buffered bytes this long after a tool opened the port (after the
# tool's own flush at open, as on a real bus: the cdc-acm driver starts reading at open)
CDC_OPEN_S = 0.05
# the ESP32's mask ROM, at every reset but a soft one (MicroPython's own), on UART0 at 115200 baud:
# rst:0x1 POWERON_RESET for power-on and the EN pin; esp_restart (machine.reset(), the task
# watchdog's panic handler) shows as 0xc SW_CPU_RESET. Then the second-stage loader's segments.
ROM_RESET = {1: b"0x1 (POWERON_RESET)", 2: b"0xc (SW_CPU_RESET)", 3: b"0xc (SW_CPU_RESET)"}
ROM_TAIL = (b",boot:0x13 (SPI_FAST_FLASH_BOOT)\r\nconfigsip: 0, SPIWP:0xee\r\n"
            b"clk_drv:0x00,q_drv:0x00,d_drv:0x00,cs0_drv:0x00,hd_drv:0x00,wp_drv:0x00\r\n"
            b"mode:DIO, clock div:2\r\nload:0x3fff0030,len:4728\r\nload:0x40078000,len:14888\r\n"
            b"load:0x40080400,len:3368\r\nentry 0x400805cc\r\n")


def rom_banner(cause: int) -> bytes:
    """What an ESP32's ROM prints on its UART when it comes out of reset (``cause``: MicroPython's
    reset cause, 1 power-on, 2 hard, 3 watchdog)."""
    return b"ets Jun  8 2016 00:22:57\r\n\r\nrst:" + ROM_RESET.get(cause, ROM_RESET[2]) + ROM_TAIL


class SimBoard:
    """One simulated board: its flash, its ports and the supervisor that runs the firmware on
    MicroPython behind them (see the module docstring)."""

    def __init__(self, board: str = "esp32-devkitc-mpu6050-neo6m", flash_dir: str | Path | None = None,
                 tape_dir: str | Path | None = None, gps_baud: int = 9600, baud: int = 0,
                 realtime: bool = False, faults: dict | None = None,
                 link_faults: list | None = None, network: bool = True, wifi: list | None = None,
                 net_outages: list | None = None):
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
        # how the console reaches the host: "bridge" (USB-UART chip, the port outlives resets) or
        # "native" (the chip's own USB: it re-enumerates at every reset but a soft one)
        self.usb = bd.get("console", {}).get("usb", "bridge")
        self.tape_dir = tape_dir
        self.gps_baud = gps_baud
        self.baud = baud  # pace the port like a USB-UART bridge at this baud (0 = unpaced)
        self.realtime = realtime
        self.faults = dict(faults or {})
        # the ESP32's WLAN and sockets (sim/mpy/network.py, socket.py): the access points around the
        # board ([{"ssid", "key"}], default "depot"/"roadnode") and outages on its clock since power-on
        # (each [from_us, until_us, kind] or "T0:T1[:KIND]" in seconds); net_outage() starts one now
        self.network = network
        self.wifi = wifi
        if net_outages:
            from roadnode.sim.faults import parse_net_outage

            self.faults["net"] = [parse_net_outage(o) if isinstance(o, str) else list(o) for o in net_outages]
        # faults of the serial line, host -> board (see arm_link_fault); applied at the relay
        self.link_faults = [dict(f) for f in link_faults or ()]
        self.rx_bytes = 0  # bytes the board has received from the host so far
        self.link_fired: list[dict] = []  # the faults applied: offset, kind, the byte before/after
        self.console_lost = 0  # bridge: bytes the host sent that found the stdin ring full (lost)
        self._held = b""  # native USB: the host's bytes the ring has no room for yet (NAKed, waiting)
        self._t_in = 0.0  # when bytes last went into the interpreter's pty
        self.usb_drops = 0  # native USB: times the device left the bus (tests wait on it)
        self._usb_back = 0.0  # native USB: when the device is enumerated again (port detached)
        self._host = True  # native USB: True: a tool has the port open; None: none; float: opened, FIFO due then
        self._fifo = b""  # native USB: output waiting in the CDC TX FIFO for a host
        self.um = self._us = -1
        if self.usb == "native":
            # a stable name as udev's /dev/serial/by-id gives (MicroPython's TinyUSB descriptor:
            # "MicroPython", "Board in FS mode", the chip's unique id as serial number)
            uid = hashlib.sha1(str(self.flash_dir.resolve()).encode()).hexdigest()[:12]
            self.port = str(self.flash_dir / f"usb-MicroPython_Board_in_FS_mode_{uid}-if00")
            self._usb_host()  # enumerated at power-on
        else:
            self._usb_attach()
            self.port = self.pts
        self.raw = False
        self.proc = None
        self.m = -1
        self._s = -1  # the interpreter's pty slave, kept open here: its unread bytes are the ring's fill
        self.resets = 0
        self._stop = threading.Event()
        self._cut = False
        self._power = threading.Lock()  # a power cut and the restart after an exit never interleave
        self.cuts = 0  # power cuts so far (power_cut() or an armed flash cut): tests wait on it
        self._flashcut = self.flash_dir / "flashcut"  # armed flash cut (flashdev.py); empty: none
        self._flashcut.write_bytes(b"")
        self._netfault = self.flash_dir / "netfault"  # a live network outage (network.py reads it)
        self._netfault.write_bytes(b"")
        self._booted = self.flash_dir / "booted"  # the interpreter is past the simulation's start-up
        self._kbd = self.flash_dir / "kbd"  # Ctrl-Cs asked for and served (sim/mpy/simhw.py)
        self._kbd.write_bytes(b"%11d\n%11d\n" % (0, 0))
        self._kbd_asked = 0
        self._kbd_wait = None  # (interpreter's CPU ticks, monotonic time) when an unserved Ctrl-C was asked
        self._kbd_held = b""  # bytes the host sent after it (USB-UART bridge; native: self._held)
        self._in_frame = False
        self._t_free = {"in": 0.0, "out": 0.0}
        self._thread = None

    # ---- interpreter ---------------------------------------------------------------------------
    def _start(self, cause: int, raw: bool):
        self._booted.unlink(missing_ok=True)  # (simboot writes it when boot.py is next: _interrupt_armed)
        self._kbd_wait = None  # (a new interpreter serves no Ctrl-C asked before it started)
        self._kbd_held = b""  # (bytes held behind it were the ring's: they go with the interpreter)
        m, s = pty.openpty()
        tty.setraw(s)
        env = micropython_env((), sim=True)
        sim_dir = compiled_sim()
        env["MICROPYPATH"] = os.pathsep.join([str(sim_dir), ".frozen"])
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
        heap = ESP32_HEAP + SIM_HEAP_ALLOWANCE
        if self.network:
            env["RNSIM_NET"] = "1"
            heap += NET_HEAP  # the network modules' own heap: the firmware keeps the ESP32's
            if self.wifi is not None:
                env["RNSIM_WIFI"] = json.dumps(self.wifi)
        from roadnode.mpy.runtime import heap_extra

        cmd = micropython_cmd(["-i", str(sim_dir / "simboot.py")], heap=heap + heap_extra())
        self.proc = subprocess.Popen(cmd, stdin=s, stdout=s, stderr=s, env=env, close_fds=True,
                                     start_new_session=True)
        self.m, self._s = m, s
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
        if self._host is not True:  # native USB, no tool reading: into the CDC FIFO
            self._fifo = self._fifo + data if self._host else (self._fifo + data)[-CDC_TX_FIFO:]
            return
        self._to_user_raw(data)

    def _to_user_raw(self, data: bytes):
        if self.baud:
            self._paced(data, "out", lambda c: os.write(self.um, c))
        else:
            os.write(self.um, data)

    def _paced(self, data: bytes, way: str, write):
        """Pass data on at the bridge's byte rate (10 bits per byte) in 64-byte pieces through
        ``write``, each direction on its own clock."""
        rate = self.baud / 10.0
        t = max(time.monotonic(), self._t_free[way])
        for i in range(0, len(data), 64):
            chunk = data[i : i + 64]
            t += len(chunk) / rate
            delay = t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            write(chunk)
        self._t_free[way] = t

    def _interrupt_armed(self) -> bool:
        """Is Ctrl-C an interrupt right now? MicroPython arms it while it executes code and
        disarms it while the REPL reads a line (mp_hal_set_interrupt_char), as the ESP32's UART
        ISR sees it when the byte arrives. The unix port arms it by catching SIGINT: read that
        from the kernel instead of guessing from the prompt. Never before simboot has reached
        boot.py: until then the process is CPython's start (the launcher, which catches SIGINT
        too) or the simulation's own, which an ESP32's ROM and C start-up are; a SIGINT there
        killed the "board" (a reset no ESP32 does: mpremote then waited for ever, in CI). The
        byte then waits in the ring as an ordinary one, as on the ESP32."""
        try:
            if not self._booted.stat().st_size:  # (created empty at simboot's start, written at boot.py)
                return False
        except FileNotFoundError:
            return False
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("SigCgt:"):
                        return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
        except (OSError, ValueError):
            pass
        return False

    # ---- the serial line ---------------------------------------------------------------------------
    def arm_link_fault(self, after: int = 0, kind: str = "flip", mask: int = 0x01, offset: int | None = None) -> int:
        """Corrupt one byte the host sends: at absolute ``offset`` of the host->board stream, or
        ``after`` bytes past those received so far. ``flip``: XOR with ``mask``; ``drop``: lost
        (noise or an overrun on a real line). Returns the absolute offset."""
        if kind not in ("flip", "drop"):
            raise ValueError(f"link fault kind {kind!r}: flip or drop")
        at = self.rx_bytes + after if offset is None else offset
        self.link_faults.append({"offset": at, "kind": kind, "mask": mask})
        return at

    def _line(self, d: bytes) -> bytes:
        """The host's bytes as the board receives them (armed link faults applied)."""
        start = self.rx_bytes
        self.rx_bytes += len(d)
        hit = [f for f in self.link_faults if start <= f["offset"] < self.rx_bytes]
        if not hit:
            return d
        b = bytearray(d)
        for f in sorted(hit, key=lambda f: -f["offset"]):  # from the end: drops keep earlier offsets
            i = f["offset"] - start
            was = b[i]
            if f["kind"] == "drop":
                del b[i]
            else:
                b[i] ^= f.get("mask", 1) or 1
            self.link_fired.append({**f, "was": was})
            self.link_faults.remove(f)
        return bytes(b)

    # ---- the console's stdin ring -------------------------------------------------------------------
    def _ring_free(self) -> int:
        """Room left in the stdin ring: its size less the bytes the interpreter has not read yet
        (the kernel's count on the interpreter's pty)."""
        wait = self._t_in + 0.001 - time.monotonic()
        if wait > 0:  # the pty hands written bytes on asynchronously (~10 us): count them too
            time.sleep(wait)
        try:
            n = struct.unpack("i", fcntl.ioctl(self._s, termios.FIONREAD, b"\0\0\0\0"))[0]
        except OSError:
            n = 0
        return max(STDIN_RING - n, 0)

    def _interrupt(self, d: bytes) -> tuple[bytes, bytes]:
        """(the bytes before a Ctrl-C that interrupts, those after it) or (d, b"")."""
        if b"\x03" in d and self._interrupt_armed():
            # a running program: Ctrl-C is a keyboard interrupt, raised at the firmware's next
            # clock read (simhw.kbd_check: as the ESP32 raises it between bytecodes, never inside C
            # code, where the unix port's SIGINT would). The byte never reaches the ring, and what
            # follows it waits until the interrupt is taken: the ESP32 raises it within
            # microseconds, before a tool's next bytes (mpremote's Ctrl-A) could be read by the
            # program it stops.
            i = d.index(b"\x03")
            self._kbd_asked += 1
            with open(self._kbd, "r+b") as f:
                f.write(b"%11d\n" % self._kbd_asked)
            self._kbd_wait = (self._proc_stat()[1], time.monotonic())
            return d[:i], d[i + 1 :]
        return d, b""

    def _kbd_follow(self) -> None:
        """An unserved Ctrl-C. Code that never reads the clock gets SIGINT, the unix port's only
        other way in: a loop typed at the REPL after KBD_SIGINT_CPU_S of its own CPU time (not
        wall time: a loaded machine's interpreter may just not have run), code blocked in a
        system call (a script reading stdin: the ESP32's stdin wait takes the interrupt) once it
        has slept there KBD_SIGINT_BLOCKED_S (a node's console wait reads the clock every 50 ms)."""
        try:
            served = int(self._kbd.read_bytes()[12:23])
        except (OSError, ValueError):
            served = -1
        state, ticks = self._proc_stat()
        if served >= self._kbd_asked or not self._interrupt_armed():
            self._kbd_wait = None
        elif ticks - self._kbd_wait[0] >= KBD_SIGINT_CPU_S * os.sysconf("SC_CLK_TCK") or (
                state == "S" and time.monotonic() - self._kbd_wait[1] >= KBD_SIGINT_BLOCKED_S):
            self.proc.send_signal(signal.SIGINT)
            self._kbd_wait = None
        if self._kbd_wait is None:  # the bytes that followed the Ctrl-C go on
            if self.usb == "native":
                self._feed()
            else:
                held, self._kbd_held = self._kbd_held, b""
                if held:
                    self._to_board(held)

    def _proc_stat(self) -> tuple[str, int]:
        """The interpreter's state (R running or runnable, S asleep in a system call, ...) and
        CPU time so far in clock ticks (/proc/PID/stat: state, utime + stime)."""
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                v = f.read().rsplit(")", 1)[1].split()
            return v[0], int(v[11]) + int(v[12])
        except (OSError, IndexError, ValueError):
            return "?", 0

    def _into_ring(self, d: bytes) -> int:
        """Put what fits into the ring; the number of bytes that did not fit."""
        free = self._ring_free()
        put = d[:free]
        if put:
            try:
                os.write(self.m, put)
            except OSError:
                pass
            self._t_in = time.monotonic()
        return len(d) - len(put)

    def _to_board(self, d: bytes):
        """The host's bytes into the console. Bridge (UART0): ports/esp32/uart.c's ISR drains the
        128-byte FIFO at once, sees Ctrl-C in every byte, and ringbuf_put() drops what finds the
        ring full: lost, counted in console_lost. Native USB: see _feed."""
        if self.usb == "native":
            self._held += d
            self._feed()
            return
        if self._kbd_wait is not None:  # a Ctrl-C not taken yet (_interrupt)
            self._kbd_held += d
            return
        d, after = self._interrupt(d)
        self._kbd_held += after
        if not self.baud:
            self.console_lost += self._into_ring(d)
            return
        self._paced(d, "in", self._ring_paced)  # the ring fills as fast as the line runs

    def _ring_paced(self, chunk: bytes) -> None:
        self.console_lost += self._into_ring(chunk)

    def _feed(self):
        """Native USB: TinyUSB takes bytes only while the ring has room (shared/tinyusb/
        mp_usbd_cdc.c tud_cdc_rx_cb: `if (ringbuf_free(&stdin_ringbuf)) ... else pending`); the
        rest stays in the USB FIFO and the endpoint NAKs, so the host's writes wait: nothing is
        lost. Ctrl-C is seen only when its byte reaches the ring."""
        while self._held:
            if self._kbd_wait is not None:  # a Ctrl-C not taken yet (_interrupt): the rest waits
                return
            free = self._ring_free()
            if not free:
                return
            d, after = self._interrupt(self._held[:free])
            self._held = after + self._held[free:]
            try:
                if self.baud:
                    self._paced(d, "in", lambda c: os.write(self.m, c))
                else:
                    os.write(self.m, d)
            except OSError:
                pass
            self._t_in = time.monotonic()

    # ---- native USB -----------------------------------------------------------------------------
    def _usb_attach(self):
        """A new tty for the port (the host enumerated the device)."""
        self.um, us = pty.openpty()
        tty.setraw(us)
        self._us = us
        self.pts = os.ttyname(us)

    def _usb_host(self):
        """Native USB: follow whether a tool has the port open (the pty master reports a hangup
        while nobody does); the FIFO's bytes go to a tool shortly after it opened the port."""
        if self.um < 0:
            if time.monotonic() >= self._usb_back:  # enumerated again, on a new tty
                self._usb_attach()
                os.close(self._us)  # the supervisor does not hold the port: a tool's open is seen
                self._us = -1
                self._usb_hup = select.poll()
                self._usb_hup.register(self.um, select.POLLIN)
                self._host = None
                self._usb_link()
            return
        if any(ev & select.POLLHUP for _, ev in self._usb_hup.poll(0)):
            self._host = None
        elif self._host is None:
            self._host = time.monotonic() + CDC_OPEN_S
        elif self._host is not True and time.monotonic() >= self._host:
            self._host = True
            fifo, self._fifo = self._fifo, b""
            self._to_user_raw(fifo)

    def _usb_link(self):
        tmp = self.port + ".new"
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        os.symlink(self.pts, tmp)
        os.replace(tmp, self.port)  # atomic: a tool never sees a half-made link

    def _usb_detach(self):
        """The device leaves the bus: the by-id link goes, then the tty itself, so a program
        holding the port gets EOF/EIO (as with a vanished /dev/ttyACM0) and one opening it finds
        nothing until the board is enumerated again."""
        self._usb_back = time.monotonic() + USB_ENUM_S  # (a reset while off the bus: later still)
        if self.um < 0:
            return
        try:
            os.unlink(self.port)
        except FileNotFoundError:
            pass
        for fd in (self.um, self._us):
            if fd >= 0:
                os.close(fd)
        self.um = self._us = -1
        self._held = b""  # what the host had not got across died with its tty
        self._host, self._fifo = None, b""  # the reset emptied the FIFO too
        self.usb_drops += 1

    # ---- relay -----------------------------------------------------------------------------------
    def _rom(self, cause: int) -> None:
        if self.usb != "native":  # (native USB: the ROM's lines go to a port that is not there yet)
            self._to_user(rom_banner(cause))

    def _loop(self):
        self._rom(1)
        self._start(1, False)  # power on
        tail = b""
        while not self._stop.is_set():
            if self.usb == "native":
                self._usb_host()
            # held bytes (native USB): the host's side waits, nothing more is read until they fit
            rd = [self.m] + ([self.um] if self._host is True and not self._held else [])
            fast = self._held or self._kbd_wait is not None
            r, _, _ = select.select(rd, [], [], 0.005 if fast else 0.05 if self._host is True else 0.02)
            if self._held:
                self._feed()
            if self.um in r:
                # Read without blocking: select may have seen the hang-up of a tool that closed the
                # port, and another may have opened it since; a blocking read would then wait for
                # that tool's first byte and hold the whole board (a power cut went unseen in CI).
                os.set_blocking(self.um, False)
                try:
                    d = os.read(self.um, 4096)
                except OSError:  # EIO: nobody holds the port; BlockingIOError: the race above
                    d = b""
                finally:
                    os.set_blocking(self.um, True)
                if d:
                    d = self._line(d)
                    if self.raw and b"\x02" in d:
                        self.raw = False
                        tail = b""  # the raw banner seen before must not count again
                    self._to_board(d)
            if self._kbd_wait is not None:
                self._kbd_follow()
            if self.m in r:
                d = self._read_child(0)
                if d:
                    tail = (tail + d)[-64:]
                    if b"raw REPL; CTRL-B to exit" in tail:
                        # once per banner: a later short output (the friendly banner after Ctrl-B
                        # arrives in pieces) would otherwise find this one again and turn raw back
                        # on, and the next Ctrl-D would soft-reset into the raw REPL (seen in CI)
                        self.raw = True
                        tail = b""
                    self._to_user(d)
            if self.proc.poll() is not None:
                # drain what it printed last
                while True:
                    d = self._read_child(0.02)
                    if not d:
                        break
                    self._to_user(d)
                # Deciding the reset cause and starting the next interpreter is one step under the
                # power lock: a power_cut() in between would find no live process to kill, the
                # restart would go ahead as the deliberate/soft reset it was, and the cut would be
                # lost (seen as reset_reason "deliberate" after a cut under load).
                with self._power:
                    code = SIGNAL_EXIT.get(self.proc.returncode, self.proc.returncode)
                    os.close(self.m)
                    os.close(self._s)  # the ring's unread bytes go with the interpreter
                    self._in_frame = False
                    cause = CAUSE.get(code, 2)
                    if self._flash_cut_fired():
                        self._cut = True
                        self.cuts += 1
                    if self._cut:  # power came back: RTC memory is gone, reset cause is power-on
                        self._cut = False
                        (self.flash_dir / "rtc.bin").unlink(missing_ok=True)
                        cause = 1
                        self.raw = False
                        code = EXIT_HARD
                    if code == EXIT_SOFT:
                        self._to_user(b"soft reboot\r\n" if self.raw else b"MPY: soft reboot\r\n")
                    elif self.usb == "native":
                        # a hard/watchdog reset, deep sleep or power cut resets the USB peripheral; a
                        # soft reset keeps it (ports/esp32/main.c: mp_usbd_deinit() only disconnects
                        # a runtime USBDevice, and the firmware uses none)
                        self._usb_detach()
                    else:
                        self._rom(cause)
                    # counted once the reset's effects are out (the ROM's lines, a native-USB port
                    # gone): a test that saw the count rise and then waited for the port found the
                    # old port's link still there, opened it, and got EIO when it went (seen once)
                    self.resets += 1
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
        self.run_main()

    def run_main(self):
        """As a user at the port: leave the raw REPL (Ctrl-B), then Ctrl-D: soft reboot runs main.py."""
        fd = os.open(self.port, os.O_RDWR | os.O_NOCTTY)
        try:
            os.write(fd, b"\r\x02")
            time.sleep(0.2)  # the REPL prints its banner before it reads the Ctrl-D
            os.write(fd, b"\x04")
        finally:
            os.close(fd)

    def power_cut(self):
        """Cut the power now: the interpreter dies mid-whatever; the flash image keeps exactly what
        was written; the board then powers up again (reset cause PWRON, RTC memory lost). If the
        board is between two interpreters (a reset under way), the cut applies to that restart."""
        with self._power:
            self._cut = True
            self.cuts += 1
            if self.proc and self.proc.poll() is None:
                self.proc.kill()

    def net_outage(self, kind: str = "assoc") -> None:
        """A network outage from now until net_restore() (kinds: sim/mpy/network.py; assoc: the access
        point goes away). The board sees it within ~20 ms of real time; it outlives resets and power
        cuts (the network is not the board's)."""
        from roadnode.sim.faults import NET_KINDS

        if kind not in NET_KINDS:
            raise ValueError(f"net outage kind {kind!r}: one of {', '.join(NET_KINDS)}")
        self._net_write(kind)

    def net_restore(self) -> None:
        """The network is back (after net_outage())."""
        self._net_write("")

    def _net_write(self, kind: str) -> None:
        with open(self._netfault, "r+b") as f:  # in place, one fixed-width write: the board reads it
            f.write(b"%-15s\n" % kind.encode())

    def arm_flash_cut(self, n: int) -> None:
        """The power fails after the next ``n`` bytes programmed into the flash, counted across
        resets, mid-page if it falls there (torn write, see sim/mpy/flashdev.py); then the board
        powers up again as after power_cut(). A huge ``n`` measures: flash_budget() tells what is
        left. ``n < 0`` disarms."""
        with open(self._flashcut, "r+b") as f:  # in place, one fixed-width write: the device reads it
            f.write(b"%12s\n" % (b"" if n < 0 else b"%d" % n))

    def flash_budget(self) -> int:
        """Bytes the armed flash cut still allows (-1: none armed)."""
        t = self._flashcut.read_bytes().strip()
        return int(t) if t else -1

    def _flash_cut_fired(self) -> bool:
        if self.flash_budget() != 0:
            return False
        self.arm_flash_cut(-1)  # once: the board powers up with the flash as the cut left it
        return True

    def start(self):
        """Power the board on: the relay thread starts the firmware (idempotent)."""
        if self._thread is not None:  # `with board.start()` or a second start: one relay only
            return self
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Power off: the relay ends, the interpreter is killed, a native-USB port goes away."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.usb == "native":  # unplugged
            try:
                os.unlink(self.port)
            except FileNotFoundError:
                pass
        for fd in (self.um, self._us, self.m, self._s):
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


def wait_repl(port: str, timeout: float = 120.0) -> None:
    """Wait until the board's interpreter answers at its friendly REPL (after a start, reset or
    power cut): a tool's Ctrl-C before that would interrupt its start-up. The sum typed here waits
    in the port until the REPL reads it (typed again while none comes: bytes sent while a board
    restarts are lost); its answer, not an old prompt, is the sign. The timeout only stops a hang."""
    fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
    try:
        seen = b""
        end = time.monotonic() + timeout
        ask = 0.0
        while b"42042" not in seen:
            now = time.monotonic()
            if now >= end:
                raise DeviceError(f"{port}: the board's REPL never answered")
            if now >= ask:  # again every 2 s: bytes sent while the board restarts are lost
                os.write(fd, b"\r6*7*1001\r")
                ask = now + 2.0
            if select.select([fd], [], [], 0.1)[0]:
                seen = (seen + os.read(fd, 4096))[-64:]
    finally:
        os.close(fd)
