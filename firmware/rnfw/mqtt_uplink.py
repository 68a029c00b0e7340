"""The WiFi/MQTT uplink (docs/uplink.md): every packet goes into the store-and-forward queue on
flash; batches of the queue go to the collector over MQTT; packets leave the queue only when the
collector acknowledges them after its database commit.

All of it runs inside the main loop's 50 ms pass, one poll() per pass, never waiting on the network:
WiFi association runs in the background (network.WLAN), the MQTT client is non-blocking
(rnfw.mqtt), and one poll reads at most one batch from the queue.

Sending: batches go out in order from the oldest unacknowledged seq, up to _WINDOW in flight. An
acknowledgement is cumulative; when none comes for _ACK_WAIT_MS, or after a reconnect, sending
starts again from the oldest held (duplicates on the wire only: the collector dedupes by epoch and
seq). Heartbeats are queued like the rest and also published, retained, on the status topic; the
broker publishes the last will `offline` there when the link dies.

The uplink is the MQTT client itself (a subclass: one object and one set of attributes on the
node's heap). The batch header and the acknowledgement are written and read here, in the format
rnfw.batch defines for the collector (docs/uplink.md; the end-to-end tests run the node's batches
through the collector).
"""

import struct
from binascii import hexlify

import network
from micropython import const

from rnfw import auth
from rnfw.mqtt import MQTTClient
from rnfw.queue import Queue

_COMMIT_MS = const(10000)  # the RAM batch reaches the flash at least this often (docs/uplink.md: wear)
_ACK_WAIT_MS = const(30000)  # no acknowledgement for this long: send again from the oldest held
_WIFI_RETRY_MS = const(15000)  # a failed or stalled association is started again after this
_WINDOW = const(2)  # batches published and not yet acknowledged
_TLS_HOLD_MS = const(300000)  # TLS on the move: how long a connection waits for the vehicle to stop
_MASK = const(0x3FFFFFFF)
_BATCH = const(500)  # bytes of one /up message (header + packets): ~19 segments; sealed: 512
_HDR = const(14)  # its header (rnfw.batch.HDR): format, epoch, base, first, count
# the client's buffers, sized for this use (heap). What comes in is acks: a PUBLISH of 8 bytes on
# roadnode/<id>/ack, 35 bytes at most (anything longer is acknowledged and skipped). A batch goes
# out as a PUBLISH of at most 1 + 2 + 2 + 20 (roadnode/16777215/up) + 2 + 512 = 539 bytes, from the
# QoS 1 store (the window's two) through tx, which also takes the retained heartbeat (88 bytes at
# most) beside it, and the CONNECT (~200 B with a user name and password); while idle, tx holds the
# batch being read from the queue
_RX = const(96)
_TX = const(640)
_STORE = const(1088)
_T_STATUS = const(3)
_UP = const(4)  # the client's link states (rnfw.mqtt)
_DOWN = const(0)

# link byte of the heartbeat (docs/packets.md): WiFi 0 off, 1 connecting, 2 up, 3 failed;
# MQTT 0 off, 1 down, 2 connecting, 3 up
_W_CONNECTING = const(1)
_W_UP = const(2)
_W_FAILED = const(3)


class MqttUplink(MQTTClient):
    """The uplink (module docstring): the MQTT client with the queue, the batches and the WiFi."""

    moving = False  # set by the app each pass: the vehicle moves (a TLS connection waits for a stop)

    def __init__(self, cfg, root="/q", wlan=None, queue=None):
        did = cfg["device_id"]
        # the node's key (rnfw.auth, beside the config): its messages are sealed, and with no user
        # name configured it logs in as its device id with a password derived from the key
        d = root[: root.rfind("/")]
        k = auth.load(d)  # (kept in rnfw.auth: no attribute more here)
        u = cfg["mqtt_user"] or (str(did) if k else None)
        pw = cfg["mqtt_password"] or (hexlify(auth.mac(k, b"mqtt-password")[:16]).decode() if k else None)
        st = ("roadnode/%d/status" % did).encode()
        # TLS (docs/security.md): the broker's certificate checked against the CA beside the key
        # (ca.der, put there by `roadnode tls-ca`); the plain port's default means MQTT's TLS port
        t = cfg["mqtt_tls"] == "on"
        p = cfg["mqtt_port"]
        MQTTClient.__init__(self, "roadnode-%d" % did, cfg["mqtt_host"], 8883 if t and p == 1883 else p, u,
                            pw if u else None, cfg["mqtt_keepalive_s"],
                            (st, b"offline", True), None, (_RX, _TX, _STORE, _WINDOW + 1))
        if t:
            self._ca = d + "/ca.der"
        self.subscribe(("roadnode/%d/ack" % did).encode(), 1)
        self.cfg = cfg
        self.q = queue or Queue(root)  # (the queue's folder on the flash)
        self.wlan = wlan or network.WLAN(network.STA_IF)
        self.t_up = ("roadnode/%d/up" % did).encode()
        self.t_status = st
        self._status = None  # the latest heartbeat, published retained when possible
        self._next = self.q.base  # next seq to publish
        self._ends = [0] * _WINDOW  # last seq of each batch in flight, oldest first
        self._infl = -1  # batches in flight; -1: a new session, sending starts from the oldest held
        self._sent_ms = 0  # when the oldest batch in flight went out
        self._commit_ms = 0
        self._wifi = 0
        self._wifi_ms = 0
        self._ack_ms = -1  # when the collector last acknowledged (-1: never since boot)
        self._now = 0
        self.sent = 0  # batches published
        self.acks = 0
        self._start_wifi(0)

    # ---- packets in ----------------------------------------------------------------------------
    def send(self, pkt, n):
        """Queue a packet. A segment or an event is on flash before this returns (a power cut the
        next moment loses no measurement: ~1 commit per 7 s at 50 km/h); heartbeats wait in the RAM
        batch for the next commit (<= 10 s). A heartbeat is also kept for the retained status topic."""
        self.q.append(pkt, n)
        if n and pkt[0] & 0x0F == _T_STATUS:
            # the latest heartbeat, retained: who looks at the node sees it at once (QoS 0: a lost
            # one is replaced by the next; the queued copy is the record)
            if auth._k:  # sealed (rnfw.auth): the packet and 12 bytes of seal
                s = bytearray(n + 12)
                s[:n] = pkt[:n]
                auth.seal(s, n)
            else:
                s = bytes(pkt[:n])
            self._status = s
            if self.state == _UP:
                self.publish(self.t_status, s, 0, True)
        else:
            self.flush()
        return True

    def flush(self):
        """End of a drive: what the RAM batch holds goes to flash now."""
        self.q.commit()
        self._commit_ms = self._now

    # ---- the pass ------------------------------------------------------------------------------
    def poll(self, now):
        """One pass: commit the RAM batch when due, keep WiFi up, run the client, publish the next batch."""
        self._now = now
        q = self.q
        if (now - self._commit_ms) & _MASK >= _COMMIT_MS:
            self._commit_ms = now
            if q.depth:
                q.commit()
        w = self.wlan
        if not w.isconnected():
            if self._wifi == _W_UP:  # the association was lost: the client finds out by itself
                self._wifi = _W_CONNECTING
                self._wifi_ms = now
            # an attempt that failed (the ESP32 port reports ESP-IDF's reason; it has no STAT_CONNECT_FAIL)
            if w.status() in (network.STAT_WRONG_PASSWORD, network.STAT_NO_AP_FOUND, network.STAT_ASSOC_FAIL,
                              network.STAT_HANDSHAKE_TIMEOUT):
                self._wifi = _W_FAILED
            if (now - self._wifi_ms) & _MASK >= _WIFI_RETRY_MS:
                try:
                    w.disconnect()
                except OSError:
                    pass
                self._start_wifi(now)
            return
        if self._wifi != _W_UP:
            self._wifi = _W_UP
            try:
                self._dns = w.ifconfig()[3]  # host names resolve through the network's DNS
            except (OSError, IndexError):
                pass
            self._wait = 0  # a new network: try the broker at once, not after a backoff
        if self.moving and self._ca is not None and self.state == _DOWN and (now - self._t0) & _MASK < _TLS_HOLD_MS:
            # the TLS handshake's public-key work is one long pass (docs/security.md: ~0.5 s or more
            # on an ESP32), longer than the IMU FIFO holds: a node on the move waits for a stop (the
            # app sets `moving`), for at most _TLS_HOLD_MS after the link went down or last failed
            return
        MQTTClient.poll(self, now)
        if self.state != _UP:
            self._infl = -1  # the next session sends from the oldest held
            return
        k = self._infl
        if k < 0 or k and (now - self._sent_ms) & _MASK >= _ACK_WAIT_MS:
            # a new session, or the collector did not answer (the batches may be lost): send
            # again from the oldest held; a new session also gets the latest heartbeat
            if k < 0 and self._status:
                self.publish(self.t_status, self._status, 0, True)
            self._next = q.base
            self._infl = k = 0
            self._sent_ms = now
        if k >= _WINDOW or self._txo != self._txn:
            return  # the window is full, or tx holds bytes for the socket
        # the batch is put together in the client's idle tx buffer, and publish() copies it to the
        # store: no buffer of its own
        b = self._tx
        first, count, nb = q.read(self._next, b[_HDR:_BATCH])
        if not count:
            return
        struct.pack_into("<BIIIB", b, 0, 1, q.epoch, q.base, first, count)
        nb += _HDR
        if auth._k:  # sealed (rnfw.auth; rnfw.batch.SEALED): format 2, the seal after the packets
            b[0] = 2
            nb = auth.seal(b, nb)
        if self.publish(self.t_up, b[:nb], 1, False) < 0:
            return  # no room in the client's store: the same batch next pass
        if not k:
            self._sent_ms = now
        self._ends[k] = first + count - 1
        self._infl = k + 1
        self._next = (first + count) & _MASK
        self.sent += 1

    def on_message(self, topic, payload):
        """An acknowledgement (the only topic subscribed): u32 epoch, u32 upto (LE)."""
        if len(payload) != 8:
            return
        epoch, upto = struct.unpack("<II", payload)
        q = self.q
        if epoch != q.epoch or upto >= q.next_seq:
            return  # not ours (an old epoch: a queue that was wiped), or what this queue never sent
        q.ack(upto)
        self.acks += 1
        self._ack_ms = self._sent_ms = self._now
        e = self._ends
        n = self._infl
        k = 0
        while k < n and e[k] <= upto:  # the batches this acknowledgement covers
            k += 1
        if k:
            for i in range(n - k):
                e[i] = e[i + k]
            self._infl = n - k
        if self._next < q.base:
            self._next = q.base

    # ---- WiFi ----------------------------------------------------------------------------------
    def _start_wifi(self, now):
        w = self.wlan
        try:
            w.active(True)
            w.connect(self.cfg["wifi_ssid"], self.cfg["wifi_password"])
            self._wifi = _W_CONNECTING
        except OSError:
            self._wifi = _W_FAILED
        self._wifi_ms = now

    # ---- the heartbeat's view ------------------------------------------------------------------
    def stats(self):
        """(queue_depth, queue_dropped, link byte: WiFi state | MQTT state << 2, reconnects,
        seconds since the last ack or 0xFFFF, queue_torn); docs/packets.md."""
        q = self.q
        s = self.state
        if self._ack_ms < 0:
            a = 0xFFFF  # none since boot
        else:
            a = ((self._now - self._ack_ms) & _MASK) // 1000
            if a > 0xFFFE:
                a = 0xFFFE
        c = self.connects
        return (q.depth, q.dropped, self._wifi | (3 if s == _UP else 2 if s != _DOWN else 1) << 2,
                c - 1 if c > 1 else 0, a, q.torn)
