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
"""

import struct

import network
from micropython import const

from rnfw import batch, mqtt
from rnfw.queue import Queue

_COMMIT_MS = const(10000)  # the RAM batch reaches the flash at least this often (docs/uplink.md: wear)
_ACK_WAIT_MS = const(30000)  # no acknowledgement for this long: send again from the oldest held
_WIFI_RETRY_MS = const(15000)  # a failed or stalled association is started again after this
_WINDOW = const(2)  # batches published and not yet acknowledged
_MASK = const(0x3FFFFFFF)
_BATCH = const(512)  # bytes of one /up message (header + packets): ~19 segments
# the client's buffers, sized for this use (heap): what comes in is acks (8 B) and nothing else; a
# batch goes out from the QoS 1 store (the window's batches) through the tx buffer
_RX = const(256)
_TX = const(640)
_STORE = const(1200)
_T_STATUS = const(3)

# link byte of the heartbeat (docs/packets.md): WiFi 0 off, 1 connecting, 2 up, 3 failed;
# MQTT 0 off, 1 down, 2 connecting, 3 up
_W_CONNECTING = const(1)
_W_UP = const(2)
_W_FAILED = const(3)


def _el(now, t):
    return (now - t) & _MASK


class MqttUplink:
    def __init__(self, cfg, queue_root="/q", wlan=None, queue=None):
        did = cfg["device_id"]
        self.cfg = cfg
        self.q = queue or Queue(queue_root)
        self.wlan = wlan or network.WLAN(network.STA_IF)
        self.t_up = "roadnode/%d/up" % did
        self.t_ack = "roadnode/%d/ack" % did
        self.t_status = "roadnode/%d/status" % did
        self.c = mqtt.MQTTClient("roadnode-%d" % did, cfg["mqtt_host"], cfg["mqtt_port"],
                                 cfg["mqtt_user"] or None, cfg["mqtt_password"] or None if cfg["mqtt_user"] else None,
                                 keepalive_s=cfg["mqtt_keepalive_s"], will_topic=self.t_status,
                                 will_msg=b"offline", will_retain=True, clean=False, rx_size=_RX,
                                 tx_size=_TX, store_size=_STORE, max_inflight=_WINDOW + 1)
        self.c.on_message = self._on_message
        self.c.subscribe(self.t_ack, 1)
        self.buf = bytearray(_BATCH)
        self._bmv = memoryview(self.buf)
        self._status = bytearray(64)  # the latest heartbeat, published retained when possible
        self._status_n = 0
        self._next = self.q.base  # next seq to publish
        self._ends = [0] * _WINDOW  # last seq of each batch in flight, oldest first
        self._infl = 0  # batches in flight
        self._sent_ms = 0  # when the oldest batch in flight went out
        self._commit_ms = 0
        self._wifi = 0
        self._wifi_ms = 0
        self._ack_ms = -1  # when the collector last acknowledged (-1: never since boot)
        self._connects = 0
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
        t = pkt[0] & 0x0F if n else 0
        if t != _T_STATUS:
            self.q.commit()
            self._commit_ms = self._now
        elif n:
            self._status[:n] = pkt[:n]
            self._status_n = n
            self._publish_status()
        return True

    def _publish_status(self):
        """The latest heartbeat, retained: who looks at the node sees it at once (QoS 0: a lost
        one is replaced by the next; the queued copy is the record)."""
        if self._status_n and self.c.state == mqtt.UP:
            self.c.publish(self.t_status, memoryview(self._status)[: self._status_n], 0, True)

    def flush(self):
        """End of a drive: what the RAM batch holds goes to flash now."""
        self.q.commit()
        self._commit_ms = self._now

    # ---- the pass ------------------------------------------------------------------------------
    def poll(self, now):
        self._now = now
        q = self.q
        if _el(now, self._commit_ms) >= _COMMIT_MS:
            self._commit_ms = now
            if q.depth:
                q.commit()
        if not self._wifi_ok(now):
            return
        c = self.c
        was_up = c.state == mqtt.UP
        c.poll(now)
        if c.state != mqtt.UP:
            return
        if not was_up or c.connects != self._connects:  # a new session: resend from the oldest held
            self._connects = c.connects
            self._rewind(now)
            self._publish_status()
        if self._infl and _el(now, self._sent_ms) >= _ACK_WAIT_MS:
            self._rewind(now)  # the collector did not answer: the batches may be lost, send them again
        if self._infl < _WINDOW:
            self._send_batch(now)

    def _rewind(self, now):
        self._next = self.q.base
        self._infl = 0
        self._sent_ms = now

    def _send_batch(self, now):
        q = self.q
        first, count, nb = q.read(self._next, self._bmv[batch.HDR :])
        if not count:
            return
        batch.put_header(self.buf, q.epoch, q.base, first, count)
        if self.c.publish(self.t_up, self._bmv[: batch.HDR + nb], 1, False) < 0:
            return  # no room in the client's store: the same batch next pass
        if not self._infl:
            self._sent_ms = now
        self._ends[self._infl] = first + count - 1
        self._infl += 1
        self._next = (first + count) & _MASK
        self.sent += 1

    def _on_message(self, topic, payload):
        a = batch.decode_ack(payload)
        if a is None or a[0] != self.q.epoch:
            return  # not ours (an old epoch: a queue that was wiped)
        upto = a[1]
        q = self.q
        if upto >= q.next_seq:
            return  # acknowledges what this queue never sent: ignore rather than lose data
        q.ack(upto)
        self.acks += 1
        self._ack_ms = self._now
        self._sent_ms = self._now
        e = self._ends
        k = 0
        while k < self._infl and e[k] <= upto:  # the batches this acknowledgement covers
            k += 1
        if k:
            for i in range(self._infl - k):
                e[i] = e[i + k]
            self._infl -= k
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

    def _wifi_ok(self, now):
        w = self.wlan
        if w.isconnected():
            if self._wifi != _W_UP:
                self._wifi = _W_UP
                try:
                    self.c.set_dns(w.ifconfig()[3])  # host names resolve through the network's DNS
                except (OSError, IndexError):
                    pass
                self.c.wake()  # a new network: try the broker at once, not after a backoff
            return True
        if self._wifi == _W_UP:  # the association was lost: the client finds out by itself
            self._wifi = _W_CONNECTING
            self._wifi_ms = now
        st = w.status()
        if st in (network.STAT_WRONG_PASSWORD, network.STAT_NO_AP_FOUND) or st == getattr(network, "STAT_CONNECT_FAIL", -99):
            self._wifi = _W_FAILED
        if _el(now, self._wifi_ms) >= _WIFI_RETRY_MS:
            try:
                w.disconnect()
            except OSError:
                pass
            self._start_wifi(now)
        return False

    # ---- the heartbeat's view ------------------------------------------------------------------
    def stats(self):
        q = self.q
        c = self.c
        m = 3 if c.state == mqtt.UP else (2 if c.state != mqtt.DOWN else 1)
        if self._ack_ms < 0:
            ack = 0xFFFF  # none since boot
        else:
            ack = _el(self._now, self._ack_ms) // 1000
            if ack > 0xFFFE:
                ack = 0xFFFE
        return (q.depth, q.dropped, self._wifi | (m << 2), c.reconnects, ack, q.torn)
