"""`machine` for the simulated ESP32: only what the ESP32 port has, backed by simhw device models.

A firmware call that would fail on the ESP32 fails here too (e.g. Timer(hard=True), I2C to an
absent address raises OSError ENODEV).

On the ESP32 all of this is built-in C: every entry point the firmware calls brackets its own
work with simclock.fw()/mark() (try/finally where it may raise), so the simulated board charges
the firmware's execution only, never the shims' or the device models'.
"""

import errno
import micropython

import esp  # noqa: F401  the ESP32's built-in modules the shims stand in for, loaded with them:
import select  # noqa: F401  their heap is the simulation's, not the firmware's
import simclock
import simhw
from tape import copy_bytes
import time as _time

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

_freq = 160000000


def freq(f=None):
    """Get or set the CPU frequency (only the ESP32's)."""
    global _freq
    if f is None:
        return _freq
    if f not in (20000000, 40000000, 80000000, 160000000, 240000000):
        raise ValueError("frequency must be 20MHz, 40MHz, 80Mhz, 160MHz or 240MHz")
    _freq = f


def reset_cause():
    """Why the board last reset."""
    return simhw.reset_cause  # (too small to bracket: a global read)


def reset():
    """Hard reset (the runner restarts the board)."""
    raise simhw.HardReset(3)


def soft_reset():
    """Soft reset (the runner restarts the interpreter)."""
    raise simhw.SoftReset(0)


def unique_id():
    """The board's id bytes (its MAC)."""
    return simhw.unique_id


def idle():
    """Wait a little for an interrupt."""
    _time.sleep_us(100)  # bracketed there


def disable_irq():
    """No-op (IRQs are soft here)."""
    return 0


def enable_irq(state=0):
    """No-op (IRQs are soft here)."""
    pass


class Pin:
    """A GPIO: a value, nothing wired."""

    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, id, mode=-1, pull=-1, value=None):
        if not isinstance(id, int) or not 0 <= id <= 48:
            raise ValueError("invalid pin")
        self.id = id
        self._v = 0
        self.mode = mode
        if value is not None:
            self._v = 1 if value else 0

    def init(self, mode=-1, pull=-1, value=None):
        """Reconfigure; sets the value if given."""
        simclock.fw()
        if value is not None:
            self._v = 1 if value else 0
        simclock.mark()

    def value(self, v=None):
        """Get, or set with ``v``."""
        simclock.fw()
        if v is not None:
            self._v = 1 if v else 0
        simclock.mark()
        return self._v if v is None else None

    def on(self):
        """Drive the pin high."""
        simclock.fw()
        self._v = 1
        simclock.mark()

    def off(self):
        """Drive the pin low."""
        simclock.fw()
        self._v = 0
        simclock.mark()

    def irq(self, handler=None, trigger=3, hard=False):
        """Accept a soft handler (never fires); hard ones fail as on the ESP32."""
        if hard:
            raise ValueError("hard interrupts not supported on this port")  # ESP32: IRQs are soft


def _pin_id(p):
    return p if isinstance(p, int) else getattr(p, "id", p)


class I2C:
    """Hardware I2C to the simhw device models, with bus time and NACKs."""

    def __init__(self, id=0, scl=None, sda=None, freq=400000, timeout=50000):
        simclock.fw()
        try:
            self._init(id, scl, sda, freq)
        finally:
            simclock.mark()

    def _init(self, id, scl, sda, freq):
        if id not in (0, 1):
            raise ValueError("I2C(%s) doesn't exist" % id)
        if simhw.faults.get("i2c_init"):  # the driver cannot be installed (fault injection)
            raise OSError(errno.EIO)
        self.id = id
        self.freq = freq
        # the devices are wired to the board's pins: a bus on other pins finds nothing
        pins = simhw.i2c_pins.get(id)
        self.wired = pins is None or scl is None or (_pin_id(scl), _pin_id(sda)) == pins

    @micropython.native
    def _dev(self, addr):
        f = simhw.faults
        t0 = simhw.stream_t0_us  # faults count from the first IMU sample of this boot, as documented:
        # before it (a slow boot) the bus is fine, or a boot longer than T would hang before its heartbeat
        if f.get("hang", -1) >= 0 and t0 is not None and f.get("hang_from", 0) <= simclock.now_us() - t0:
            while True:  # the bus locks up and the firmware with it: only the watchdog gets it back
                _time.sleep_ms(100)
        d = simhw.i2c_device(self.id, addr) if self.wired else None
        if d is None:
            self._nack()
        return d

    def _nack(self):
        """No ACK: ESP-IDF's I2C master driver logs an error line on the console (unless the
        firmware turned IDF logging off: esp.osdebug), then MicroPython raises OSError."""
        esp.log(esp.LOG_ERROR, "i2c.master", "I2C transaction unexpected nack detected")
        raise OSError(errno.ENODEV)

    @micropython.native
    def _cost(self, n):
        # bus time: ~9 bits per byte plus address/register overhead at the bus frequency
        _time._sleep((n + 3) * 9 * 1000000 // self.freq)

    def scan(self):
        """Addresses of the devices attached to this bus."""
        simclock.fw()
        r = [a for a in simhw.i2c_addrs(self.id)] if self.wired else []
        simclock.mark()
        return r

    def readfrom_mem(self, addr, memaddr, nbytes, addrsize=8):
        """Read nbytes from a device's register."""
        simclock.fw()
        try:
            buf = bytearray(nbytes)
            self.readfrom_mem_into(addr, memaddr, buf)
            return bytes(buf)
        finally:
            simclock.mark()

    # simclock.fw()/mark() around each transfer: the register model's work is not firmware CPU
    @micropython.native
    def readfrom_mem_into(self, addr, memaddr, buf, addrsize=8):
        """Read a device's registers into buf."""
        simclock.fw()
        try:
            self._cost(len(buf))
            d = self._dev(addr)  # absent: NACK (logged there)
            try:
                d.i2c_read_into(memaddr, buf)
            except OSError:  # the device NACKed (a model's fault)
                self._nack()
        finally:
            simclock.mark()

    def writeto_mem(self, addr, memaddr, buf, addrsize=8):
        """Write buf to a device's registers."""
        simclock.fw()
        try:
            self._cost(len(buf))
            d = self._dev(addr)
            try:
                d.i2c_write(memaddr, bytes(buf))
            except OSError:
                self._nack()
        finally:
            simclock.mark()

    def readfrom(self, addr, nbytes, stop=True):
        """Read nbytes from a device (no register)."""
        simclock.fw()
        try:
            self._cost(nbytes)
            buf = bytearray(nbytes)
            self._dev(addr).i2c_read_into(-1, buf)
            return bytes(buf)
        finally:
            simclock.mark()

    def writeto(self, addr, buf, stop=True):
        """Write to a device: first byte the register, the rest its data."""
        simclock.fw()
        try:
            self._cost(len(buf))
            d = self._dev(addr)
            if len(buf) > 1:
                d.i2c_write(buf[0], bytes(buf[1:]))
            return len(buf)
        finally:
            simclock.mark()


SoftI2C = I2C


class UART:
    """The ESP32's UART receive path: a 128-byte hardware FIFO drained by the driver into a ring
    of ``rxbuf`` bytes (ESP-IDF wants more than the FIFO). Bytes that arrive while both are full
    are lost (counted in simhw.uart_lost[id]); the firmware reads from the ring."""

    _FIFO = 128

    def __init__(self, id, baudrate=115200, tx=None, rx=None, rxbuf=256, timeout=0, **kw):
        simclock.fw()
        try:
            self._init(id, baudrate, rxbuf)
        finally:
            simclock.mark()

    def _init(self, id, baudrate, rxbuf):
        if id not in (0, 1, 2):
            raise ValueError("UART(%s) does not exist" % id)
        self.id = id
        self.baudrate = baudrate
        self.rxbuf = rxbuf if rxbuf > self._FIFO else self._FIFO + 1
        self._cap = self.rxbuf + self._FIFO
        self._ring = bytearray(self._cap)  # allocated once (on the ESP32 it is the driver's)
        self._h = 0  # read position
        self._n = 0  # bytes held
        self._in = bytearray(64)
        self._src = None  # the source last polled, and when its next byte is due (board us)
        self._due = -1
        self.lost = 0
        simhw.uart_lost[id] = 0

    def init(self, baudrate=115200, **kw):
        """Set the baud rate."""
        simclock.fw()
        self.baudrate = baudrate
        simclock.mark()

    @micropython.native
    def _pull(self):
        """Take in what arrived on the wire since the last call; what does not fit is lost."""
        s = simhw.uart_source(self.id)
        if s is None:
            return
        now = simclock.now_us()
        if s is self._src and 0 <= self._due - now < 2000000:
            return  # nothing can have arrived yet (the source said when its next byte comes)
        sc = self._in
        ring = self._ring
        cap = self._cap
        while s.any(now) > 0:
            k = s.read_into(sc, now, len(sc))
            if not k:
                break
            take = cap - self._n
            if take > k:
                take = k
            t = (self._h + self._n) % cap
            a = cap - t if take > cap - t else take  # to the ring's end, then from its start
            copy_bytes(ring, t, sc, 0, a)
            copy_bytes(ring, 0, sc, a, take - a)
            self._n += take
            if k > take:
                self.lost += k - take
                simhw.uart_lost[self.id] = self.lost
        due = getattr(s, "due_us", None)
        d = due() if due else None
        self._src = s
        self._due = -1 if d is None else d

    @micropython.native
    def any(self):
        """Bytes waiting in the ring."""
        simclock.fw()
        self._pull()
        simclock.mark()
        return self._n

    @micropython.native
    def readinto(self, buf, nbytes=-1):
        """Read what is waiting into buf; the count (None: nothing)."""
        simclock.fw()
        try:
            return self._readinto(buf, nbytes)
        finally:
            simclock.mark()

    @micropython.native
    def _readinto(self, buf, nbytes):
        self._pull()
        if nbytes < 0 or nbytes > len(buf):
            nbytes = len(buf)
        n = self._n if self._n < nbytes else nbytes
        ring = self._ring
        h = self._h
        cap = self._cap
        a = cap - h if n > cap - h else n
        copy_bytes(buf, 0, ring, h, a)
        copy_bytes(buf, a, ring, 0, n - a)
        h += n
        self._h = h - cap if h >= cap else h
        self._n -= n
        return n or None

    def read(self, nbytes=-1):
        """Read what is waiting (None: nothing)."""
        simclock.fw()
        try:
            self._pull()
            n = self._n
            if nbytes >= 0:
                n = min(n, nbytes)
            if not n:
                return None
            b = bytearray(n)
            self._readinto(b, n)
            return bytes(b)
        finally:
            simclock.mark()

    def readline(self):
        """As read(): no line splitting."""
        return self.read()

    def write(self, buf):
        """Accept the bytes (nothing is wired to TX)."""
        return len(buf)  # (nothing is wired to TX: a length, too small to bracket)


# a 12 V vehicle: ~14.2 V with the engine running (alternator), ~12.4 V with it off (the battery)
SUPPLY_RUN_UV = 14200000
IGNITION_OFF = 12.4 / 14.2


class ADC:
    """ESP32 ADC1 as it reads (12 bit, calibrated read_uv): each attenuation has a range it
    measures (0 dB ~100-950 mV, 2.5 dB ~100-1250, 6 dB ~150-1750, 11 dB ~150-2450, per the
    MicroPython docs); below it the reading sticks near the offset, above it the response flattens
    and saturates at full scale (4095). The default attenuation is 0 dB. Only ADC pins of the chip
    are accepted; more than 3.6 V (VDD + 0.3) damages the pin (recorded in simhw.adc_damaged)."""

    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_12BIT = 3
    # per attenuation: (reads 0 below, mV), (linear up to, mV), (full scale 4095 at, mV)
    _RANGE = ((100, 950, 1100), (100, 1250, 1500), (150, 1750, 2200), (150, 2450, 3100))

    def __init__(self, pin, atten=None):
        p = pin.id if isinstance(pin, Pin) else pin
        import os

        s3 = "S3" in os._machine
        adc1 = 1 <= p <= 10 if s3 else 32 <= p <= 39
        adc2 = 11 <= p <= 20 if s3 else p in (0, 2, 4, 12, 13, 14, 15, 25, 26, 27)
        if not (adc1 or adc2):
            raise ValueError("invalid pin for ADC")
        self.pin = p
        self.adc2 = adc2  # unusable while WiFi runs (the ESP32's WiFi driver owns ADC2)
        self._atten = self.ATTN_0DB if atten is None else atten

    def atten(self, a):
        """Set the attenuation (the input range)."""
        if a not in (0, 1, 2, 3):
            raise ValueError("invalid attenuation")
        self._atten = a

    def _mv(self):
        """The millivolts the calibrated reading gives for the voltage on the pin."""
        mv = simhw.adc_uv.get(self.pin, 0) / 1000
        f = simhw.faults
        # (in drive time, like the GPS faults: the scenario's clock, from its first sample)
        t = simclock.now_us() - (simhw.stream_t0_us or 0)
        if "ignition_off" in f and f["ignition_off_from"] <= t < f["ignition_off"]:
            mv *= IGNITION_OFF  # the engine stopped: the alternator no longer lifts the supply
        if mv > 3600:
            simhw.adc_damaged.add(self.pin)
        lo, lin, full = self._RANGE[self._atten]
        if mv <= lo:
            return lo * 0.6  # the offset region: a reading that hardly moves
        if mv > lin:  # the response flattens towards full scale
            mv = lin + (mv - lin) * 0.85
        return full if mv > full else mv

    def read_uv(self):
        """Calibrated reading in microvolts."""
        return int(self._mv() * 1000)

    def read_u16(self):
        """Raw reading scaled to 16 bits."""
        lo, lin, full = self._RANGE[self._atten]
        return min(65535, int(self._mv() * 65535 // full))

    def read(self):
        """Raw 12-bit reading."""
        return self.read_u16() >> 4


class RTC:
    """The RTC: the board's clock and its slow memory (kept across resets)."""

    def __init__(self, id=0):
        pass

    def datetime(self, dt=None):
        """The board's date and time (setting is ignored)."""
        if dt is None:
            t = _time.gmtime()  # bracketed there
            return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0)

    def memory(self, data=None):
        """Get, or set (2048 bytes at most), the RTC memory."""
        simclock.fw()
        try:
            if data is None:
                return simhw.rtc_memory_get()
            if len(data) > 2048:
                raise ValueError("buffer too long")
            simhw.rtc_memory_set(data)
        finally:
            simclock.mark()


class WDT:
    """The watchdog: the board resets if not fed within the timeout."""

    def __init__(self, id=0, timeout=5000):
        if timeout < 1:
            raise ValueError("WDT timeout too short")
        simclock.fw()
        simhw.wdt_arm(timeout * 1000, simclock.now_us())  # kept across a soft reset
        simclock.mark()

    @micropython.native
    def feed(self):
        """Push the watchdog's deadline a timeout ahead."""
        simclock.fw()
        simhw.wdt_deadline_us = simclock.now_us() + simhw.wdt_timeout_us
        simclock.mark()


class Timer:
    """A soft timer run by simhw on the board's clock."""

    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id=-1, **kw):
        if id not in (0, 1, 2, 3):
            raise ValueError("Timer doesn't exist")  # ESP32 has hardware timers 0-3, no virtual -1
        self._slot = None
        if kw:
            self.init(**kw)

    def init(self, mode=PERIODIC, period=-1, freq=-1, callback=None, hard=False):
        """(Re)arm: one shot or periodic, by period in ms or freq."""
        if hard:
            raise ValueError("hard Timer not supported on this port")
        if freq > 0:
            period = 1000 // freq
        simclock.fw()
        self.deinit()
        self._slot = [simclock.now_us() + period * 1000, period * 1000 if mode == Timer.PERIODIC else 0, callback, self]
        simhw.timers.append(self._slot)
        simclock.mark()

    def deinit(self):
        """Stop the timer."""
        simclock.fw()
        if self._slot in simhw.timers:
            simhw.timers.remove(self._slot)
        self._slot = None
        simclock.mark()


def lightsleep(ms=None):
    """Sleep ms on the board clock, as time.sleep_ms."""
    _time.sleep_ms(ms or 0)


def deepsleep(ms=None):
    """Deep sleep ends in a reset."""
    raise simhw.HardReset(3)
