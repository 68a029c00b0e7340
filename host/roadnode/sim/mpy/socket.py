"""`socket` for the simulated board: the ESP32 port's module (ports/esp32/modsocket.c) over real sockets
of the host, with network.py's outages applied below the firmware.

The node's TCP connections are real ones, to the real broker (or whatever server a test starts). Where
the ESP32 differs from the unix port, this module does as the ESP32: connect() takes (host, port) and
resolves it; getaddrinfo() gives ('a.b.c.d', port); a non-blocking connect raises EINPROGRESS and its
outcome shows in poll() and the next send/recv; recv() with nothing raises EAGAIN, read()/readinto()
return None; send() takes at most lwIP's send buffer (TCP_SND_BUF, 5,744 bytes) per call; a dead
connection reports its cause once, then ENOTCONN. TCP clients (the node connects out) and UDP
datagrams: those to the simulated AP's DNS forwarder (network.GATEWAY, port 53: the DNS server DHCP
gives the station) are answered here from the host's resolver, others go out for real.

Board time and real time (fast mode). The board's clock runs as fast as the interpreter can, but a
real round trip takes real time. While one is pending (a connect in progress, or bytes sent and no
answer yet), an operation that finds nothing (recv/read/readinto, poll for POLLIN or, connecting,
POLLOUT) waits on the real socket, returning as soon as the answer comes, until real time has caught
up with what the board's clock may show: since the request went out, board time follows real time
1:1 for the first _SYNC_US (an answer within it costs exactly its real time, as on the ESP32; a busy
host's broker stays within it), then runs at most _PACE_F times faster. A round trip of R real ms so
costs at most max(R, 20 ms + 20 (R - 20 ms)) of board time, plus one pass: never the minutes of 50 ms
passes fast mode would spin through. An answer is awaited for _AWAIT_MAX_US of real time at most (a
send that gets none: an acknowledgement the node sends, a broker that stalls); a connect until the
host's TCP stack decides. Nothing is waited for when nothing real is pending (and a blackhole holds
the bytes here), so a drive without network traffic runs as fast as before. RNSIM_NET_PACE=0 turns the
waits off (the tests show the difference); the realtime mode needs none.

TLS: a socket here is a stream (io.IOBase: readinto, write, ioctl), as the port's sockets are streams in C,
so the firmware wraps it in the unix port's real `tls` module (mbedTLS), which reads and writes it through
those methods and polls it through ioctl (MP_STREAM_POLL: the same events as select.poll). An error on
the simulated network raises out of readinto/write, through mbedTLS, to the firmware's call, as the ESP32's
OSError does (mbedTLS's socket is given up then).
"""

import errno as _e
import io as _io
import uos as _os
import uselect as _sel
import usocket as _u
import utime as _rt
from micropython import const

import network as _net
import simclock
import time as _time  # the board's time (shim)

# lwIP's values, as the ESP32 port exports them
AF_INET = const(2)
AF_INET6 = const(10)
SOCK_STREAM = const(1)
SOCK_DGRAM = const(2)
SOCK_RAW = const(3)
IPPROTO_IP = const(0)
IPPROTO_TCP = const(6)
IPPROTO_UDP = const(17)
SOL_SOCKET = const(0xFFF)
SO_REUSEADDR = const(0x0004)
SO_KEEPALIVE = const(0x0008)
SO_BROADCAST = const(0x0020)
TCP_NODELAY = const(0x01)

_SND_BUF = const(5744)  # CONFIG_LWIP_TCP_SND_BUF_DEFAULT: what one send() can take
# lwIP's give-up times, approximately (SYN and data retransmissions with exponential backoff)
_SYN_GIVEUP_US = const(30000000)
_RTX_GIVEUP_US = const(120000000)
_DNS_FAIL_US = const(5000000)  # a DNS query that gets no answer fails after lwIP's retries
_SYNC_US = const(20000)
_PACE_F = const(20)
_AWAIT_MAX_US = const(2000000)
_CONNECT_CAP_US = const(75000000)  # the host's own connect timeout decides long before
_PACE = _os.getenv("RNSIM_NET_PACE") != "0"
_EAI_FAIL = const(-202)  # what the port raises when a name does not resolve
_DNS_US = const(2000)  # the AP's DNS forwarder answers after this (and the host's lookup's real time)
# errno numbers MicroPython's errno module does not name (the unix port's, as the rest here)
_EISCONN = const(106)
_EPIPE = const(32)

_IN = const(1)
_OUT = const(4)
_ERR = const(8)
_HUP = const(16)

_NEW = const(0)
_CONN = const(1)  # a real connect in progress
_HOLD = const(2)  # a connect whose SYN went into a blackhole
_UP = const(3)
_DEAD = const(4)
_CLOSED = const(5)

_stats = _net.stats
# Buffers the ESP32 keeps outside MicroPython's heap (lwIP's in ESP-IDF's), allocated with the module so
# they count as the simulation's: the bytes a blackhole holds (one connection's worth: the node has one),
# and recv()'s scratch (the port reads into the bytes object it returns: one allocation, as here).
_HOLDBUF = bytearray(_SND_BUF)
_hold_user = None
_SCRATCH = bytearray(1460)


def _numeric(host):
    p = host.split(".")
    if len(p) != 4:
        return False
    for x in p:
        if not x.isdigit() or int(x) > 255:
            return False
    return True


def _resolve(host, port):
    """The IPv4 address for host, as lwIP finds it: numbers at once; a name through the host's resolver
    when the station is up and the way out open, else OSError(-202) (at once without a route, after
    the DNS timeout in a blackhole). Board time passes as the real lookup took."""
    if host == "":
        return "0.0.0.0"
    if _numeric(host):
        return host
    c = _net.link()
    if c == _net.DOWN:
        raise OSError(_EAI_FAIL)
    if c == _net.HOLE or c == _net.UNREACH:
        _time.wait_us(_DNS_FAIL_US)
        raise OSError(_EAI_FAIL)
    t = _rt.ticks_us()
    try:
        r = _u.getaddrinfo(host, port)
    except OSError:
        r = ()
    if not simclock.realtime():
        _time.wait_us(_rt.ticks_diff(_rt.ticks_us(), t))
    for a in r:
        sa = a[-1]
        if a[0] == _u.AF_INET and len(sa) >= 8:
            return "%d.%d.%d.%d" % (sa[4], sa[5], sa[6], sa[7])
    raise OSError(_EAI_FAIL)


def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):
    """The port's getaddrinfo: [(AF_INET, SOCK_STREAM, 0, host, (ip, port))], resolved as lwIP does."""
    simclock.fw()
    try:
        return [(AF_INET, SOCK_STREAM, 0, host, (_resolve(host, port), port))]
    finally:
        simclock.mark()


def _dns_reply(q):
    """The simulated AP's DNS forwarder: the answer to query q (its A record from the host's resolver,
    NXDOMAIN for a name that has none), or None for what is not a query."""
    n = len(q)
    if n < 17 or q[2] & 0x80:
        return None
    i = 12
    name = []
    while i < n and q[i]:
        name.append(bytes(q[i + 1 : i + 1 + q[i]]).decode())
        i += 1 + q[i]
    end = i + 5
    if end > n:
        return None
    ip = None
    if q[i + 1] == 0 and q[i + 2] == 1:  # QTYPE A
        try:
            for a in _u.getaddrinfo(".".join(name), 0):
                if a[0] == _u.AF_INET and len(a[-1]) >= 8:
                    ip = bytes(a[-1][4:8])
                    break
        except OSError:
            pass
    rcode = 0 if ip is not None or q[i + 2] != 1 else 3
    out = bytes(q[0:2]) + bytes((0x80 | (q[2] & 0x79), 0x80 | rcode, 0, 1, 0, 1 if ip else 0, 0, 0, 0, 0))
    out += bytes(q[12:end])
    if ip is not None:
        out += b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + ip
    return out


def _lingerless(s):
    """Close a real socket with a reset (SO_LINGER 0): the path died, the broker learns it at once."""
    try:
        s.setsockopt(1, 13, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # SOL_SOCKET, SO_LINGER {1, 0}
    except OSError:
        pass
    s.close()


class socket(_io.IOBase):
    """The ESP32 port's socket over a real one of the host (module docstring)."""

    def __init__(self, af=AF_INET, type=SOCK_STREAM, proto=0):
        if af != AF_INET or type not in (SOCK_STREAM, SOCK_DGRAM):
            raise OSError(_e.EOPNOTSUPP)
        self._udp = [] if type == SOCK_DGRAM else None  # UDP: [(board us ready, data, addr)] to read
        self._s = None  # the real socket
        self._rp = None  # a poll of the real socket, to wait on it
        self._st = _NEW
        self._err = 0  # the cause of death, reported once
        self._tmo = -1  # -1 blocking, 0 non-blocking, else a timeout in board us
        self._opts = []
        self._held = None  # bytes sent into a blackhole: TCP keeps retransmitting them
        self._nheld = 0
        self._t_hold = 0  # board time the oldest held byte (or the held SYN) went out
        self._aw = 0  # a real answer is awaited: 1 data, 2 connect
        self._aw_r = 0  # real us when the request went out
        self._aw_b = 0  # board us then
        self._gen = 0
        self._peer = None
        self._eof = False

    # ---- state -------------------------------------------------------------------------------------
    def _die(self, err):
        if self._st >= _DEAD:
            return
        self._st = _DEAD
        self._err = err
        self._aw = 0
        self._held = None
        self._nheld = 0
        if self._s is not None:
            _lingerless(self._s)
            self._s = None

    def _raise(self):
        if self._st == _CLOSED:
            raise OSError(_e.EBADF)
        e = self._err or _e.ENOTCONN
        self._err = _e.ENOTCONN
        raise OSError(e)

    def _await(self, kind):
        if not self._aw or kind == 2:
            self._aw = kind
            self._aw_r = _rt.ticks_us()
            self._aw_b = simclock.now_us()

    def _real_connect(self):
        s = _u.socket(_u.AF_INET, _u.SOCK_STREAM)
        s.setblocking(False)
        for o in self._opts:
            s.setsockopt(o[0], o[1], o[2])
        self._s = s
        self._rp = _sel.poll()
        self._rp.register(s, _OUT)
        self._st = _CONN
        self._await(2)
        try:
            s.connect(_u.getaddrinfo(self._peer[0], self._peer[1])[0][-1])
        except OSError as x:
            if x.args[0] != _e.EINPROGRESS:
                self._die(x.args[0])

    def _established(self):
        self._st = _UP
        self._aw = 0
        self._rp.modify(self._s, _IN)

    def _check(self):
        """Move the connection on: what the network did to it since the last call."""
        st = self._st
        if st == _NEW or st >= _DEAD:
            return
        c = _net.link()
        if c == _net.DOWN or self._gen != _net.gen:
            self._die(_e.ECONNRESET)  # the station lost its association: the connection went with it
            _stats["dropped"] += 1
            return
        if c >= _net.RESET:
            if c == _net.UNREACH:
                e = _e.EHOSTUNREACH
            elif c == _net.REFUSED and st != _UP:
                e = _e.ECONNREFUSED
            else:
                e = _e.ECONNRESET
            self._die(e)
            _stats["dropped" if st == _UP else "refused"] += 1
            return
        hole = c == _net.HOLE
        if st == _HOLD:
            if not hole:
                self._real_connect()  # a retransmitted SYN gets through
            elif simclock.now_us() + _net._OFF - self._t_hold > _SYN_GIVEUP_US:
                self._die(_e.ETIMEDOUT)
                _stats["timeouts"] += 1
            return
        if st == _CONN:
            if hole:
                if simclock.now_us() + _net._OFF - self._t_hold > _SYN_GIVEUP_US:
                    self._die(_e.ETIMEDOUT)
                    _stats["timeouts"] += 1
                return
            self._conn_poll()
            return
        if hole:
            if self._nheld and simclock.now_us() + _net._OFF - self._t_hold > _RTX_GIVEUP_US:
                self._die(_e.ETIMEDOUT)
                _stats["timeouts"] += 1
        elif self._nheld:
            self._flush()

    def _conn_poll(self):
        for _, ev in self._rp.ipoll(0):
            if ev & (_ERR | _HUP):
                try:
                    self._s.send(b"")  # takes the connect's error (SO_ERROR)
                    e = _e.ECONNREFUSED
                except OSError as x:
                    e = x.args[0]
                self._die(e)
                _stats["refused"] += 1
            elif ev & _OUT:
                self._established()

    def _flush(self):
        """The blackhole ended: the held bytes go out (TCP's retransmission gets through)."""
        try:
            n = self._s.send(memoryview(self._held)[: self._nheld])
        except OSError as x:
            if x.args[0] != _e.EAGAIN:
                self._die(_e.ECONNRESET if x.args[0] == _EPIPE else x.args[0])
            return
        if n:
            h = self._held
            h[: self._nheld - n] = h[n : self._nheld]
            self._nheld -= n
            _stats["bytes_out"] += n
            self._await(1)

    def _pace(self):
        """A real answer is pending and nothing is here: let real time catch up with board time (see the
        module's text). True if the real socket became ready meanwhile."""
        if not self._aw or not _PACE or simclock.realtime():
            return False
        r = _rt.ticks_diff(_rt.ticks_us(), self._aw_r)
        cap = _AWAIT_MAX_US if self._aw == 1 else _CONNECT_CAP_US
        if r >= cap:
            self._aw = 0  # no answer: the board's clock runs free again
            return False
        b = simclock.now_us() - self._aw_b
        # the real time by which the board's clock may show b
        need = b if b <= _SYNC_US else _SYNC_US + (b - _SYNC_US) // _PACE_F
        w = (need if need < cap else cap) - r
        if w <= 0:
            return False
        t = _rt.ticks_us()
        got = False
        for _ in self._rp.ipoll((w + 999) // 1000):
            got = True
            break
        _stats["pace_waits"] += 1
        _stats["pace_us"] += _rt.ticks_diff(_rt.ticks_us(), t)
        return got

    def _send(self, buf):
        """Bytes taken (> 0), or None when the call would block."""
        global _hold_user
        self._check()
        st = self._st
        if st >= _DEAD:
            self._raise()
        if st == _NEW:
            raise OSError(_e.ENOTCONN)
        if st != _UP:
            return None
        n = len(buf)
        if _net.link() == _net.HOLE:
            room = _SND_BUF - self._nheld
            if room <= 0:
                return None
            k = n if n < room else room
            if self._held is None:
                if _hold_user is None or _hold_user._held is not _HOLDBUF:
                    _hold_user = self
                    self._held = _HOLDBUF
                else:
                    self._held = bytearray(_SND_BUF)
            if not self._nheld:
                self._t_hold = simclock.now_us() + _net._OFF
            self._held[self._nheld : self._nheld + k] = memoryview(buf)[:k]
            self._nheld += k
            return k
        if self._nheld:
            self._flush()
            if self._nheld or self._st != _UP:
                return None if self._st == _UP else self._raise()
        try:
            k = self._s.send(buf if n <= _SND_BUF else memoryview(buf)[:_SND_BUF])
        except OSError as x:
            if x.args[0] == _e.EAGAIN:
                return None
            self._die(_e.ECONNRESET if x.args[0] == _EPIPE else x.args[0])
            self._raise()
        if k:
            _stats["bytes_out"] += k
            self._await(1)
        return k or None

    def _read(self, mv):
        """Bytes read into mv (0: the peer closed), or None when nothing is there."""
        self._check()
        st = self._st
        if st >= _DEAD:
            self._raise()
        if st == _NEW:
            raise OSError(_e.ENOTCONN)
        if st != _UP:
            if st == _CONN and self._pace():
                self._check()
            return None
        if self._eof:
            return 0
        if _net.link() == _net.HOLE:
            return None
        for i in range(2):
            try:
                r = self._s.readinto(mv)
            except OSError as x:
                self._die(x.args[0])
                self._raise()
            if r is not None:
                break
            if i or not self._pace():
                return None
        self._aw = 0
        if r == 0:
            self._eof = True
        _stats["bytes_in"] += r
        return r

    def _poll_ev(self, mask):
        """The events select.poll reports for this socket (mask: those registered)."""
        if self._udp is not None:
            if self._st == _CLOSED:
                return _HUP | _ERR
            ev = _OUT
            q = self._udp
            if q and q[0][0] <= simclock.now_us():
                ev |= _IN
            elif self._s is not None:
                for _, r in self._rp.ipoll(0):
                    ev |= r
            return ev & mask
        self._check()
        st = self._st
        if st >= _DEAD:
            return (mask & (_IN | _OUT)) | _HUP | _ERR
        if st == _NEW:
            return (mask & _OUT) | _HUP
        if st == _CONN and mask & _OUT and self._pace():
            self._check()
            st = self._st
            if st >= _DEAD:
                return (mask & (_IN | _OUT)) | _HUP | _ERR
        if st != _UP:
            return 0
        if _net.link() == _net.HOLE:
            return mask & _OUT if self._nheld < _SND_BUF else 0
        ev = _OUT if not self._nheld else 0
        if self._eof:
            ev |= _IN
        else:
            for _, r in self._rp.ipoll(0):
                ev |= r
            if not ev & _IN and mask & _IN and self._pace():
                ev |= _IN
        return (ev & mask) | (ev & (_HUP | _ERR))

    def _block(self, fn, arg):
        """A blocking call: try, and let board time pass until it succeeds or the timeout is up."""
        end = simclock.now_us() + self._tmo if self._tmo > 0 else -1
        while True:
            r = fn(arg)
            if r is not None:
                return r
            if end >= 0 and simclock.now_us() >= end:
                raise OSError(_e.ETIMEDOUT)
            _time.wait_us(1000 if self._aw else 10000)

    # ---- the port's API --------------------------------------------------------------------------
    def connect(self, addr):
        """TCP: start the connection (EINPROGRESS when non-blocking); UDP: the default peer of send()."""
        simclock.fw()
        try:
            if self._udp is not None:  # UDP: the default destination of send()
                self._peer = (_resolve(addr[0], addr[1]), addr[1])
                return None
            st = self._st
            if st >= _DEAD:
                self._raise()
            if st == _CONN or st == _HOLD:
                raise OSError(_e.EALREADY)
            if st == _UP:
                raise OSError(_EISCONN)
            host, port = addr
            self._peer = (_resolve(host, port), port)
            _stats["connects"] += 1
            c = _net.link()
            if c == _net.DOWN:
                _stats["refused"] += 1
                raise OSError(_e.EHOSTUNREACH)  # no route without the WLAN
            self._gen = _net.gen
            self._t_hold = simclock.now_us() + _net._OFF
            if c == _net.HOLE:
                self._st = _HOLD
            elif c == _net.OK:
                self._real_connect()
            else:
                self._st = _CONN
                self._check()  # the refusal, reset or ICMP comes back at once
            if self._tmo:
                self._block(self._connected, None)
                if self._st >= _DEAD:
                    self._raise()
                return None
            raise OSError(_e.EINPROGRESS)
        finally:
            simclock.mark()

    def _connected(self, _):
        self._check()
        if self._st == _CONN:
            self._pace()
            self._check()
        return None if self._st == _CONN or self._st == _HOLD else True

    def send(self, buf):
        """Bytes taken (at most lwIP's send buffer); EAGAIN when none could be, non-blocking."""
        simclock.fw()
        try:
            if self._udp is not None:
                if self._peer is None:
                    raise OSError(_e.ENOTCONN)
                return self.sendto(buf, self._peer)
            n = self._send(buf)
            if n is None:
                if not self._tmo:
                    raise OSError(_e.EAGAIN)
                n = self._block(self._send, buf)
            return n
        finally:
            simclock.mark()

    def write(self, buf):
        """As send(), but None instead of EAGAIN (the stream protocol; tls writes through it)."""
        simclock.fw()
        try:
            n = self._send(buf)
            if n is None and self._tmo:
                n = self._block(self._send, buf)
            return n
        finally:
            simclock.mark()

    def sendall(self, buf):
        """Everything, waiting board time while blocking; ETIMEDOUT non-blocking, as the port's."""
        simclock.fw()
        try:
            mv = memoryview(buf)
            o = 0
            while o < len(mv):
                n = self._send(mv[o:])
                if n is None:
                    if not self._tmo:
                        raise OSError(_e.ETIMEDOUT)  # as the port's sendall on a non-blocking socket
                    n = self._block(self._send, mv[o:])
                o += n
        finally:
            simclock.mark()

    def readinto(self, buf, nbytes=-1):
        """Bytes read into buf (0: the peer closed), None when nothing is there (non-blocking)."""
        simclock.fw()
        try:
            mv = memoryview(buf)
            if 0 <= nbytes < len(mv):
                mv = mv[:nbytes]
            r = self._read(mv)
            if r is None and self._tmo:
                r = self._block(self._read, mv)
            return r
        finally:
            simclock.mark()

    def _datagram(self, _=None):
        """(data, (ip, port)) of the next datagram here, or None."""
        q = self._udp
        if q and q[0][0] <= simclock.now_us():
            d = q.pop(0)
            _stats["bytes_in"] += len(d[1])
            return d[1], d[2]
        if self._s is not None:
            try:
                d, a = self._s.recvfrom(1500)
            except OSError as x:
                if x.args[0] == _e.EAGAIN:
                    return None
                raise
            _stats["bytes_in"] += len(d)
            return d, ("%d.%d.%d.%d" % (a[4], a[5], a[6], a[7]), a[2] << 8 | a[3])
        return None

    def _recv_udp(self, n, none):
        if self._st == _CLOSED:
            raise OSError(_e.EBADF)
        d = self._datagram()
        if d is None:
            if not self._tmo:
                if none:
                    return None
                raise OSError(_e.EAGAIN)
            d = self._block(self._datagram, None)
        return d[0][:n], d[1]

    def sendto(self, buf, addr):
        """A UDP datagram: to the AP's DNS forwarder (answered here) or out for real."""
        simclock.fw()
        try:
            if self._udp is None:
                raise OSError(_EISCONN if self._st == _UP else _e.ENOTCONN)
            if self._st == _CLOSED:
                raise OSError(_e.EBADF)
            ip, port = _resolve(addr[0], addr[1]), addr[1]
            c = _net.link()
            if c == _net.DOWN:
                raise OSError(_e.EHOSTUNREACH)
            n = len(buf)
            _stats["bytes_out"] += n
            if c == _net.HOLE or c == _net.UNREACH:
                return n  # lost on the way, as datagrams are
            if ip == _net.GATEWAY:
                if port == 53:
                    t = _rt.ticks_us()
                    r = _dns_reply(buf)
                    if r is not None:
                        due = simclock.now_us() + _DNS_US + _rt.ticks_diff(_rt.ticks_us(), t)
                        self._udp.append((due, r, (ip, port)))
                return n
            if self._s is None:
                self._s = _u.socket(_u.AF_INET, _u.SOCK_DGRAM)
                self._s.setblocking(False)
                self._rp = _sel.poll()
                self._rp.register(self._s, _IN)
            self._s.sendto(buf, _u.getaddrinfo(ip, port)[0][-1])
            return n
        finally:
            simclock.mark()

    def recvfrom(self, n):
        """(data, (ip, port)) of the next datagram (TCP: the data and the peer)."""
        simclock.fw()
        try:
            if self._udp is None:
                return self._recv(n, False), self._peer
            return self._recv_udp(n, False)
        finally:
            simclock.mark()

    def _recv(self, n, none):
        if self._udp is not None:
            r = self._recv_udp(n, none)
            return None if r is None else r[0]
        b = memoryview(_SCRATCH)[:n] if n <= len(_SCRATCH) else memoryview(bytearray(n))
        r = self._read(b)
        if r is None:
            if not self._tmo:
                if none:
                    return None
                raise OSError(_e.EAGAIN)
            r = self._block(self._read, b)
        return bytes(b[:r])

    def recv(self, n):
        """Up to n bytes; EAGAIN when nothing is there (non-blocking)."""
        simclock.fw()
        try:
            return self._recv(n, False)
        finally:
            simclock.mark()

    def read(self, n=-1):
        """Up to n bytes, None when nothing is there (non-blocking)."""
        simclock.fw()
        try:
            return self._recv(n if n >= 0 else len(_SCRATCH), True)
        finally:
            simclock.mark()

    def readline(self):
        """Bytes up to a newline or the end of what is there."""
        out = b""
        while not out.endswith(b"\n"):
            c = self.read(1)
            if not c:
                break
            out += c
        return out

    def close(self):
        """Close the real socket; later calls raise EBADF."""
        simclock.fw()
        try:
            if self._s is not None:
                self._s.close()
                self._s = None
            self._st = _CLOSED
            self._held = None
            self._aw = 0
            if self._udp:
                self._udp = []
        finally:
            simclock.mark()

    def setblocking(self, flag):
        """Blocking (waits pass board time) or not."""
        self._tmo = -1 if flag else 0

    def settimeout(self, t):
        """A timeout in seconds for blocking calls (None: block)."""
        self._tmo = -1 if t is None else int(t * 1000000)

    def setsockopt(self, level, opt, val):
        """The options lwIP and Linux share (SO_REUSEADDR, SO_KEEPALIVE, TCP_NODELAY); others ignored."""
        simclock.fw()
        try:
            # lwIP's numbers -> Linux's; other options: ignored, as the port warns and ignores them
            if level == SOL_SOCKET and opt in (SO_REUSEADDR, SO_KEEPALIVE):
                o = (1, 2 if opt == SO_REUSEADDR else 9, val)
            elif level == IPPROTO_TCP and opt == TCP_NODELAY:
                o = (6, 1, val)
            else:
                return
            self._opts.append(o)
            if self._s is not None:
                self._s.setsockopt(o[0], o[1], o[2])
        finally:
            simclock.mark()

    def ioctl(self, req, arg):
        """The stream protocol's ioctl, for what wraps this socket in C (tls): 3 poll (the events of
        `arg` ready now, as select.poll sees them), 4 close; others: -EINVAL."""
        if req == 3:
            simclock.fw()
            try:
                return self._poll_ev(arg)
            finally:
                simclock.mark()
        if req == 4:
            self.close()
            return 0
        return -_e.EINVAL

    def fileno(self):
        """The real socket's descriptor, or -1."""
        return self._s.fileno() if self._s is not None else -1

    def makefile(self, *args, **kw):
        """The socket itself (a stream already)."""
        return self

    def bind(self, addr):
        """Refused: the node is a client."""
        raise OSError(_e.EOPNOTSUPP)  # the node is a client; nothing listens on the simulated board

    def listen(self, backlog=0):
        """Refused: the node is a client."""
        raise OSError(_e.EOPNOTSUPP)

    def accept(self):
        """Refused: the node is a client."""
        raise OSError(_e.EOPNOTSUPP)
