"""What is wired to the simulated board: devices on each I2C bus, the source behind each UART,
ADC readings, and faults. ``machine.py`` looks everything up here.

A test or the simulated board's boot script populates it before importing the firmware, e.g.::

    import simhw, dev_mpu6050
    simhw.attach_i2c(0, 0x68, dev_mpu6050.Mpu6050(source))
    simhw.attach_uart(2, source_with_read_method)

I2C device protocol (duck-typed):
    i2c_read(reg, n) -> bytes      # register read burst starting at reg (auto-increment or FIFO port)
    i2c_write(reg, data: bytes)    # register write burst
Either may raise OSError(errno) to model a NACK or bus error.

UART source protocol: ``read_into(buf, now_us) -> int`` copies the bytes that have arrived by
``now_us`` (at most len(buf)) and returns how many; ``any(now_us) -> int``.
"""

_i2c = {}  # (bus_id, addr) -> device model
_uart = {}  # uart_id -> source
adc_uv = {}  # pin -> microvolts at the ADC pin
faults = {}  # name -> value, e.g. {"i2c_nack": (bus, addr, until_us)}; models check these


def attach_i2c(bus, addr, dev):
    _i2c[(bus, addr)] = dev


def detach_i2c(bus, addr):
    _i2c.pop((bus, addr), None)


def i2c_device(bus, addr):
    return _i2c.get((bus, addr))


def i2c_addrs(bus):
    return sorted(a for (b, a) in _i2c if b == bus)


def attach_uart(uart_id, source):
    _uart[uart_id] = source


def uart_source(uart_id):
    return _uart.get(uart_id)


def clear():
    _i2c.clear()
    _uart.clear()
    adc_uv.clear()
    faults.clear()
