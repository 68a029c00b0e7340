"""MQTT 3.1.1 client for the node: non-blocking, one bounded slice of work per poll().

The main loop gives the uplink one call per 50 ms pass, so nothing here may wait on the network:
the socket is non-blocking, DNS is a UDP query answered over later polls, connect/CONNACK/keepalive
are timers on the caller's millisecond clock (30-bit, wrapping: only wrap-safe differences), and
poll() reads, parses and sends at most a bounded amount before it returns. QoS 1 publishes stay
in a preallocated store until their PUBACK and are sent again (DUP) after `retry_ms` and after a
reconnect. Errors never leave poll(): the link is dropped, `last_error` says why, and the next
attempt waits a backoff (1 s doubling to 60 s, reset by a successful CONNACK).

Hardware-free: only `socket` and `select`, so the same module runs on the ESP32, on the unix port
and on CPython (host tests, through roadnode.mpy.fwimport.fw).
"""

import errno
import select
import socket

from micropython import const

# link states (c.state, returned by poll)
DOWN = const(0)  # no socket: waiting for the backoff (or closed)
RESOLVING = const(1)  # DNS query sent, waiting for its answer
CONNECTING = const(2)  # TCP connect under way
CONNACK_WAIT = const(3)  # CONNECT sent, waiting for CONNACK
UP = const(4)  # session established

_MASK = const(0x3FFFFFFF)  # the node's ms clock wraps at 2^30
_MAX_STEPS = const(8)  # packets (or packet pieces) read per poll: bounds the work of one call
_IN = select.POLLIN
_OUT = select.POLLOUT
_BAD = select.POLLERR | select.POLLHUP
_EAGAIN = (errno.EAGAIN, 11)
# a non-blocking connect: EINPROGRESS (115 on Linux, 119 with the ESP32's lwIP/newlib numbering)
_INPROGRESS = (errno.EINPROGRESS, 115, 119)


def _el(now, t):
    """Milliseconds from t to now on the wrapping 30-bit clock."""
    return (now - t) & _MASK


def _errno(e):
    return e.args[0] if e.args else -1


def _b(x):
    return x.encode() if isinstance(x, str) else x


def _vlen(n):
    """Bytes of the remaining-length varint for n."""
    return 1 if n < 128 else 2 if n < 16384 else 3 if n < 2097152 else 4


def _putlen(buf, o, n):
    while True:
        b = n & 0x7F
        n >>= 7
        buf[o] = b | 0x80 if n else b
        o += 1
        if not n:
            return o


def _putstr(buf, o, s):
    n = len(s)
    buf[o] = n >> 8
    buf[o + 1] = n & 0xFF
    buf[o + 2 : o + 2 + n] = s
    return o + 2 + n


def _is_ip(h):
    p = h.split(".")
    if len(p) != 4:
        return False
    for x in p:
        if not x or len(x) > 3 or not x.isdigit() or int(x) > 255:
            return False
    return True


class MQTTClient:
    """See the module docstring. Buffers are allocated here once: rx (one incoming packet; a
    larger PUBLISH is acknowledged and skipped, counted in rx_dropped), tx (bytes waiting for the
    socket), and the QoS 1 store (a ring of encoded PUBLISH packets until their PUBACK)."""

    def __init__(self, client_id, host, port=1883, user=None, password=None, keepalive_s=60,
                 will_topic=None, will_msg=None, will_retain=True, clean=False, dns=None,
                 rx_size=1536, tx_size=1536, store_size=2560, max_inflight=8, retry_ms=10000,
                 timeout_ms=10000, backoff_min_ms=1000, backoff_max_ms=60000):
        self.host = host
        self.port = port
        self.clean = clean
        # dns: the resolver's IP (the node passes WLAN.ifconfig()[3]) or (ip, port); without it
        # a host name goes through getaddrinfo, which blocks (host tools only)
        self._dns = dns
        self._literal = _is_ip(host)
        self._ka = keepalive_s * 1000
        self._retry = retry_ms
        self._tmo = timeout_ms  # each of: DNS answer, TCP connect, CONNACK
        self._bmin = backoff_min_ms
        self._bmax = backoff_max_ms
        self.on_message = None  # f(topic str, payload bytes)
        self.on_puback = None  # f(packet id)

        self._conn = self._connect_packet(client_id, user, password, keepalive_s, will_topic,
                                          will_msg, will_retain, clean)
        if len(self._conn) > tx_size:
            raise ValueError("CONNECT larger than tx buffer")
        self._rx = bytearray(rx_size)
        self._rxmv = memoryview(self._rx)
        self._tx = bytearray(tx_size)
        self._txmv = memoryview(self._tx)
        self._st = bytearray(store_size)
        self._stmv = memoryview(self._st)
        # inflight QoS 1 publishes, oldest first: packet id, offset and length in the store,
        # 0 = to be sent / 1 = sent at _its (ms)
        self._maxin = max_inflight
        self._ipid = [0] * max_inflight
        self._ioff = [0] * max_inflight
        self._ilen = [0] * max_inflight
        self._ist = [0] * max_inflight
        self._its = [0] * max_inflight
        self._nin = 0
        self._subs = []  # [topic bytes, qos, 0 to send / 1 sent / 2 acked, packet id]
        self._pid = 0

        self.state = DOWN
        self.last_error = ""
        self.connects = 0  # successful CONNACKs
        self.errors = 0  # links or attempts dropped
        self.retransmits = 0  # QoS 1 publishes sent again (DUP)
        self.acked = 0  # PUBACKs received for our publishes
        self.received = 0  # PUBLISH packets received
        self.rx_dropped = 0  # incoming PUBLISH larger than the rx buffer (acknowledged, skipped)
        self._closed = False
        self._sock = None
        self._udp = None
        self._ipoll = None
        self._ri = None
        self._t0 = 0  # start of the current wait (backoff, DNS, connect, CONNACK)
        self._wait = 0  # backoff before the next attempt (0: the first one goes at once)
        self._backoff = backoff_min_ms
        self._tid = 0
        self._last_rx = 0
        self._last_tx = 0
        self._ping = False
        self._reset_io()

    @staticmethod
    def _connect_packet(cid, user, password, ka, wt, wm, wr, clean):
        cid = _b(cid)
        flags = 2 if clean else 0
        rl = 12 + len(cid)
        if wt is not None:
            wt = _b(wt)
            wm = _b(wm or b"")
            flags |= 0x0C | (0x20 if wr else 0)  # will, will QoS 1, will retain
            rl += 4 + len(wt) + len(wm)
        if user is not None:
            user = _b(user)
            flags |= 0x80
            rl += 2 + len(user)
            if password is not None:  # MQTT 3.1.1 allows a password only with a user name
                password = _b(password)
                flags |= 0x40
                rl += 2 + len(password)
        buf = bytearray(1 + _vlen(rl) + rl)
        buf[0] = 0x10
        o = _putlen(buf, 1, rl)
        o = _putstr(buf, o, b"MQTT")
        buf[o] = 4  # protocol level 3.1.1
        buf[o + 1] = flags
        buf[o + 2] = ka >> 8
        buf[o + 3] = ka & 0xFF
        o = _putstr(buf, o + 4, cid)
        if flags & 0x04:
            o = _putstr(buf, o, wt)
            o = _putstr(buf, o, wm)
        if flags & 0x80:
            o = _putstr(buf, o, user)
        if flags & 0x40:
            o = _putstr(buf, o, password)
        return bytes(buf)

    # ---- public interface -------------------------------------------------------------------

    @property
    def connected(self):
        return self.state == UP

    @property
    def inflight(self):
        return self._nin

    @property
    def reconnects(self):
        return self.connects - 1 if self.connects > 1 else 0

    def poll(self, now):
        """One bounded slice of work at time now (ms); returns the state. Never blocks, never raises."""
        now &= _MASK
        st = self.state
        try:
            if st == DOWN:
                if not self._closed and _el(now, self._t0) >= self._wait:
                    self._start(now)
            elif st == RESOLVING:
                self._resolving(now)
            elif st == CONNECTING:
                self._connecting(now)
            else:
                self._io(now)
        except ValueError as e:  # malformed or refused reply
            self._drop(now, str(e) or "malformed")
        except OSError as e:
            self._drop(now, "os %d %s" % (_errno(e), ("", "dns", "connect", "connack", "up")[st]))
        except Exception as e:  # e.g. MemoryError: the pass must go on
            self._drop(now, "error %s" % type(e).__name__)
        return self.state

    def publish(self, topic, payload, qos=1, retain=False):
        """Queue a PUBLISH; it goes out on the next polls. Returns the packet id (QoS 1), 0 (QoS 0),
        or -1 when not connected or when there is no room (the caller tries again later)."""
        if self.state != UP:
            return -1
        topic = _b(topic)
        qos = 1 if qos else 0
        rl = 2 + len(topic) + 2 * qos + len(payload)
        size = 1 + _vlen(rl) + rl
        if qos:
            if self._nin >= self._maxin or size > len(self._tx):
                return -1
            o = self._store_at(size)
            if o < 0:
                return -1
            buf = self._st
            pid = self._newpid()
        else:
            o = self._room(size)
            if o < 0:
                return -1
            buf = self._tx
            pid = 0
        buf[o] = 0x30 | qos << 1 | (1 if retain else 0)
        p = _putstr(buf, _putlen(buf, o + 1, rl), topic)
        if qos:
            buf[p] = pid >> 8
            buf[p + 1] = pid & 0xFF
            p += 2
        buf[p : p + len(payload)] = payload
        if qos:
            k = self._nin
            self._ipid[k] = pid
            self._ioff[k] = o
            self._ilen[k] = size
            self._ist[k] = 0
            self._nin = k + 1
        else:
            self._txn = o + size
        return pid

    def subscribe(self, topic, qos=1):
        """Keep a subscription: sent once connected, and again after a reconnect whose session
        the broker did not keep (or whose SUBACK never came)."""
        topic = _b(topic)
        for s in self._subs:
            if s[0] == topic:
                s[1] = qos
                s[2] = 0
                return
        self._subs.append([topic, 1 if qos else 0, 0, 0])

    def set_dns(self, server):
        """The resolver for a host name (the network's, from WLAN.ifconfig()[3] once associated)."""
        self._dns = server

    def wake(self):
        """Skip the backoff (and reopen after close()): the next poll starts a connection."""
        self._closed = False
        self._wait = 0

    def disconnect(self):
        """Close gracefully (DISCONNECT: the broker drops the last will) and stay down until wake()."""
        s = self._sock
        if s is not None and self.state == UP:
            o = self._room(2)
            if o >= 0:
                self._tx[o] = 0xE0
                self._tx[o + 1] = 0
                self._txn = o + 2
                try:  # best effort, one non-blocking write
                    s.send(self._txmv[self._txo : self._txn])
                except OSError:
                    pass
        self._forget_link()
        self._closed = True

    close = disconnect

    # ---- connection steps -------------------------------------------------------------------

    def _start(self, now):
        self._t0 = now
        if self._dns is not None and not self._literal:
            d = self._dns
            addr = socket.getaddrinfo(d[0], d[1]) if isinstance(d, tuple) else socket.getaddrinfo(d, 53)
            self._tid = (now ^ (now >> 14) ^ (self.errors << 5)) & 0xFFFF
            from rnfw.dns import query  # only a node given a host name loads the resolver

            q = query(self.host, self._tid)
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._udp = u
            u.setblocking(False)
            self._poller(u, _IN)
            self.state = RESOLVING
            u.sendto(q, addr[0][-1])
        else:
            # an IP literal needs no lookup (getaddrinfo returns at once); a name without a DNS
            # server given falls back to the blocking resolver (host tools, not the node)
            self._tcp(now, socket.getaddrinfo(self.host, self.port)[0][-1])

    def _resolving(self, now):
        if self._events() & _IN:
            from rnfw.dns import answer

            ip = answer(self._udp.recv(512), self._tid)
            if ip is not None:
                self._close_sockets()
                self._tcp(now, socket.getaddrinfo(ip, self.port)[0][-1])
                return
        if _el(now, self._t0) >= self._tmo:
            self._drop(now, "dns timeout")

    def _tcp(self, now, addr):
        s = socket.socket()
        self._sock = s
        # readinto (MicroPython) or recv_into (CPython): straight into the rx buffer
        self._ri = getattr(s, "readinto", None) or getattr(s, "recv_into", None)
        s.setblocking(False)
        self._poller(s, _OUT)
        self.state = CONNECTING
        self._t0 = now
        try:
            s.connect(addr)  # the sockaddr from getaddrinfo, unchanged (a tuple or bytes per port)
        except OSError as e:
            if _errno(e) not in _INPROGRESS:
                raise

    def _connecting(self, now):
        ev = self._events()
        if ev & _BAD:
            self._drop(now, "connect failed")
        elif ev & _OUT:
            self._poller(self._sock, _IN)
            self.state = CONNACK_WAIT
            self._t0 = self._last_rx = self._last_tx = now
            c = self._conn
            self._tx[: len(c)] = c
            self._txo = 0
            self._txn = len(c)
            self._send(now)
        elif _el(now, self._t0) >= self._tmo:
            self._drop(now, "connect timeout")

    def _io(self, now):
        # read when the socket has something, or when a packet is waiting for room in tx
        pending = self._hdr and self._rxn >= self._need
        if (pending or self._events() & (_IN | _BAD)) and not self._read(now):
            self._drop(now, "truncated" if self._rxn else "closed by broker")
            return
        if self.state == CONNACK_WAIT:
            if _el(now, self._t0) >= self._tmo:
                self._drop(now, "connack timeout")
                return
        elif self.state == UP:
            ka = self._ka
            if ka and _el(now, self._last_rx) >= ka + (ka >> 1):
                self._drop(now, "keepalive timeout")
                return
            self._fill(now)
        else:  # dropped while reading
            return
        self._send(now)

    # ---- reading ----------------------------------------------------------------------------

    def _recv(self, mv):
        """Bytes read into mv, None when nothing is waiting, 0 at end of stream."""
        try:
            f = self._ri
            if f is not None:
                return f(mv)
            d = self._sock.recv(len(mv))  # a socket with neither (a shim): copy
            if d is None:
                return None
            mv[: len(d)] = d
            return len(d)
        except OSError as e:
            if _errno(e) in _EAGAIN:
                return None
            raise

    def _read(self, now):
        """Read and handle up to _MAX_STEPS packet pieces; False at end of stream.

        Reads only the bytes of the packet at hand (2 header bytes, the rest of the length, then
        the body), so the packet always starts at rx[0] and nothing is ever moved."""
        rx = self._rx
        rxmv = self._rxmv
        for _ in range(_MAX_STEPS):
            if self._skip:  # the tail of an oversized PUBLISH: read and forget
                r = self._recv(rxmv[: min(self._skip, len(rx))])
                if not r:
                    return r is None
                self._last_rx = now
                self._skip -= r
                continue
            n = self._rxn
            need = self._need
            if n < need:
                r = self._recv(rxmv[n:need])
                if not r:
                    return r is None
                self._last_rx = now
                n += r
                self._rxn = n
                if n < need:
                    return True
            if not self._hdr:  # reading the remaining length
                if rx[n - 1] & 0x80:
                    if n >= 5:
                        raise ValueError("bad length")
                    self._need = n + 1
                    continue
                rl = 0
                for i in range(n - 1, 0, -1):
                    rl = rl << 7 | rx[i] & 0x7F
                self._hdr = n
                self._total = n + rl
                self._need = min(n + rl, len(rx))
                if n < self._need:
                    continue
            if not self._handle(now):
                return True  # no room to answer yet: keep the packet for the next poll
            self._rxn = 0
            self._need = 2
            self._hdr = 0
        return True

    def _handle(self, now):
        """Act on the packet in rx; False when it must wait (tx full)."""
        rx = self._rx
        h = rx[0]
        t = h >> 4
        p = self._hdr
        rl = self._total - p
        if self.state == CONNACK_WAIT and t != 2:
            raise ValueError("expected CONNACK, got type %d" % t)
        if self._total > len(rx):
            return self._oversized(h, p)
        if t == 3:
            return self._publish_in(h, p, rl)
        if h & 15:
            raise ValueError("bad flags type %d" % t)
        if t == 4:  # PUBACK
            if rl != 2:
                raise ValueError("bad PUBACK")
            self._acked(rx[p] << 8 | rx[p + 1])
        elif t == 13:  # PINGRESP
            if rl:
                raise ValueError("bad PINGRESP")
            self._ping = False
        elif t == 9:  # SUBACK
            if rl < 3:
                raise ValueError("bad SUBACK")
            pid = rx[p] << 8 | rx[p + 1]
            for s in self._subs:
                if s[2] == 1 and s[3] == pid:
                    s[2] = 2
                    s[3] = 0
                    if rx[p + 2] & 0x80:
                        self.last_error = "subscription refused"
        elif t == 2:  # CONNACK
            if rl != 2 or self.state != CONNACK_WAIT:
                raise ValueError("bad CONNACK")
            if rx[p + 1]:
                raise ValueError("refused %d" % rx[p + 1])
            self._up(now, rx[p] & 1)
        elif t != 11:  # UNSUBACK is harmless; anything else is not for a client
            raise ValueError("bad type %d" % t)
        return True

    def _publish_in(self, h, p, rl):
        rx = self._rx
        q = h >> 1 & 3
        if q > 1:
            raise ValueError("QoS %d PUBLISH" % q)  # we subscribe with QoS <= 1
        end = p + rl
        a = p + 2
        b = a + (rx[p] << 8 | rx[p + 1]) if rl >= 2 else end + 1
        c = b + 2 * q
        if c > end:
            raise ValueError("bad PUBLISH")
        if q:
            pid = rx[b] << 8 | rx[b + 1]
            if not pid:
                raise ValueError("bad PUBLISH id")
            if not self._puback(pid):
                return False
        self.received += 1
        cb = self.on_message
        if cb is not None:
            mv = self._rxmv
            try:
                cb(bytes(mv[a:b]).decode(), bytes(mv[c:end]))
            except Exception as e:  # the caller's bug must not cost the link
                self.last_error = "on_message %s" % type(e).__name__
        return True

    def _oversized(self, h, p):
        """A packet longer than rx: only a PUBLISH can be (acknowledged, counted, skipped)."""
        rx = self._rx
        q = h >> 1 & 3
        b = p + 2 + (rx[p] << 8 | rx[p + 1])
        if h >> 4 != 3 or q > 1 or b + 2 > len(rx):
            raise ValueError("oversized type %d" % (h >> 4))
        if q and not self._puback(rx[b] << 8 | rx[b + 1]):
            return False
        self.rx_dropped += 1
        self._skip = self._total - len(rx)
        return True

    def _puback(self, pid):
        o = self._room(4)
        if o < 0:
            return False
        tx = self._tx
        tx[o] = 0x40
        tx[o + 1] = 2
        tx[o + 2] = pid >> 8
        tx[o + 3] = pid & 0xFF
        self._txn = o + 4
        return True

    def _acked(self, pid):
        ipid = self._ipid
        for k in range(self._nin):
            if ipid[k] == pid:
                self._remove(k)
                self.acked += 1
                cb = self.on_puback
                if cb is not None:
                    try:
                        cb(pid)
                    except Exception as e:
                        self.last_error = "on_puback %s" % type(e).__name__
                return
        # a PUBACK for an id no longer held: the answer to a retransmission, already counted

    def _up(self, now, session_present):
        self.state = UP
        self.connects += 1
        self._backoff = self._bmin
        self._ping = False
        if not session_present or self.clean:
            for s in self._subs:  # the broker has no subscriptions for us: send them all again
                s[2] = 0
                s[3] = 0

    # ---- sending ----------------------------------------------------------------------------

    def _room(self, need):
        """Offset where `need` bytes can be appended to tx, or -1. Nothing is ever moved: the
        buffer starts again at 0 once all that was queued has gone out."""
        n = self._txn
        if self._txo == n:
            self._txo = self._txn = n = 0
        return n if n + need <= len(self._tx) else -1

    def _fill(self, now):
        """Queue what is due: PINGREQ, subscriptions, then QoS 1 publishes in order."""
        tx = self._tx
        ka = self._ka
        if ka and not self._ping and (_el(now, self._last_tx) >= ka or _el(now, self._last_rx) >= ka):
            o = self._room(2)
            if o >= 0:
                tx[o] = 0xC0
                tx[o + 1] = 0
                self._txn = o + 2
                self._ping = True
        for s in self._subs:
            if s[2] == 0:
                topic = s[0]
                rl = 5 + len(topic)
                o = self._room(1 + _vlen(rl) + rl)
                if o < 0:
                    break
                pid = self._newpid()
                tx[o] = 0x82
                p = _putlen(tx, o + 1, rl)
                tx[p] = pid >> 8
                tx[p + 1] = pid & 0xFF
                p = _putstr(tx, p + 2, topic)
                tx[p] = s[1]
                self._txn = p + 1
                s[2] = 1
                s[3] = pid
        st = self._st
        ist = self._ist
        its = self._its
        for k in range(self._nin):
            if ist[k] and _el(now, its[k]) >= self._retry:
                ist[k] = 0  # no PUBACK in time: send it again
            if not ist[k]:
                n = self._ilen[k]
                o = self._room(n)
                if o < 0:
                    break  # keep the order: nothing newer goes out before this one
                a = self._ioff[k]
                tx[o : o + n] = self._stmv[a : a + n]
                self._txn = o + n
                if st[a] & 0x08:
                    self.retransmits += 1
                st[a] |= 0x08  # any later copy is a retransmission (DUP)
                ist[k] = 1
                its[k] = now

    def _send(self, now):
        o = self._txo
        n = self._txn
        if o == n:
            return
        try:
            w = self._sock.send(self._txmv[o:n])
        except OSError as e:
            if _errno(e) in _EAGAIN:
                return
            raise
        if w:
            self._last_tx = now
            o += w
            if o >= n:
                o = n = 0
                self._txn = 0
            self._txo = o

    # ---- QoS 1 store --------------------------------------------------------------------------

    def _store_at(self, size):
        """Offset for a new entry in the store ring, after the newest one; -1 if full."""
        k = self._nin
        cap = len(self._st)
        if not k:
            return 0 if size <= cap else -1
        head = self._ioff[0]
        tail = self._ioff[k - 1] + self._ilen[k - 1]
        if head < tail:  # live region not wrapped: room after it, or from 0 up to the oldest
            if tail + size <= cap:
                return tail
            return 0 if size <= head else -1
        return tail if tail + size <= head else -1

    def _remove(self, k):
        n = self._nin - 1
        for lst in (self._ipid, self._ioff, self._ilen, self._ist, self._its):
            for i in range(k, n):
                lst[i] = lst[i + 1]
        self._ipid[n] = 0
        self._nin = n

    def _newpid(self):
        while True:
            p = self._pid % 65535 + 1
            self._pid = p
            if p in self._ipid:
                continue
            for s in self._subs:
                if s[3] == p:
                    break
            else:
                return p

    # ---- plumbing -----------------------------------------------------------------------------

    def _poller(self, s, mask):
        p = select.poll()
        p.register(s, mask)
        # ipoll (MicroPython) does not allocate a list; CPython has only poll
        self._ipoll = getattr(p, "ipoll", None) or p.poll

    def _events(self):
        ev = 0
        for t in self._ipoll(0):
            ev |= t[1]
        return ev

    def _reset_io(self):
        self._rxn = 0
        self._need = 2
        self._hdr = 0
        self._total = 0
        self._skip = 0
        self._txo = 0
        self._txn = 0

    def _close_sockets(self):
        for s in (self._sock, self._udp):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
        self._sock = self._udp = self._ipoll = self._ri = None

    def _drop(self, now, why):
        self._forget_link()
        self.last_error = why
        self.errors += 1
        self._t0 = now
        self._wait = self._backoff
        self._backoff = min(self._backoff * 2, self._bmax)

    def _forget_link(self):
        self._close_sockets()
        self.state = DOWN
        self._ping = False
        self._reset_io()
        for k in range(self._nin):
            self._ist[k] = 0  # unacknowledged: all go again after the next CONNACK
        for s in self._subs:
            if s[2] == 1:
                s[2] = 0
                s[3] = 0
