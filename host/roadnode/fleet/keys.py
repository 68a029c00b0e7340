"""Per-device keys and the collector's check of sealed messages (docs/security.md).

A node seals each message (rnfw.auth): ``message + u32 counter + tag``, the tag being the first
8 bytes of HMAC-SHA256(device key, message + counter). The `Verifier` opens a sealed message
before anything is parsed, stored or acknowledged: the device must have an active key, the tag
must match, and the counter must be above the last one accepted on that topic (a message identical
to one of the last few accepted — a QoS 1 retransmission, a redelivery after a collector crash —
passes, and the store's (device, epoch, seq) key keeps it from counting twice). Anything else is a
`Reject` with reason ``unknown_key``, ``revoked``, ``bad_tag``, ``unsealed`` (auth failures),
``replay``, ``truncated`` (shorter than a seal) or ``oversized``.

`RateLimit` is a token bucket per device: a flood on one device's topics is dropped (and counted
``rate_limited``) before it reaches the writer, so the other devices' messages keep flowing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict

from roadnode.fleet.messages import Reject

KEY_LEN = 16
TAG_LEN = 8
TRAILER = 4 + TAG_LEN
SEALED_FORMAT = 2  # format byte of a sealed /up batch (rnfw.batch.SEALED); 1: the old unsealed one
AUTH_FAILURES = ("unknown_key", "revoked", "bad_tag", "unsealed")
RECENT = 4  # accepted messages remembered per device and topic (identical retransmissions pass):
# the node's window (2) and a heartbeat; an older message sent again is a replay
MAX_MESSAGE = 4096  # bytes: a node's message is 512 at most; anything longer is refused unread


def generate() -> bytes:
    """A new random device key."""
    return secrets.token_bytes(KEY_LEN)


def tag(key: bytes, data: bytes) -> bytes:
    """The truncated HMAC-SHA256 that authenticates ``data`` under ``key``."""
    return hmac.new(key, data, hashlib.sha256).digest()[:TAG_LEN]


def seal(key: bytes, message: bytes, counter: int) -> bytes:
    """What a node sends (rnfw.auth.seal): for tests, tools and the bench."""
    m = bytes(message) + counter.to_bytes(4, "little")
    return m + tag(key, m)


def mqtt_password(key: bytes) -> str:
    """The device's MQTT password, derived from its key (the node derives the same: rnfw.mqtt_uplink)."""
    return hmac.new(key, b"mqtt-password", hashlib.sha256).digest()[:16].hex()


def parse_key_hex(s: str) -> bytes:
    """A key from its hex form; ValueError saying what a key looks like otherwise."""
    try:
        k = bytes.fromhex(s.strip())
    except ValueError:
        raise ValueError("a key is 32 hexadecimal digits") from None
    if len(k) != KEY_LEN:
        raise ValueError(f"a key is {KEY_LEN} bytes (32 hex digits), not {len(k)}")
    return k


class Verifier:
    """Opens sealed messages with the store's keys. ``required``: unsealed messages are refused
    (None: required as soon as the store holds any key — a fleet never keyed keeps working).
    Keys are read again from the store at most every ``refresh`` s, so a revocation takes effect on
    the next message after it."""

    def __init__(self, store, required: bool | None = None, refresh: float = 1.0):
        self.store = store
        self.required_opt = required
        self.refresh = refresh
        self._keys: dict[int, tuple[bytes, str, int]] = {}
        self._loaded = -1e18
        self._last: dict[tuple[int, str], int] = {}
        self._recent: dict[tuple[int, str], OrderedDict] = {}
        self.counters: dict[int, int] = {}  # accepted /up counters not yet persisted (written by the store)

    def reload(self) -> None:
        """Read the keys again now (the collector does, once per transaction: a key revoked is
        refused from the next message on)."""
        self._loaded = -1e18
        self._reload()

    def _reload(self) -> None:
        now = time.monotonic()
        if now - self._loaded < self.refresh:
            return
        keys = self.store.load_keys()
        for dev, (key, state, last) in keys.items():
            old = self._keys.get(dev)
            if old is not None and old[0] != key:  # re-keyed: the new key's counters start afresh
                for kind in ("up", "status"):
                    self._last.pop((dev, kind), None)
                    self._recent.pop((dev, kind), None)
            if last > self._last.get((dev, "up"), -1):
                self._last[(dev, "up")] = last
            # (one counter on the node for both topics: after a restart, a heartbeat older than the
            # last batch stored is a replay too)
            self._last.setdefault((dev, "status"), last)
        self._keys = keys
        self._loaded = now

    @property
    def required(self) -> bool:
        """Whether unsealed messages are refused (by default: once any key is known)."""
        return bool(self._keys) if self.required_opt is None else self.required_opt

    def open(self, dev: int, kind: str, payload: bytes, retained: bool = False):
        """(the message without its seal, None) or (None, Reject)."""
        self._reload()
        src = str(dev)
        if len(payload) > MAX_MESSAGE:
            return None, Reject(src, kind, "oversized", f"{len(payload)} bytes")
        # (a heartbeat of a device without a key, in an open fleet: taken as it is; the parser
        # finds a sealed one's packet by its CRC)
        sealed = (payload[:1] == bytes([SEALED_FORMAT])) if kind == "up" else \
            (payload not in (b"", b"offline") and (dev in self._keys or self.required))
        if not sealed:
            if self.required and not (kind == "status" and payload in (b"", b"offline")):
                return None, Reject(src, kind, "unsealed", "an unsealed message and keys are required")
            return payload, None
        k = self._keys.get(dev)
        if k is None:
            if not self.required and kind == "up" and len(payload) > TRAILER:
                # an open fleet (no keys required): a keyed node not registered yet is taken as an
                # unsealed one (its seal cannot be checked), as its unsealed messages would be
                return bytes([1]) + payload[1:-TRAILER], None
            return None, Reject(src, kind, "unknown_key", "no key for this device")
        key, state, _ = k
        if state != "active":
            return None, Reject(src, kind, "revoked", "the device's key is revoked")
        if len(payload) < TRAILER + 1:
            return None, Reject(src, kind, "truncated", f"{len(payload)} bytes: shorter than a seal")
        m, t = payload[:-TAG_LEN], payload[-TAG_LEN:]
        if not hmac.compare_digest(tag(key, m), t):
            return None, Reject(src, kind, "bad_tag", "the tag does not match")
        c = int.from_bytes(m[-4:], "little")
        body = m[:-4]
        if kind == "up":
            body = bytes([1]) + body[1:]  # the batch inside: the unsealed layout (format 1)
        if retained:  # the broker's stored copy, of unknown age: authentic, but no counter to judge
            return body, None
        slot = (dev, kind)
        recent = self._recent.setdefault(slot, OrderedDict())
        d = hashlib.sha256(payload).digest()
        if c <= self._last.get(slot, -1):
            if recent.get(c) == d:
                return body, None  # an identical retransmission
            return None, Reject(src, kind, "replay", f"counter {c} not above {self._last[slot]}")
        self._last[slot] = c
        recent[c] = d
        while len(recent) > RECENT:
            recent.popitem(last=False)
        if kind == "up":
            self.counters[dev] = c
        return body, None


class RateLimit:
    """Token bucket per device: ``rate`` messages per second, bursts of ``burst``."""

    def __init__(self, rate: float = 200.0, burst: float = 1000.0):
        self.rate, self.burst = rate, burst
        self._b: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def allow(self, source: str, now: float | None = None) -> bool:
        """Take a token from ``source``'s bucket; False when it has none left."""
        now = time.monotonic() if now is None else now
        with self._lock:
            b = self._b.get(source)
            if b is None:
                b = self._b[source] = [self.burst, now]
            tokens = min(self.burst, b[0] + (now - b[1]) * self.rate)
            b[1] = now
            if tokens < 1.0:
                b[0] = tokens
                return False
            b[0] = tokens - 1.0
            return True
