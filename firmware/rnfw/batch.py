"""The MQTT uplink's batch: several queued packets in one message (docs/uplink.md). The node writes
the header and reads acknowledgements with this module; the collector reads batches with
rnfw.packet_decode.decode_batch (off the node's heap), from the same constants.

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


def decode_ack(data):
    """(epoch, upto), or None for a message that is not an acknowledgement."""
    if len(data) != ACK_LEN:
        return None
    return struct.unpack("<II", data)
