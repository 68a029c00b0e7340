"""`select` for the simulated board: poll() whose timeout passes on the board's clock.

On the ESP32 a poll with a timeout sleeps the MicroPython task (FreeRTOS) until a byte arrives
or the time is up. Here the wait advances the board's clock in slices (5 ms in fast mode, 1 ms
in realtime) and ends early once the host has sent something; a zero timeout is the built-in's.
"""

from uselect import POLLERR, POLLHUP, POLLIN, POLLOUT  # noqa: F401
from uselect import poll as _poll

import simclock
import time as _time  # the board's time (shim)


class poll:
    def __init__(self):
        self._p = _poll()
        self.register = self._p.register
        self.unregister = self._p.unregister

    def ipoll(self, timeout=-1, flags=0):
        p = self._p
        step = 1 if simclock.realtime() else 5
        while timeout:
            d = step if timeout < 0 or timeout > step else timeout
            _time.sleep_ms(d)
            if timeout > 0:
                timeout -= d
            for _ in p.ipoll(0):
                timeout = 0
        return p.ipoll(0, flags)
