"""Issue 15's attacks on a running collector (`roadnode collect` in a subprocess) through a real
broker: forged tags, a valid message replayed, device A's message replayed as device B, a counter
rolled back after a node's power cut, truncated and oversized messages, a revoked key, and a flood
of 10,000 messages from one device while three honest nodes report. Every attack is refused and
counted (per device, as `fleet status` shows), every honest packet is stored once, the collector
stays up; the figures are printed."""

from __future__ import annotations

import os
import time

import paho.mqtt.client as mqtt
import pytest

from fleet_helpers import Collect, Node, batch, fleet, seg, wait
from roadnode.fleet import keys as K
from roadnode.fleet.broker import Broker
from roadnode.fleet.store import Store

HONEST = (1, 2, 3)
REVOKED = 4
FLOOD = 9
FLOOD_N = 10_000


class SealedNode(Node):
    """A node that seals its batches as rnfw.auth does (the firmware's own sealing is checked
    against keys.seal in test_auth.py), its counter in RAM."""

    def __init__(self, broker, dev, key, counter=0):
        super().__init__(broker, dev)
        self.key, self.ctr, self.sent = key, counter, []

    def message(self, epoch, first, pkts, counter=None):
        b = bytearray(batch(epoch, 0, first, pkts))
        b[0] = K.SEALED_FORMAT
        c = self.ctr if counter is None else counter
        if counter is None:
            self.ctr += 1
        return K.seal(self.key, bytes(b), c)

    def report(self, epoch, first, n):
        """n segments from seq `first`, sealed; waits for the acknowledgement (sent again with a new
        counter when none comes, as the node does)."""
        pk = [seg(self.dev, first + i, first + i) for i in range(n)]
        for _ in range(5):
            m = self.message(epoch, first, pk)
            self.sent.append(m)
            self.up(m)
            try:
                self.wait_acked(epoch, first + n - 1, timeout=15)
                return
            except AssertionError:
                continue
        raise AssertionError(f"device {self.dev}: batch {first} never acknowledged")


def _rejects(st, dev, reason):
    return sum(r["count"] for r in st["rejects"] if r["source"] == str(dev) and r["reason"] == reason)


@pytest.mark.slow
def test_attacks_through_the_broker_are_refused_and_counted(tmp_path):
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    keys = {d: K.generate() for d in (*HONEST, REVOKED, FLOOD)}
    s = Store(db)
    for d, k in keys.items():
        s.add_key(d, k)
    s.close()
    with Broker() as b:
        col = Collect(b.url, db, "--rate-limit", "50", "--burst", "100")
        nodes = {d: SealedNode(b, d, keys[d]).start() for d in (*HONEST, REVOKED)}
        atk = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="attacker")
        atk.max_inflight_messages_set(1000)
        atk.connect(b.host, b.port)
        atk.loop_start()
        try:
            n1, n2 = nodes[1], nodes[2]
            for d in (*HONEST, REVOKED):  # everyone reports
                nodes[d].report(7, 0, 3)
            for i in range(1, 6):
                n1.report(7, 3 * i, 3)
            old = n1.sent[0]
            # forged: a segment's byte changed under the tag; a tag made up
            f = bytearray(n1.message(7, 18, [seg(1, 18, 18)]))
            f[20] ^= 0x40
            atk.publish("roadnode/1/up", bytes(f), qos=1).wait_for_publish(10)
            g = n1.message(7, 18, [seg(1, 18, 18, iri=99.0)])
            atk.publish("roadnode/1/up", g[:-8] + os.urandom(8), qos=1).wait_for_publish(10)
            # a valid message replayed (older than the last few), and device 1's replayed as device 2
            atk.publish("roadnode/1/up", old, qos=1).wait_for_publish(10)
            atk.publish("roadnode/2/up", n1.sent[-1], qos=1).wait_for_publish(10)
            # a power cut on device 2 that lost its counter: new data under an old counter
            atk.publish("roadnode/2/up", n2.message(7, 3, [seg(2, 3, 3)], counter=0), qos=1).wait_for_publish(10)
            # truncated (cut into the tag; shorter than a seal) and oversized
            atk.publish("roadnode/3/up", nodes[3].message(7, 3, [seg(3, 3, 3)])[:-3], qos=1).wait_for_publish(10)
            atk.publish("roadnode/3/up", b"\x02\x01", qos=1).wait_for_publish(10)
            atk.publish("roadnode/3/up", b"\x02" + os.urandom(70_000), qos=1).wait_for_publish(10)
            col.wait_stats(lambda st: _rejects(st, 1, "bad_tag") == 2 and _rejects(st, 1, "replay") == 1
                           and _rejects(st, 2, "bad_tag") == 1 and _rejects(st, 2, "replay") == 1
                           and _rejects(st, 3, "bad_tag") == 1 and _rejects(st, 3, "truncated") == 1
                           and _rejects(st, 3, "oversized") == 1, what="the attacks counted")
            # a revoked key: refused from the next message on
            assert fleet("keys", "revoke", "--db", db, "--device", str(REVOKED)) == \
                [{"device_id": REVOKED, "state": "revoked"}]
            nodes[REVOKED].up(nodes[REVOKED].message(7, 3, [seg(REVOKED, 3, 3)]))
            col.wait_stats(lambda st: _rejects(st, REVOKED, "revoked") == 1, what="the revoked key refused")

            # the flood: 10,000 forged messages on device 9's topic while the honest nodes report
            t0 = time.monotonic()
            fk = SealedNode(b, FLOOD, K.generate())  # (not its key: the attacker does not have it)
            infos = [atk.publish(f"roadnode/{FLOOD}/up", fk.message(1, i, [seg(FLOOD, i, i)]), qos=1)
                     for i in range(FLOOD_N)]
            for k in range(6):
                for d in HONEST:
                    nodes[d].report(7, (18 if d == 1 else 3) + 3 * k, 3)
            try:
                col.wait_stats(lambda st: _rejects(st, FLOOD, "rate_limited") + _rejects(st, FLOOD, "bad_tag")
                               == FLOOD_N, timeout=120, what="the flood counted")
            except AssertionError:
                print([r for r in col.stats()["rejects"] if r["source"] == str(FLOOD)],
                      sum(not i.is_published() for i in infos), set(i.rc for i in infos))
                raise
            t_flood = time.monotonic() - t0
            assert col.proc.poll() is None  # alive
        finally:
            for n in nodes.values():
                n.stop()
            atk.loop_stop()
            atk.disconnect()
            final = col.stop()
        assert col.proc.returncode == 0, "".join(col.err)[-2000:]

    s = Store(db)
    try:
        # every honest packet stored, once; nothing of the attacks
        want = {1: 3 * 6 + 3 * 6, 2: 3 + 18, 3: 3 + 18, REVOKED: 3}
        for d, n in want.items():
            seqs = [r[2] for r in s.packets(d)]
            assert len(seqs) == len(set(seqs)) == n, (d, len(seqs), n)
        assert s.packets(FLOOD) == []
        assert all(r[9] != 99.0 for r in s.query("SELECT * FROM segments WHERE device_id = 1"))
        rows = {r["device_id"]: r for r in fleet("status", "--db", db)}
        assert rows[1]["auth_failures"] == 2 and rows[1]["replays"] == 1
        assert rows[2]["auth_failures"] == 1 and rows[2]["replays"] == 1
        assert rows[REVOKED]["auth_failures"] == 1
        keys_ = {r["device_id"]: r for r in fleet("keys", "list", "--db", db)}
        assert keys_[REVOKED]["state"] == "revoked" and keys_[1]["last_counter"] >= 11
        assert "key" not in keys_[1] and "key_hex" not in keys_[1]
    finally:
        s.close()
    limited = _rejects(final, FLOOD, "rate_limited")
    print(f"\nflood: {FLOOD_N} messages on device {FLOOD}: {limited} rate-limited, "
          f"{_rejects(final, FLOOD, 'bad_tag')} refused by the tag, 0 stored; the honest nodes' 3 x 18 "
          f"segments meanwhile stored once each ({t_flood:.1f} s); collector: {final['stored']} stored, "
          f"{final['auth_failures']} auth failures, {final['replays']} replays, {final['rate_limited']} "
          f"rate-limited, {final['rejected']} rejected in all")
    assert limited > FLOOD_N // 2  # the bucket took the flood's bulk before the writer
