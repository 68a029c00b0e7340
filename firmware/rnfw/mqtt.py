"""MQTT 3.1.1 client for the node: non-blocking, one bounded slice of work per poll().

The main loop gives the uplink one call per 50 ms pass, so nothing here may wait on the network:
the socket is non-blocking, DNS is a UDP query answered over later polls, connect/CONNACK/keepalive
are timers on the caller's millisecond clock (30-bit, wrapping: only wrap-safe differences), and
poll() reads, parses and sends at most a bounded amount before it returns. QoS 1 publishes stay
in a preallocated store until their PUBACK and are sent again (DUP) after the retry time and after
a reconnect. The session is persistent (clean session off): the broker keeps the subscriptions and
the QoS 1 messages for the node while it is away. Errors never leave poll(): the link is dropped,
`last_error` says why, and the next attempt waits a backoff (1 s doubling to 60 s, reset by a
successful CONNACK).

TLS (docs/security.md): with `_ca` set to the path of a CA's DER file after construction (an
attribute, not an argument: every name costs the node's heap), the TCP connection is wrapped in
MicroPython's `tls` (mbedTLS) once it is up, without a handshake (do_handshake_on_connect off): the
handshake runs inside the non-blocking writes of the CONNECT and the reads of the polls that follow,
and the broker's certificate must chain to the CA and name the host (the mqtt host, IP or name). The
context is made at the first TLS link and kept (the CA is parsed once). A failure before the CONNECT
went out (a certificate refused, a broker without TLS closing the link, a timeout) reads "tls: ..."
in `last_error`. mbedTLS needs the same bytes again after a write it could not finish: `_wl` keeps
that write's end, so what publish() appends meanwhile does not go into a record that is half sent.
The handshake's public-key work (the certificate chain, the key exchange) runs inside the one call
that receives the broker's flight: a long pass (docs/security.md has the figures).

Hardware-free: only `socket` and `select` (and `tls` with a CA), so the same module runs on the ESP32,
on the unix port and on CPython (host tests, through roadnode.mpy.fwimport.fw; plain TCP there).

Heap: on the node the code lives on the heap and every name is a qstr there, so the client keeps
to the few methods and attributes the node needs; constants are private (const: nothing is left
of them after compilation), options come in tuples. The link states are plain numbers:
0 down (waiting for the backoff), 1 resolving (DNS query sent), 2 connecting (TCP), 3 CONNECT sent
(waiting for CONNACK), 4 up.
"""

import select
import socket

from micropython import const

_DOWN = const(0)
_RESOLVING = const(1)
_CONNECTING = const(2)
_CONNACK_WAIT = const(3)
_UP = const(4)

_MASK = const(0x3FFFFFFF)  # the node's ms clock wraps at 2^30
_MAX_STEPS = const(8)  # packets (or packet pieces) read per poll: bounds the work of one call
# poll events and errno: the same numbers on MicroPython's ports (lwIP) and on Linux
_IN = const(1)  # POLLIN
_OUT = const(4)  # POLLOUT
_BAD = const(24)  # POLLERR | POLLHUP
_EAGAIN = const(11)
_EINPROGRESS = const(115)  # 119 with the ESP32's lwIP/newlib numbering


def _putlen(buf, o, n):
    """The remaining-length varint n at buf[o]; the offset after it."""
    while True:
        b = n & 0x7F
        n >>= 7
        buf[o] = b | 0x80 if n else b
        o += 1
        if not n:
            return o


def _putstr(buf, o, s):
    """s (bytes) with its 2-byte length at buf[o]; the offset after it."""
    n = len(s)
    buf[o] = n >> 8
    buf[o + 1] = n & 0xFF
    buf[o + 2 : o + 2 + n] = s
    return o + 2 + n


class MQTTClient:
    """See the module docstring.

    ``will``: (topic, message, retain), sent QoS 1 by the broker when the link dies.
    ``sizes``: (rx, tx, store, publishes in flight), allocated here once: rx holds one incoming
    packet (a larger PUBLISH is acknowledged and skipped, counted in rx_dropped), tx the bytes
    waiting for the socket, the store the QoS 1 PUBLISH packets until their PUBACK (a ring).
    ``timing``: (retry, timeout, backoff min, backoff max) in ms: a QoS 1 publish without PUBACK
    for `retry` goes again; `timeout` bounds each of the DNS answer, the TCP connect, the CONNACK.
    ``dns``: the resolver for a host name (an IP, or (ip, port)); without it a name goes through
    getaddrinfo, which blocks (host tools only). An IP literal needs neither.
    Incoming messages go to on_message(topic str, payload bytes): override it or assign one."""

    def __init__(self, client_id, host, port=1883, user=None, password=None, keepalive_s=60, will=None,
                 dns=None, sizes=(1536, 1536, 2560, 8), timing=(10000, 10000, 1000, 60000)):
        self.host = host
        self.port = port
        self._dns = dns
        self._ca = None  # TLS: the CA's path, then the context made from it (None: plain TCP)
        self._ka = keepalive_s * 1000
        self._tm = timing
        # the CONNECT packet, built once: 3.1.1, clean session off, will QoS 1
        flags = 0
        f = [client_id]
        if will:
            flags = 0x2C if will[2] else 0x0C
            f += will[:2]
        if user is not None:
            flags |= 0x80
            f.append(user)
            if password is not None:  # MQTT 3.1.1 allows a password only with a user name
                flags |= 0x40
                f.append(password)
        rl = 10
        for i in range(len(f)):
            if isinstance(f[i], str):
                f[i] = f[i].encode()
            rl += 2 + len(f[i])
        c = bytearray(rl + (2 if rl < 128 else 3 if rl < 16384 else 4))
        c[0] = 0x10
        o = _putstr(c, _putlen(c, 1, rl), b"MQTT")
        c[o] = 4  # protocol level 3.1.1
        c[o + 1] = flags
        c[o + 2] = keepalive_s >> 8
        c[o + 3] = keepalive_s & 0xFF
        o += 4
        for x in f:
            o = _putstr(c, o, x)
        if len(c) > sizes[1]:
            raise ValueError("CONNECT larger than the tx buffer")
        self._conn = c
        self._rx = memoryview(bytearray(sizes[0]))
        self._tx = memoryview(bytearray(sizes[1]))
        self._st = memoryview(bytearray(sizes[2]))
        # QoS 1 publishes in flight, oldest first, 4 numbers each: packet id, offset and length in
        # the store, when it was sent (ms; -1: to be sent)
        self._inf = [0] * (4 * sizes[3])
        self.inflight = 0
        self._subs = []  # [topic bytes, qos, 0 to send / 1 sent / 2 acknowledged, packet id]
        self._pid = 0
        self.state = _DOWN
        self.last_error = ""
        self.connects = 0  # successful CONNACKs
        self.errors = 0  # links or attempts dropped
        self.retransmits = 0  # QoS 1 publishes sent again (DUP)
        self.acked = 0  # PUBACKs received for our publishes
        self.received = 0  # PUBLISH packets received
        self.rx_dropped = 0  # incoming PUBLISH larger than the rx buffer (acknowledged, skipped)
        self._sock = self._ipoll = self._ri = None
        self._wl = 0  # TLS: end of the write mbedTLS has not finished (0: none)
        self._t0 = 0  # start of the current wait (backoff, DNS, connect, CONNACK)
        self._wait = 0  # backoff before the next attempt (0: the first one goes at once)
        self._backoff = timing[2]
        self._last_rx = self._last_tx = 0
        self._ping = False  # a PINGREQ waits for its PINGRESP
        # reading: bytes of the packet at hand in rx, bytes wanted, its header length (0: still
        # reading the remaining length), its total length, bytes of an oversized one to skip
        self._rxn = self._hdr = self._total = self._skip = 0
        self._need = 2
        self._txo = self._txn = 0  # tx[_txo:_txn] waits for the socket

    # ---- public interface -------------------------------------------------------------------

    def on_message(self, topic, payload):
        """A PUBLISH came in (topic str, payload bytes)."""

    def poll(self, now):
        """One bounded slice of work at time now (ms); returns the state. Never blocks, never raises."""
        now &= _MASK
        st = self.state
        try:
            if st == _DOWN:
                if (now - self._t0) & _MASK >= self._wait:
                    self._start(now)
            elif st == _RESOLVING:
                if self._events() & _IN:
                    from rnfw.dns import decode

                    ip = decode(self._sock.recv(512), (self._t0 ^ self.errors << 5) & 0xFFFF)
                    if ip is not None:
                        self._sock.close()
                        self._tcp(now, socket.getaddrinfo(ip, self.port)[0][-1])
                        return self.state
                if (now - self._t0) & _MASK >= self._tm[1]:
                    raise ValueError("dns timeout")
            elif st == _CONNECTING:
                ev = self._events()
                if ev & _BAD:
                    raise ValueError("connect failed")
                if ev & _OUT:
                    s = self._sock
                    c = self._ca
                    if c is not None:
                        if isinstance(c, str):  # the first TLS link: the context, the CA parsed once
                            import tls

                            x = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
                            x.verify_mode = tls.CERT_REQUIRED
                            try:
                                with open(c, "rb") as f:
                                    x.load_verify_locations(f.read())
                            except (OSError, ValueError) as y:
                                raise ValueError("tls: %s %s" % (c, y))
                            self._ca = c = x
                        # the handshake runs in the writes and reads that follow (never blocks)
                        s = c.wrap_socket(s, server_hostname=self.host, do_handshake_on_connect=False)
                        self._ri = (s.readinto, s.write)
                    self._watch(s, _IN)
                    self.state = _CONNACK_WAIT
                    self._t0 = self._last_rx = self._last_tx = now
                    c = self._conn
                    self._tx[: len(c)] = c
                    self._txn = len(c)
                    self._out(now)
                elif (now - self._t0) & _MASK >= self._tm[1]:
                    raise ValueError("connect timeout")
            else:
                # read when the socket has something, or when a packet waits for room in tx
                if (self._hdr and self._rxn >= self._need or self._events() & (_IN | _BAD)) and not self._read(now):
                    raise ValueError("truncated packet" if self._rxn else "closed by broker")
                if self.state == _CONNACK_WAIT:
                    if (now - self._t0) & _MASK >= self._tm[1]:
                        raise ValueError("connack timeout")
                else:
                    ka = self._ka
                    if ka and (now - self._last_rx) & _MASK >= ka + (ka >> 1):
                        raise ValueError("keepalive timeout")
                self._out(now)
        except Exception as e:
            # a malformed or refused reply, a timeout, a certificate refused (ValueError), the
            # network or mbedTLS (OSError), or anything else (MemoryError...): the link goes, the
            # pass goes on
            if isinstance(e, ValueError):
                e = str(e).strip().replace("\n", " ")  # (mbedTLS's verdict on a certificate: lines)
            elif isinstance(e, OSError):
                a = e.args
                e = "os error %d in state %d" % (a[0] if a else -1, st)
                if len(a) > 1:  # mbedTLS's own text for its (negative) codes
                    e += " " + str(a[1])
            else:
                e = "internal error %s" % type(e).__name__
            if self.state == _CONNACK_WAIT and self._ca is not None and not self._txo and self._txn:
                e = "tls: " + e  # the CONNECT never went out: the TLS handshake did not complete
            s = self._sock
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
            self._sock = self._ipoll = self._ri = None
            self.state = _DOWN
            self._ping = False
            self._rxn = self._hdr = self._total = self._skip = self._txo = self._txn = self._wl = 0
            self._need = 2
            for k in range(3, 4 * self.inflight, 4):
                self._inf[k] = -1  # unacknowledged: all go again after the next CONNACK
            for s in self._subs:
                if s[2] == 1:  # no SUBACK: subscribe again
                    s[2] = s[3] = 0
            self.last_error = e
            self.errors += 1
            self._t0 = now
            self._wait = self._backoff
            self._backoff = min(self._backoff * 2, self._tm[3])
        return self.state

    def publish(self, topic, payload, qos=1, retain=False):
        """Queue a PUBLISH; it goes out on the next polls. Returns the packet id (QoS 1), 0 (QoS 0),
        or -1 when not connected or when there is no room (the caller tries again later)."""
        if self.state != _UP:
            return -1
        if isinstance(topic, str):
            topic = topic.encode()
        q = 1 if qos else 0
        rl = 2 + len(topic) + 2 * q + len(payload)
        size = rl + (2 if rl < 128 else 3 if rl < 16384 else 4)
        if q:
            k = self.inflight
            inf = self._inf
            if 4 * k >= len(inf) or size > len(self._tx):
                return -1
            # the store is a ring: room after the newest entry, else from 0 up to the oldest
            buf = self._st
            o = 0 if size <= len(buf) else -1
            if k:
                head = inf[1]
                tail = inf[4 * k - 3] + inf[4 * k - 2]
                if head < tail:  # not wrapped
                    o = tail if tail + size <= len(buf) else (0 if size <= head else -1)
                else:
                    o = tail if tail + size <= head else -1
            if o < 0:
                return -1
            pid = self._newpid()
        else:
            o = self._room(size)
            if o < 0:
                return -1
            buf = self._tx
            pid = 0
        buf[o] = 0x30 | q << 1 | (1 if retain else 0)
        p = _putstr(buf, _putlen(buf, o + 1, rl), topic)
        if q:
            buf[p] = pid >> 8
            buf[p + 1] = pid & 0xFF
            p += 2
        buf[p : p + len(payload)] = payload
        if q:
            k *= 4
            inf[k] = pid
            inf[k + 1] = o
            inf[k + 2] = size
            inf[k + 3] = -1
            self.inflight += 1
        else:
            self._txn = o + size
        return pid

    def subscribe(self, topic, qos=1):
        """Keep a subscription: sent once connected, and again after a reconnect whose session
        the broker did not keep (or whose SUBACK never came)."""
        self._subs.append([topic.encode() if isinstance(topic, str) else topic, 1 if qos else 0, 0, 0])

    # ---- connecting ---------------------------------------------------------------------------

    def _start(self, now):
        self._t0 = now
        h = self.host
        d = self._dns
        p = h.split(".")
        if d is None or len(p) == 4 and all(x.isdigit() for x in p):
            # an IP literal needs no lookup (getaddrinfo returns at once); a name without a DNS
            # server given falls back to the blocking resolver (host tools, not the node)
            self._tcp(now, socket.getaddrinfo(h, self.port)[0][-1])
            return
        from rnfw.dns import encode  # only a node given a host name loads the resolver

        if not isinstance(d, tuple):
            d = (d, 53)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._watch(s, _IN)
        self.state = _RESOLVING
        s.sendto(encode(h, (now ^ self.errors << 5) & 0xFFFF), socket.getaddrinfo(d[0], d[1])[0][-1])

    def _tcp(self, now, addr):
        s = socket.socket()
        try:  # small packets at once: a PUBACK then the next batch would wait for the broker's
            # delayed TCP ACK under Nagle's algorithm (the uplink's window is latency-bound)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (AttributeError, OSError):  # a port without the option: Nagle stays, nothing breaks
            pass
        self._watch(s, _OUT)
        # (reading, writing): readinto (MicroPython) or recv_into (CPython), straight into the rx
        # buffer; write (MicroPython: None when it would block) or send (CPython)
        self._ri = (getattr(s, "readinto", None) or s.recv_into, getattr(s, "write", None) or s.send)
        self.state = _CONNECTING
        self._t0 = now
        try:
            s.connect(addr)  # the sockaddr from getaddrinfo, unchanged (a tuple or bytes per port)
        except OSError as e:
            if e.args[0] not in (_EINPROGRESS, 119):
                raise

    def _watch(self, s, mask):
        """s becomes the socket, non-blocking, polled for mask."""
        s.setblocking(False)
        self._sock = s
        p = select.poll()
        p.register(s, mask)
        # ipoll (MicroPython) does not allocate a list; CPython has only poll
        self._ipoll = getattr(p, "ipoll", None) or p.poll

    def _events(self):
        ev = 0
        for t in self._ipoll(0):
            ev |= t[1]
        return ev

    # ---- reading ----------------------------------------------------------------------------

    def _read(self, now):
        """Read and handle up to _MAX_STEPS packet pieces; False at the end of the stream.

        Reads only the bytes of the packet at hand (2 header bytes, the rest of the length, then
        the body), so the packet always starts at rx[0] and nothing is ever moved."""
        rx = self._rx
        for _ in range(_MAX_STEPS):
            n = self._rxn
            need = self._need
            k = self._skip  # the tail of an oversized PUBLISH: read and forget
            if k or n < need:
                try:
                    r = self._ri[0](rx[: min(k, len(rx))] if k else rx[n:need])
                except OSError as e:
                    if e.args[0] != _EAGAIN:
                        raise
                    r = None
                if not r:
                    return r is None  # nothing waiting, or 0: the end of the stream
                self._last_rx = now
                if k:
                    self._skip = k - r
                    continue
                n += r
                self._rxn = n
                if n < need:
                    return True
            if not self._hdr:  # reading the remaining length
                if rx[n - 1] & 0x80:
                    if n >= 5:
                        raise ValueError("bad remaining length")
                    self._need = n + 1
                    continue
                k = 0
                for i in range(n - 1, 0, -1):
                    k = k << 7 | rx[i] & 0x7F
                self._hdr = n
                self._total = n + k
                self._need = min(n + k, len(rx))
                if n < self._need:
                    continue
            if not self._handle(now):
                return True  # no room to answer yet: keep the packet for the next poll
            self._rxn = self._hdr = 0
            self._need = 2
        return True

    def _handle(self, now):
        """Act on the packet in rx; False when it must wait (no room in tx for the answer)."""
        rx = self._rx
        h = rx[0]
        t = h >> 4
        p = self._hdr
        end = self._total
        rl = end - p
        if self.state == _CONNACK_WAIT and t != 2:
            raise ValueError("expected CONNACK, got type %d" % t)
        if t == 3:  # PUBLISH: one larger than rx is acknowledged, counted and skipped
            q = h >> 1 & 3
            big = end > len(rx)
            b = p + 2 + (rx[p] << 8 | rx[p + 1]) if rl >= 2 else end + 1
            c = b + 2 * q
            if q > 1 or c > (len(rx) if big else end):
                raise ValueError("malformed PUBLISH")  # (we subscribe with QoS <= 1)
            if q:
                pid = rx[b] << 8 | rx[b + 1]
                o = self._room(4)
                if not pid:
                    raise ValueError("PUBLISH without id")
                if o < 0:
                    return False
                tx = self._tx
                tx[o] = 0x40
                tx[o + 1] = 2
                tx[o + 2] = pid >> 8
                tx[o + 3] = pid & 0xFF
                self._txn = o + 4
            if big:
                self.rx_dropped += 1
                self._skip = end - len(rx)
                return True
            self.received += 1
            try:
                self.on_message(bytes(rx[p + 2 : b]).decode(), bytes(rx[c:end]))
            except Exception as e:  # the caller's bug must not cost the link
                self.last_error = "on_message %s" % type(e).__name__
            return True
        if end > len(rx):
            raise ValueError("oversized type %d" % t)
        if h & 15:
            raise ValueError("bad flags type %d" % t)
        if t == 4:  # PUBACK
            if rl != 2:
                raise ValueError("malformed PUBACK")
            pid = rx[p] << 8 | rx[p + 1]
            inf = self._inf
            n = 4 * self.inflight
            for k in range(0, n, 4):
                if inf[k] == pid:
                    for i in range(k, n - 4):
                        inf[i] = inf[i + 4]
                    self.inflight -= 1
                    self.acked += 1
                    break
            # (none: the answer to a retransmission, already counted)
        elif t == 13:  # PINGRESP
            if rl:
                raise ValueError("malformed PINGRESP")
            self._ping = False
        elif t == 9:  # SUBACK
            if rl < 3:
                raise ValueError("malformed SUBACK")
            pid = rx[p] << 8 | rx[p + 1]
            for s in self._subs:
                if s[2] == 1 and s[3] == pid:
                    s[2] = 2
                    s[3] = 0
                    if rx[p + 2] & 0x80:
                        self.last_error = "subscription refused"
        elif t == 2:  # CONNACK
            if rl != 2 or self.state != _CONNACK_WAIT:
                raise ValueError("malformed CONNACK")
            if rx[p + 1]:
                raise ValueError("CONNACK refused %d" % rx[p + 1])
            self.state = _UP
            self.connects += 1
            self._backoff = self._tm[2]
            self._ping = False
            if not rx[p] & 1:  # the broker has no session for us: subscribe again
                for s in self._subs:
                    s[2] = s[3] = 0
        elif t != 11:  # UNSUBACK is harmless; anything else is not for a client
            raise ValueError("bad type %d" % t)
        return True

    # ---- sending ----------------------------------------------------------------------------

    def _room(self, need):
        """Offset where `need` bytes can be appended to tx, or -1. Nothing is ever moved: the
        buffer starts again at 0 once all that was queued has gone out."""
        n = self._txn
        if self._txo == n:
            self._txo = self._txn = n = 0
        return n if n + need <= len(self._tx) else -1

    def _newpid(self):
        while True:
            p = self._pid % 65535 + 1
            self._pid = p
            for k in range(0, 4 * self.inflight, 4):
                if self._inf[k] == p:
                    break
            else:
                for s in self._subs:
                    if s[3] == p:
                        break
                else:
                    return p

    def _out(self, now):
        """Once up, queue what is due (PINGREQ, subscriptions, then QoS 1 publishes in order);
        then write what tx holds, as much as the socket takes."""
        tx = self._tx
        if self.state == _UP:
            ka = self._ka
            if ka and not self._ping and ((now - self._last_tx) & _MASK >= ka or (now - self._last_rx) & _MASK >= ka):
                o = self._room(2)
                if o >= 0:
                    tx[o] = 0xC0
                    tx[o + 1] = 0
                    self._txn = o + 2
                    self._ping = True
            for s in self._subs:
                if not s[2]:
                    t = s[0]
                    rl = 5 + len(t)
                    o = self._room(rl + (2 if rl < 128 else 3))
                    if o < 0:
                        break
                    pid = self._newpid()
                    tx[o] = 0x82
                    p = _putlen(tx, o + 1, rl)
                    tx[p] = pid >> 8
                    tx[p + 1] = pid & 0xFF
                    p = _putstr(tx, p + 2, t)
                    tx[p] = s[1]
                    self._txn = p + 1
                    s[2] = 1
                    s[3] = pid
            st = self._st
            inf = self._inf
            for k in range(0, 4 * self.inflight, 4):
                if inf[k + 3] >= 0 and (now - inf[k + 3]) & _MASK >= self._tm[0]:
                    inf[k + 3] = -1  # no PUBACK in time: send it again
                if inf[k + 3] < 0:
                    n = inf[k + 2]
                    o = self._room(n)
                    if o < 0:
                        break  # keep the order: nothing newer goes out before this one
                    a = inf[k + 1]
                    tx[o : o + n] = st[a : a + n]
                    self._txn = o + n
                    if st[a] & 8:
                        self.retransmits += 1
                    st[a] |= 8  # any later copy is a retransmission (DUP)
                    inf[k + 3] = now
        o = self._txo
        n = self._wl or self._txn
        if o < n:
            try:
                w = self._ri[1](tx[o:n])
            except OSError as e:
                if e.args[0] != _EAGAIN:
                    raise
                w = 0
            if w:
                self._last_tx = now
                self._wl = 0
                o += w
                if o >= self._txn:
                    o = self._txn = 0
                self._txo = o
            elif self._ca is not None:
                self._wl = n  # mbedTLS holds a record of tx[o:n]: the same bytes next time
