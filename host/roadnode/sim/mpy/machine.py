"""`machine` for the simulated ESP32: only what the ESP32 port has, backed by simhw device models.

A firmware call that would fail on the ESP32 fails here too (e.g. Timer(hard=True), I2C to an
absent address raises OSError ENODEV).
"""

import errno

import simclock
import simhw
import time as _time

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

_freq = 160000000


def freq(f=None):
    global _freq
    if f is None:
        return _freq
    if f not in (20000000, 40000000, 80000000, 160000000, 240000000):
        raise ValueError("frequency must be 20MHz, 40MHz, 80Mhz, 160MHz or 240MHz")
    _freq = f


def reset_cause():
    return simhw.reset_cause


def reset():
    raise simhw.HardReset(3)


def soft_reset():
    raise simhw.SoftReset(0)


def unique_id():
    return simhw.unique_id


def idle():
    _time.sleep_us(100)


def disable_irq():
    return 0


def enable_irq(state=0):
    pass


class Pin:
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
        if value is not None:
            self._v = 1 if value else 0

    def value(self, v=None):
        if v is None:
            return self._v
        self._v = 1 if v else 0

    def on(self):
        self._v = 1

    def off(self):
        self._v = 0

    def irq(self, handler=None, trigger=3, hard=False):
        if hard:
            raise ValueError("hard interrupts not supported on this port")  # ESP32: IRQs are soft


def _pin_id(p):
    return p if isinstance(p, int) else getattr(p, "id", p)


class I2C:
    def __init__(self, id=0, scl=None, sda=None, freq=400000, timeout=50000):
        if id not in (0, 1):
            raise ValueError("I2C(%s) doesn't exist" % id)
        self.id = id
        self.freq = freq
        # the devices are wired to the board's pins: a bus on other pins finds nothing
        pins = simhw.i2c_pins.get(id)
        self.wired = pins is None or scl is None or (_pin_id(scl), _pin_id(sda)) == pins

    def _dev(self, addr):
        f = simhw.faults
        if f.get("hang", -1) >= 0 and f.get("hang_from", 0) <= simclock.now_us() - (simhw.stream_t0_us or 0):
            while True:  # the bus locks up and the firmware with it: only the watchdog gets it back
                _time.sleep_ms(100)
        d = simhw.i2c_device(self.id, addr) if self.wired else None
        if d is None:
            raise OSError(errno.ENODEV)
        return d

    def _cost(self, n):
        # bus time: ~9 bits per byte plus address/register overhead at the bus frequency
        _time.sleep_us((n + 3) * 9 * 1000000 // self.freq)

    def scan(self):
        return [a for a in simhw.i2c_addrs(self.id)] if self.wired else []

    def readfrom_mem(self, addr, memaddr, nbytes, addrsize=8):
        buf = bytearray(nbytes)
        self.readfrom_mem_into(addr, memaddr, buf)
        return bytes(buf)

    def readfrom_mem_into(self, addr, memaddr, buf, addrsize=8):
        self._cost(len(buf))
        self._dev(addr).i2c_read_into(memaddr, buf)

    def writeto_mem(self, addr, memaddr, buf, addrsize=8):
        self._cost(len(buf))
        self._dev(addr).i2c_write(memaddr, bytes(buf))

    def readfrom(self, addr, nbytes, stop=True):
        self._cost(nbytes)
        buf = bytearray(nbytes)
        self._dev(addr).i2c_read_into(-1, buf)
        return bytes(buf)

    def writeto(self, addr, buf, stop=True):
        self._cost(len(buf))
        d = self._dev(addr)
        if len(buf) > 1:
            d.i2c_write(buf[0], bytes(buf[1:]))
        return len(buf)


SoftI2C = I2C


class UART:
    def __init__(self, id, baudrate=115200, tx=None, rx=None, rxbuf=256, timeout=0, **kw):
        if id not in (0, 1, 2):
            raise ValueError("UART(%s) does not exist" % id)
        self.id = id
        self.baudrate = baudrate
        self.rxbuf = rxbuf

    def init(self, baudrate=115200, **kw):
        self.baudrate = baudrate

    def _src(self):
        return simhw.uart_source(self.id)

    def any(self):
        s = self._src()
        return s.any(simclock.now_us()) if s else 0

    def readinto(self, buf, nbytes=-1):
        s = self._src()
        if s is None:
            return None
        if nbytes < 0 or nbytes > len(buf):
            nbytes = len(buf)
        n = s.read_into(buf, simclock.now_us(), nbytes)
        return n or None

    def read(self, nbytes=-1):
        n = self.any()
        if nbytes >= 0:
            n = min(n, nbytes)
        if not n:
            return None
        b = bytearray(n)
        self.readinto(b, n)
        return bytes(b)

    def readline(self):
        return self.read()

    def write(self, buf):
        return len(buf)


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_12BIT = 3

    def __init__(self, pin, atten=None):
        self.pin = pin.id if isinstance(pin, Pin) else pin

    def atten(self, a):
        pass

    def read_uv(self):
        return int(simhw.adc_uv.get(self.pin, 0))

    def read_u16(self):
        return min(65535, self.read_uv() * 65535 // 3300000)

    def read(self):
        return self.read_u16() >> 4


class RTC:
    def __init__(self, id=0):
        pass

    def datetime(self, dt=None):
        if dt is None:
            t = _time.gmtime()
            return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0)

    def memory(self, data=None):
        if data is None:
            return simhw.rtc_memory_get()
        if len(data) > 2048:
            raise ValueError("buffer too long")
        simhw.rtc_memory_set(data)


class WDT:
    def __init__(self, id=0, timeout=5000):
        if timeout < 1:
            raise ValueError("WDT timeout too short")
        simhw.wdt_timeout_us = timeout * 1000
        simhw.wdt_deadline_us = simclock.now_us() + simhw.wdt_timeout_us

    def feed(self):
        simhw.wdt_deadline_us = simclock.now_us() + simhw.wdt_timeout_us


class Timer:
    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id=-1, **kw):
        if id not in (0, 1, 2, 3):
            raise ValueError("Timer doesn't exist")  # ESP32 has hardware timers 0-3, no virtual -1
        self._slot = None
        if kw:
            self.init(**kw)

    def init(self, mode=PERIODIC, period=-1, freq=-1, callback=None, hard=False):
        if hard:
            raise ValueError("hard Timer not supported on this port")
        if freq > 0:
            period = 1000 // freq
        self.deinit()
        self._slot = [simclock.now_us() + period * 1000, period * 1000 if mode == Timer.PERIODIC else 0, callback, self]
        simhw.timers.append(self._slot)

    def deinit(self):
        if self._slot in simhw.timers:
            simhw.timers.remove(self._slot)
        self._slot = None


def lightsleep(ms=None):
    _time.sleep_ms(ms or 0)


def deepsleep(ms=None):
    raise simhw.HardReset(3)
