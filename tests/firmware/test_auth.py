"""Issue 15: the node's HMAC (rnfw.auth, on hashlib.sha256) against CPython's hmac on RFC 4231's
vectors, on both runtimes; its counter persisted a stride ahead (a power cut never reuses a
counter); the collector's Verifier on sealed messages (bad tag, replay, identical retransmission,
unknown and revoked keys, another device's message); the key store."""

from __future__ import annotations

import hashlib
import hmac
import tempfile

import pytest

from roadnode.fleet import keys as K
from roadnode.fleet.messages import Parser, Up
from roadnode.fleet.store import Store
from roadnode.mpy import runtime
from roadnode.mpy.fwimport import fw
from fleet_helpers import batch, seg, status

A = fw("auth")

# RFC 4231 HMAC-SHA256 test cases 1-4, 6, 7 (key, data)
RFC4231 = [
    (b"\x0b" * 20, b"Hi There"),
    (b"Jefe", b"what do ya want for nothing?"),
    (b"\xaa" * 20, b"\xdd" * 50),
    (bytes(range(1, 26)), b"\xcd" * 50),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First"),
    (b"\xaa" * 131, b"This is a test using a larger than block-size key and a larger than block-size data. "
                    b"The key needs to be hashed before being used by the HMAC algorithm."),
]
KNOWN_1 = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"  # RFC 4231 case 1


def test_the_firmware_hmac_is_cpythons_on_rfc4231_vectors_on_both_runtimes():
    want = [hmac.new(k, m, hashlib.sha256).hexdigest() for k, m in RFC4231]
    assert want[0] == KNOWN_1
    assert [A.mac(k, m).hex() for k, m in RFC4231] == want  # the firmware module on CPython
    code = ("from rnfw import auth\nimport binascii\n"
            f"for k, m in {RFC4231!r}:\n    print(binascii.hexlify(auth.mac(k, m)).decode())")
    assert runtime.run_code(code).stdout.decode().split() == want  # on MicroPython


def _node(d, n, cut_after=None):
    """MicroPython: load the key in d, seal n messages; print the counters used."""
    code = (f"from rnfw import auth\nk = auth.load({d!r})\nprint(k is not None)\n"
            f"b = bytearray(40)\nfor i in range({n}):\n    n = auth.seal(b, 3)\n    print(int.from_bytes(b[3:7], 'little'))\n"
            f"print(open({d!r} + '/ctr').read())")
    return runtime.run_code(code).stdout.decode().split()


def test_the_counter_only_grows_across_boots_without_a_write_per_message():
    with tempfile.TemporaryDirectory() as d:
        key = K.generate()
        open(d + "/key.bin", "wb").write(key)
        out = _node(d, 3)
        assert out[0] == "True" and [int(x) for x in out[1:4]] == [0, 1, 2] and out[4] == "1024"
        # a power cut (no clean shutdown): the next boot starts above anything sent before
        out = _node(d, 1030)
        used = [int(x) for x in out[1:-1]]
        assert used[0] == 1024 and used == list(range(1024, 1024 + 1030))
        assert int(out[-1]) == 1024 + 2048  # one more ceiling written when the counter reached it
        out = _node(d, 1)
        assert int(out[1]) == 1024 + 2048 > used[-1]
        # the seal is the collector's: the same bytes from keys.seal
        code = (f"from rnfw import auth\nauth.load({d!r})\nimport binascii\nb = bytearray(b'abc' + bytes(20))\n"
                "print(binascii.hexlify(b[:auth.seal(b, 3)]).decode())")
        s = bytes.fromhex(runtime.run_code(code).stdout.decode().strip())
        assert s == K.seal(key, b"abc", int.from_bytes(s[3:7], "little"))


def test_a_node_without_a_key_seals_nothing(tmp_path):
    out = runtime.run_code(f"from rnfw import auth\nprint(auth.load({str(tmp_path)!r}))").stdout.decode().split()
    assert out == ["None"]


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'f.db'}"
    else:
        url = request.getfixturevalue("pg_server").create_db(f"auth_{abs(hash(request.node.name)) % 10**9}")
    s = Store(url)
    yield s
    s.close()


def _up(dev, epoch, first, n=2):
    b = bytearray(batch(epoch, 0, first, [seg(dev, first + i, first + i) for i in range(n)]))
    b[0] = K.SEALED_FORMAT
    return bytes(b)


def test_the_verifier_refuses_forgeries_replays_and_unknown_or_revoked_keys(store):
    ka, kb = K.generate(), K.generate()
    store.add_key(1, ka)
    store.add_key(2, kb)
    v = K.Verifier(store, refresh=0)
    p = Parser()

    def parse(dev, payload, kind="up", retained=False):
        item, rej = p.parse(f"roadnode/{dev}/{kind}", payload, 0.0, retained, v)
        return item, [r.reason for r in rej]

    m0 = K.seal(ka, _up(1, 5, 0), 10)
    item, rej = parse(1, m0)
    assert isinstance(item, Up) and rej == [] and [s for s, _, _ in item.rows] == [0, 1]
    assert parse(1, m0)[1] == []  # an identical retransmission passes (the store dedupes it)
    assert parse(1, K.seal(ka, _up(1, 5, 2), 10))[1] == ["replay"]  # same counter, other bytes
    assert parse(1, K.seal(ka, _up(1, 5, 2), 9))[1] == ["replay"]  # rolled back
    forged = bytearray(K.seal(ka, _up(1, 5, 2), 11))
    forged[20] ^= 1
    assert parse(1, bytes(forged))[1] == ["bad_tag"]
    assert parse(2, m0)[1] == ["bad_tag"]  # A's message replayed as B
    assert parse(3, K.seal(K.generate(), _up(3, 5, 0), 1))[1] == ["unknown_key"]
    assert parse(1, b"\x02\x00")[1] == ["truncated"]
    assert parse(1, batch(5, 0, 0, [seg(1, 0, 0)]))[1] == ["unsealed"]  # keys are required now
    # heartbeats are sealed too; the will is the broker's
    hb = K.seal(ka, status(1), 11)
    item, rej = parse(1, hb, "status")
    assert rej == [] and item.decoded["type"] == "status"
    assert parse(1, hb, "status")[1] == []  # identical
    assert parse(1, K.seal(ka, status(1), 10), "status")[1] == ["replay"]
    assert parse(1, K.seal(ka, status(1), 3), "status", retained=True)[1] == []  # the broker's old copy
    assert parse(1, b"offline", "status")[0].data is None
    assert parse(1, status(1), "status")[1] == ["bad_tag"]  # an unsealed heartbeat of a keyed device
    store.revoke_key(1)
    assert parse(1, K.seal(ka, _up(1, 5, 2), 12))[1] == ["revoked"]
    assert v.counters == {1: 10}


def test_the_key_store_keeps_keys_and_counters(store):
    k = K.generate()
    store.add_key(7, k)
    with pytest.raises(Exception, match="already has a key"):
        store.add_key(7, K.generate())
    store.ingest([], [], {}, {7: 41})
    store.ingest([], [], {}, {7: 12})  # never backwards
    assert store.load_keys() == {7: (k, "active", 41)}
    assert [(r["device_id"], r["state"], r["last_counter"]) for r in store.list_keys()] == [(7, "active", 41)]
    assert "key" not in store.list_keys()[0]
    k2 = K.generate()
    store.add_key(7, k2, replace=True)  # a re-key: the counters start afresh
    assert store.load_keys() == {7: (k2, "active", -1)}
    assert store.revoke_key(7) and store.load_keys()[7][1] == "revoked"
    assert not store.revoke_key(8)


def test_the_rate_limit_is_per_device():
    r = K.RateLimit(rate=10, burst=5)
    got = [r.allow("1", now=100.0) for _ in range(20)]
    assert got.count(True) == 5
    assert r.allow("2", now=100.0)  # another device is not starved
    # 10/s: two tokens back in 0.2 s
    assert [r.allow("1", now=100.2) for _ in range(3)] == [True, True, False]


def test_an_open_fleet_takes_a_keyed_node_not_registered_as_an_unsealed_one(store):
    """No key in the store and --auth not given: nothing is required; a node flashed with a key
    but not registered still reports (its seal cannot be checked). Once a key is registered, keys
    are required and the same message is refused."""
    v = K.Verifier(store, refresh=0)
    p = Parser()
    k = K.generate()
    item, rej = p.parse("roadnode/5/up", K.seal(k, _up(5, 1, 0), 0), 0.0, False, v)
    assert rej == [] and [s for s, _, _ in item.rows] == [0, 1]
    item, rej = p.parse("roadnode/5/status", K.seal(k, status(5), 1), 0.0, False, v)
    assert rej == [] and item.decoded["device_id"] == 5
    store.add_key(6, K.generate())
    assert [r.reason for r in p.parse("roadnode/5/up", K.seal(k, _up(5, 1, 0), 2), 0.0, False, v)[1]] == \
        ["unknown_key"]
    # --no-auth: unsealed messages pass even with keys in the store
    assert K.Verifier(store, required=False).open(5, "up", b"\x01" + bytes(13)) == (b"\x01" + bytes(13), None)
