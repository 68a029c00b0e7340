"""What is wired to the simulated board: devices on each I2C bus, the source behind each UART,
ADC readings, and faults. ``machine.py`` looks everything up here.

A test or the simulated board's boot script populates it before importing the firmware, e.g.::

    import simhw, dev_mpu6050
    simhw.attach_i2c(0, 0x68, dev_mpu6050.Mpu6050(source))
    simhw.attach_uart(2, source_with_read_method)

I2C device protocol (duck-typed):
    i2c_read_into(reg, buf)        # register read burst into buf (auto-increment or FIFO port);
                                   # must not allocate: the firmware's read path is measured with
                                   # the heap locked, as on the ESP32 where a bus read allocates nothing
    i2c_write(reg, data)           # register write burst
Either may raise OSError(errno) to model a NACK or bus error.

UART source protocol: ``read_into(buf, now_us) -> int`` copies the bytes that have arrived by
``now_us`` (at most len(buf)) and returns how many; ``any(now_us) -> int``.
"""

import micropython
import utime as _rt

_i2c = {}  # bus_id * 256 + addr -> device model
i2c_pins = {}  # bus_id -> (scl, sda) the devices are wired to
_uart = {}  # uart_id -> source
adc_uv = {}  # pin -> microvolts at the ADC pin
adc_damaged = set()  # ADC pins that saw more than 3.6 V (machine.ADC)
stream_t0_us = None  # board time of the scenario's t = 0 (the IMU's first sample)
uart_lost = {}  # uart_id -> bytes lost because the FIFO and rxbuf were full (machine.UART)
faults = {}  # name -> value, e.g. {"i2c_nack": (bus, addr, until_us)}; models check these


def attach_i2c(bus, addr, dev):
    """Put a device model on an I2C bus address."""
    _i2c[bus * 256 + addr] = dev  # int keys: a lookup allocates nothing


def detach_i2c(bus, addr):
    """Take the device at bus/addr away."""
    _i2c.pop(bus * 256 + addr, None)


@micropython.native
def i2c_device(bus, addr):
    """The device at bus/addr (None: nothing answers)."""
    return _i2c.get(bus * 256 + addr)


def i2c_addrs(bus):
    """Addresses with a device on the bus, sorted."""
    return sorted(k & 255 for k in _i2c if k >> 8 == bus)


def attach_uart(uart_id, source):
    """Feed a UART's RX from a source."""
    _uart[uart_id] = source


@micropython.native
def uart_source(uart_id):
    """What feeds a UART's RX (None: nothing)."""
    return _uart.get(uart_id)


def clear():
    """Detach everything and forget faults and losses."""
    _i2c.clear()
    _uart.clear()
    adc_uv.clear()
    faults.clear()
    uart_lost.clear()


# ---- board-level state the shims share -------------------------------------------------------
import uos as _os  # the built-in module (os.py here is the ESP32's view)


# Resets end the interpreter (SystemExit: no `except Exception` in the firmware can swallow one,
# and the REPL exits too); the exit code tells the supervisor which reset it was.
class WatchdogReset(SystemExit):
    """Raised from the next shim call after the watchdog expired (exit code 4)."""


class HardReset(SystemExit):
    """machine.reset(): a fresh interpreter with reset cause HARD (exit code 3)."""


class SoftReset(SystemExit):
    """machine.soft_reset(): restart with reset cause SOFT (exit code 0)."""


# reset cause for this boot (the runner sets RNSIM_RESET_CAUSE): 1 PWRON, 2 HARD, 3 WDT, 4 DEEPSLEEP, 5 SOFT
reset_cause = int(_os.getenv("RNSIM_RESET_CAUSE") or 1)
# folder for state that survives resets but not a power cut (RTC memory); None = this process only
state_dir = _os.getenv("RNSIM_STATE") or None
unique_id = b"\x24\x0a\xc4\x00\x00\x01"
wdt_deadline_us = -1
wdt_timeout_us = 0
timers = []  # soft timers: [next_us, period_us (0 = one shot), callback, timer]
_rtc_mem = b""


# RTC memory outlives the interpreter (a reset) in a small file of the board's state folder, opened
# now: once the flash is mounted at '/', the host's folders are out of reach. Layout: u16 length, data.
def _state_file(name, mode):
    """A file of the board's state folder, opened for reading and writing, created if missing."""
    try:
        return open(state_dir + "/" + name, "r+" + mode)
    except OSError:
        return open(state_dir + "/" + name, "w+" + mode)


_rtc_f = _state_file("rtc.bin", "b") if state_dir else None


# The watchdog outlives a soft reset (the ESP32's WDT keeps counting; only a hard reset, a watchdog
# reset or a power cut stop it): its timeout is kept in the state folder while it is armed. The new
# interpreter arms it again from its start (a soft reset counts as a feed: the deadline restarts).
_wdt_f = None
if state_dir:
    _wdt_f = _state_file("wdt.txt", "")
    _t = _wdt_f.read().strip()
    if reset_cause == 5 and _t:
        wdt_timeout_us = int(_t)
        wdt_deadline_us = wdt_timeout_us  # the clock starts at 0 in this interpreter
    else:
        _wdt_f.seek(0)
        _wdt_f.write(" " * 12)
    del _t


# Ctrl-C at a running program. The ESP32's UART ISR (or TinyUSB's callback) sees the byte and
# schedules a KeyboardInterrupt (mp_sched_keyboard_interrupt) that the VM raises at its next check,
# between bytecodes: never inside C code. The unix port raises it from its SIGINT handler wherever the
# interpreter is (MICROPY_ASYNC_KBD_INTR): inside a garbage collection that left the heap locked for
# good, and the "board" died at the REPL it was sent to (seen in CI as a 180 s mpremote hang). So the
# supervisor (board.py) asks here: a file of two fixed-width counts, the Ctrl-Cs it asked for (bytes
# 0-11) and those this interpreter served (12-23, written here only). The firmware's next clock read
# (time.py) raises the KeyboardInterrupt. Ctrl-Cs asked before this interpreter started are void.
_kbd_f = None
_kbd_buf = bytearray(11)
_kbd_served = 0
_kbd_next_us = 0  # board time of the next look (a look costs a read; ~every 10 ms of real time)
_kbd_rt = 0


def _kbd_asked():
    """The count of Ctrl-Cs the supervisor has asked for (0 if unreadable)."""
    _kbd_f.seek(0)
    n = _kbd_f.readinto(_kbd_buf)
    try:
        return int(_kbd_buf) if n == 11 else 0
    except ValueError:
        return 0


if state_dir:
    _kbd_f = _state_file("kbd", "b")
    _kbd_served = _kbd_asked()
    _kbd_f.seek(12)
    _kbd_f.write(b"%11d\n" % _kbd_served)


@micropython.native
def kbd_check(now_us):
    """At a clock read by the firmware: raise the KeyboardInterrupt a Ctrl-C asked for, if any."""
    global _kbd_next_us, _kbd_rt, _kbd_served
    if _kbd_f is None or now_us < _kbd_next_us:
        return
    _kbd_next_us = now_us + 10000
    t = _rt.ticks_ms()
    if _rt.ticks_diff(t, _kbd_rt) < 10:
        return
    _kbd_rt = t
    n = _kbd_asked()
    if n != _kbd_served:
        _kbd_served = n
        _kbd_f.seek(12)
        _kbd_f.write(b"%11d\n" % n)
        raise KeyboardInterrupt


def wdt_arm(timeout_us, now_us):
    """Arm the watchdog (in a file too: it survives a soft reset)."""
    global wdt_timeout_us, wdt_deadline_us
    wdt_timeout_us = timeout_us
    wdt_deadline_us = now_us + timeout_us
    if _wdt_f:
        _wdt_f.seek(0)
        _wdt_f.write("%-12d" % timeout_us)


def rtc_memory_get():
    """RTC memory as kept (a file, if the runner gave one)."""
    if _rtc_f:
        _rtc_f.seek(0)
        h = _rtc_f.read(2)
        if len(h) < 2:
            return b""
        return _rtc_f.read(h[0] | (h[1] << 8))
    return _rtc_mem


def rtc_memory_set(data):
    """Keep RTC memory (in the file too)."""
    global _rtc_mem
    _rtc_mem = bytes(data)
    if _rtc_f:
        _rtc_f.seek(0)
        _rtc_f.write(bytes((len(_rtc_mem) & 255, len(_rtc_mem) >> 8)) + _rtc_mem)


@micropython.native
def on_clock(now_us):
    """Called by the shims whenever the board's time is read: watchdog and soft timers."""
    if wdt_deadline_us >= 0 and now_us > wdt_deadline_us:
        raise WatchdogReset(4)
    if timers:
        for t in timers:
            if t[0] >= 0 and now_us >= t[0]:
                t[0] = now_us + t[1] if t[1] else -1
                t[2](t[3])
