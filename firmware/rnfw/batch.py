"""The MQTT uplink's batch: several queued packets in one message (docs/uplink.md). The collector
writes acknowledgements and reads batches (rnfw.packet_decode.decode_batch) with this module; the
node writes the same header and reads the acknowledgement in rnfw.mqtt_uplink itself (one module
less on its heap; tests/firmware/test_firmware_consts.py holds the two together, and the end-to-end tests
run the node's batches through the collector).

    u8  format (1)
    u32 epoch   the node's queue id (new when a queue is made on an empty filesystem)
    u32 base    the oldest seq the node still holds: everything below was acknowledged or dropped
    u32 first   seq of the first packet; the packets' seqs are consecutive
    u8  count
    count x (u8 length, packet)   each a roadnode packet with its own CRC (docs/packets.md)

Sealed (a node with a key, rnfw.auth; docs/security.md): format 2, the same layout, then
    u32 counter, 8 bytes tag = HMAC-SHA256(device key, everything before the tag)[:8]

Acknowledgement (collector -> node): u32 epoch, u32 upto — every seq <= upto of that epoch is in
the collector's database. All little-endian; seqs and epochs below 2^30 (ESP32 small ints).
"""

import struct

from micropython import const

FORMAT = const(1)
SEALED = const(2)  # a sealed batch: the same layout, format byte 2, then u32 counter + 8-byte tag (rnfw.auth)
HDR = const(14)
ACK_LEN = const(8)


def put_header(buf, epoch, base, first, count):
    """Write a batch's 14-byte header (format 1) at the start of ``buf``."""
    struct.pack_into("<BIIIB", buf, 0, FORMAT, epoch, base, first, count)


def decode_ack(data):
    """(epoch, upto), or None for a message that is not an acknowledgement."""
    if len(data) != ACK_LEN:
        return None
    return struct.unpack("<II", data)
