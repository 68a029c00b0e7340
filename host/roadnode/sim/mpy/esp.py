"""`esp` for the simulated board: what the ESP32 port's module does for logging.

ESP-IDF writes its log lines ("E (1234) i2c.master: ...") on UART0, the console the node's
packets share. The port starts at level LOG_ERROR, so error lines show. As on the board,
osdebug(None) only sets the level back to LOG_ERROR (errors still print); osdebug(x, LOG_NONE)
silences everything. The shims (machine.I2C) log through log() below.
"""

import sys

import simclock

LOG_NONE = 0
LOG_ERROR = 1
LOG_WARNING = 2
LOG_INFO = 3
LOG_DEBUG = 4
LOG_VERBOSE = 5

level = LOG_ERROR  # the port's default


def osdebug(uart, lvl=LOG_ERROR):
    """Set the IDF log level shown on the console (uart None: errors only)."""
    global level
    simclock.fw()  # built-in on the ESP32: not the firmware's CPU time
    level = LOG_ERROR if uart is None else lvl
    simclock.mark()


def log(lvl, tag, msg):
    """An IDF log line on the console if the level lets it through (as ESP_LOGx does)."""
    if lvl <= level:  # called from inside the shims' fw()/mark() brackets
        out = getattr(sys.stdout, "buffer", sys.stdout)
        out.write(b"%s (%d) %s: %s\r\n" % ("EWIDV"[lvl - 1].encode(), simclock.now_us() // 1000, tag.encode(),
                                            msg.encode()))
