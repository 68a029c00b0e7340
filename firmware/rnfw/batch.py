"""The MQTT uplink's batch: several queued packets in one message (docs/uplink.md). Hardware-free:
the node writes the header, the collector reads whole batches with the same module.

    u8  format (1)
    u32 epoch   the node's queue id (new when a queue is made on an empty filesystem)
    u32 base    the oldest seq the node still holds: everything below was acknowledged or dropped
    u32 first   seq of the first packet; the packets' seqs are consecutive
    u8  count
    count x (u8 length, packet)   each a roadnode packet with its own CRC (docs/packets.md)

Acknowledgement (collector -> node): u32 epoch, u32 upto — every seq <= upto of that epoch is in
the collector's database. All little-endian; seqs and epochs below 2^30 (ESP32 small ints).
"""

import struct

from micropython import const

FORMAT = const(1)
HDR = const(14)
ACK_LEN = const(8)


def put_header(buf, epoch, base, first, count):
    struct.pack_into("<BIIIB", buf, 0, FORMAT, epoch, base, first, count)


def encode_ack(epoch, upto):
    return struct.pack("<II", epoch, upto)


def decode_ack(data):
    """(epoch, upto), or None for a message that is not an acknowledgement."""
    if len(data) != ACK_LEN:
        return None
    return struct.unpack("<II", data)


class BatchError(ValueError):
    pass


def decode(data):
    """(epoch, base, first, [packet bytes, ...]); BatchError (only) for anything malformed."""
    b = bytes(data)
    if len(b) < HDR:
        raise BatchError("batch of %d bytes: shorter than its %d-byte header" % (len(b), HDR))
    fmt, epoch, base, first, count = struct.unpack_from("<BIIIB", b, 0)
    if fmt != FORMAT:
        raise BatchError("batch format %d unknown (this reader knows %d)" % (fmt, FORMAT))
    if base > first:
        raise BatchError("batch base %d is after its first seq %d" % (base, first))
    out = []
    o = HDR
    for i in range(count):
        if o >= len(b):
            raise BatchError("batch says %d packets, holds %d" % (count, i))
        n = b[o]
        if o + 1 + n > len(b):
            raise BatchError("packet %d of the batch is cut short" % i)
        out.append(b[o + 1 : o + 1 + n])
        o += 1 + n
    if o != len(b):
        raise BatchError("%d bytes after the batch's last packet" % (len(b) - o))
    return epoch, base, first, out
