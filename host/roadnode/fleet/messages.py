"""What arrives on the nodes' topics, decoded and sorted before anything touches the database.

A message is an `Up` (a batch of queued packets from ``roadnode/<id>/up``), a `Status` (the live
heartbeat or the last will ``offline`` from ``roadnode/<id>/status``) or a `Reject` (malformed,
truncated, wrong version, unknown device or topic, or refused by the seal's check,
roadnode.fleet.keys): rejects are counted, never stored.

Inside a well-formed batch a packet can still be bad (the node's flash gave back something broken):
such a packet is *quarantined*, kept apart with its reason so the acknowledgement can step over it
(sending it again would not mend it), and never reaches the data tables. A packet of a newer format
version is *held*: neither stored nor acknowledged, so the node keeps it until a collector that can
read it takes it. A batch whose packets carry another device id than its topic is refused whole.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from roadnode.mpy.fwimport import fw

DEVICE_MAX = (1 << 24) - 1  # device ids are u24 (docs/packets.md)
STORED_TYPES = ("segment", "event", "status")


@dataclass
class Up:
    """One received /up batch, decoded: its packets stored, quarantined or held."""

    device_id: int
    epoch: int
    base: int
    first: int
    received_at: float
    rows: list = field(default_factory=list)  # (seq, decoded dict, packet bytes)
    quarantined: list = field(default_factory=list)  # (seq, reason, packet bytes)
    held: list = field(default_factory=list)  # seqs of packets this collector cannot read (newer version)

    @property
    def count(self) -> int:
        """Packets in the batch, whatever became of them."""
        return len(self.rows) + len(self.quarantined) + len(self.held)


@dataclass
class Status:
    """One received /status message (a heartbeat, or the broker's last will)."""

    device_id: int
    received_at: float
    data: bytes | None  # None: the last will "offline"
    decoded: dict | None = None
    retained: bool = False  # sent by the broker on subscribing: the latest it holds, of unknown age


@dataclass
class Reject:
    """A message refused before storing, and why (counted per source, topic and reason)."""

    source: str  # the device id as the topic names it (or the whole topic when it names none)
    topic: str  # "up", "status" or "other"
    reason: str  # malformed | truncated | wrong_version | unknown_device | unknown_topic | unexpected_type
    #              | unknown_key | revoked | bad_tag | unsealed | replay | rate_limited (docs/security.md)
    detail: str = ""


def _packet_reason(msg: str) -> str:
    if "newer than this decoder" in msg:
        return "wrong_version"
    if msg.startswith("CRC"):  # (its message says "corrupt or truncated": no telling, so malformed)
        return "malformed"
    return "truncated" if "truncated" in msg else "malformed"


@functools.cache
def host_codec():
    """The firmware's packet_decode (its source file), a private instance for the collector whose
    CRC is the C one of the standard library: binascii.crc_hqx from 0xFFFF is CRC-16/CCITT-FALSE,
    the firmware's (checked here). The pure-Python CRC was two thirds of the collector's work per
    packet; the shared module, which the codec's own tests check, is left as it is."""
    import binascii
    import importlib.util

    shared = fw("packet_decode")
    spec = importlib.util.spec_from_file_location("roadnode.fleet._packet_decode", shared.__file__)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    slow = fw("crc").crc16

    def crc16(data, n=-1, crc=0xFFFF):
        """The firmware's CRC-16 (CCITT from 0xFFFF) computed in C by binascii; used only if it matches
        crc.crc16 below."""
        return binascii.crc_hqx(memoryview(data)[: len(data) if n < 0 else n], crc)

    for sample in (b"123456789", bytes(range(256)), b"\x00", b""):
        if crc16(sample) != slow(sample) or crc16(sample, len(sample) // 2) != slow(sample, len(sample) // 2):
            return shared
    m.crc16 = crc16
    return m


class Parser:
    """Turns (topic, payload) into Up / Status / Reject, with the firmware's own codec."""

    def __init__(self):
        self.PD = host_codec()
        self.FORMAT = fw("batch").FORMAT

    def parse(self, topic: str, payload: bytes, received_at: float, retained: bool = False, verifier=None):
        """One message -> (Up | Status | None, [Reject, ...]); the rejects count packets or messages.
        ``verifier`` (roadnode.fleet.keys.Verifier): the seal is checked and taken off first."""
        parts = topic.split("/")
        if len(parts) != 3 or parts[0] != "roadnode" or parts[2] not in ("up", "status"):
            return None, [Reject(topic, "other", "unknown_topic")]
        kind = parts[2]
        if not (parts[1].isdigit() and parts[1].isascii() and int(parts[1]) <= DEVICE_MAX) or \
                (len(parts[1]) > 1 and parts[1][0] == "0"):
            return None, [Reject(parts[1][:40], kind, "unknown_device", "not a device id")]
        dev = int(parts[1])
        if verifier is not None:
            payload, rej = verifier.open(dev, kind, bytes(payload), retained)
            if rej is not None:
                return None, [rej]
        if kind == "status":
            return self._status(dev, bytes(payload), received_at, retained)
        return self._up(dev, bytes(payload), received_at)

    def _status(self, dev: int, payload: bytes, t: float, retained: bool):
        if not payload:  # a retained status cleared (an empty retained message): nothing to keep
            return None, []
        if payload == b"offline":
            return Status(dev, t, None, None, retained), []
        try:
            d = self.PD.decode(payload)
        except self.PD.PacketError as e:
            try:  # a sealed heartbeat whose seal was not checked (an open fleet, a node not registered)
                if len(payload) <= 12:
                    raise
                payload = payload[:-12]
                d = self.PD.decode(payload)
            except self.PD.PacketError:
                return None, [Reject(str(dev), "status", _packet_reason(str(e)), str(e))]
        if d["type"] != "status":
            return None, [Reject(str(dev), "status", "unexpected_type", d["type"])]
        if d["device_id"] != dev:
            return None, [Reject(str(dev), "status", "unknown_device", f"heartbeat of device {d['device_id']}")]
        return Status(dev, t, payload, d, retained), []

    def _up(self, dev: int, payload: bytes, t: float):
        src = str(dev)
        if payload and payload[0] != self.FORMAT:
            return None, [Reject(src, "up", "wrong_version", f"batch format {payload[0]}")]
        try:
            epoch, base, first, pkts = self.PD.decode_batch(payload)
        except self.PD.BatchError as e:
            msg = str(e)
            cut = any(w in msg for w in ("cut short", "shorter than", "holds"))
            return None, [Reject(src, "up", "truncated" if cut else "malformed", msg)]
        up = Up(dev, epoch, base, first, t)
        rejects = []
        for i, p in enumerate(pkts):
            seq = first + i
            try:
                d = self.PD.decode(p)
            except self.PD.PacketError as e:
                reason = _packet_reason(str(e))
                if reason == "wrong_version":
                    up.held.append(seq)
                else:
                    up.quarantined.append((seq, reason, bytes(p)))
                rejects.append(Reject(src, "up", reason, str(e)))
                continue
            if d["device_id"] != dev:  # another node's packets under this id: refused whole
                return None, [Reject(src, "up", "unknown_device", f"packet of device {d['device_id']}")]
            if d["type"] not in STORED_TYPES:
                up.quarantined.append((seq, "unexpected_type", bytes(p)))
                rejects.append(Reject(src, "up", "unexpected_type", d["type"]))
                continue
            up.rows.append((seq, d, bytes(p)))
        return up, rejects
