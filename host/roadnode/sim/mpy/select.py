"""`select` for the simulated board: poll() whose timeout passes on the board's clock.

On the ESP32 a poll with a timeout sleeps the MicroPython task (FreeRTOS) until a byte arrives
or the time is up. Here the wait advances the board's clock in slices (20 ms in fast mode, 1 ms
in realtime) and ends early once the host has sent something; a zero timeout is the built-in's.

The simulated board's sockets (socket.py) are polled through their own state (the network's
outages, a connect in progress, the board/real time agreement), the rest through the built-in.
With RNSIM_NET set, `network` and `socket` are loaded here, before the flash is mounted at '/'
and the host's folders go out of reach: on the ESP32 they are built in.
"""

import micropython
from uselect import POLLERR, POLLHUP, POLLIN, POLLOUT  # noqa: F401
from uselect import poll as _poll
import uos as _os

import simclock
import time as _time  # the board's time (shim)

if _os.getenv("RNSIM_NET"):
    import network  # noqa: F401
    import socket  # noqa: F401


_FAST_STEP_MS = 20


class poll:
    """select.poll for the simulated board (module docstring)."""
    def __init__(self):
        self._p = _poll()
        self._socks = []  # [socket, mask, {events: (socket, events)}]: the simulated board's sockets
        self._out = []

    def _find(self, obj):
        for r in self._socks:
            if r[0] is obj:
                return r
        return None

    def register(self, obj, mask=POLLIN | POLLOUT):
        """Watch obj for mask (a simulated socket through its own state, others through the built-in)."""
        simclock.fw()
        try:
            if not hasattr(obj, "_poll_ev"):
                self._p.register(obj, mask)
                return
            r = self._find(obj)
            if r is None:
                self._socks.append([obj, mask, {}])
            else:
                r[1] = mask
        finally:
            simclock.mark()

    def modify(self, obj, mask):
        """Change what obj is watched for; ENOENT when it is not registered."""
        simclock.fw()
        try:
            if not hasattr(obj, "_poll_ev"):
                self._p.modify(obj, mask)
                return
            r = self._find(obj)
            if r is None:
                import errno

                raise OSError(errno.ENOENT)
            r[1] = mask
        finally:
            simclock.mark()

    def unregister(self, obj):
        """Stop watching obj."""
        simclock.fw()
        try:
            if not hasattr(obj, "_poll_ev"):
                self._p.unregister(obj)
                return
            r = self._find(obj)
            if r is not None:
                self._socks.remove(r)
        finally:
            simclock.mark()

    def _ready(self, flags):
        """The (object, events) ready now, in a list reused from call to call (as ipoll's tuple)."""
        out = self._out
        out.clear()
        for r in self._socks:
            ev = r[0]._poll_ev(r[1])
            if ev:
                t = r[2].get(ev)
                if t is None:
                    t = r[2][ev] = (r[0], ev)
                out.append(t)
                if flags & 1:  # one-shot: as poll.modify(obj, 0)
                    r[1] = 0
        for o, ev in self._p.ipoll(0, flags):
            out.append((o, ev))
        return out

    @micropython.native
    def ipoll(self, timeout=-1, flags=0):
        """The (obj, events) ready, waiting up to timeout ms of board time (-1: until one is)."""
        if self._socks:
            return self._ipoll_socks(timeout, flags)
        p = self._p
        step = 1 if simclock.realtime() else _FAST_STEP_MS
        # one shim call on the clock: the firmware's time so far is charged at the first slice, the
        # loop's own (slices, the pipe's polls) is the simulation's, as in the other shims
        simclock.fw()
        try:
            while timeout:
                d = step if timeout < 0 or timeout > step else timeout
                _time.wait_us(d * 1000)
                if timeout > 0:
                    timeout -= d
                for _ in p.ipoll(0):
                    timeout = 0
            return p.ipoll(0, flags)
        finally:
            simclock.mark()

    def _ipoll_socks(self, timeout, flags):
        simclock.fw()
        try:
            step = 1 if simclock.realtime() else 5
            while True:
                out = self._ready(flags)
                if out or not timeout:
                    return out
                d = step if timeout < 0 or timeout > step else timeout
                _time.sleep_ms(d)
                if timeout > 0:
                    timeout -= d
        finally:
            simclock.mark()

    def poll(self, timeout=-1):
        """As ipoll, in a new list."""
        if self._socks:
            return list(self._ipoll_socks(timeout, 0))
        for _ in self.ipoll(timeout):  # waits on the board's clock until something is ready
            break
        return self._p.poll(0)
