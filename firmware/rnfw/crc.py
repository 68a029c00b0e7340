"""CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor).

Chosen over CRC-32 for the packets: they are 20-45 bytes and go over LoRaWAN where every byte
costs airtime; 16 bits detect all burst errors up to 16 bits and all odd-bit errors in packets
this short. (LoRaWAN adds its own MIC; the serial console frames carry the same CRC.)
"""


def crc16(data, n=-1, crc=0xFFFF):
    """CRC-16/CCITT-FALSE of the first ``n`` bytes of ``data`` (all by default), continuing ``crc``."""
    if n < 0:
        n = len(data)
    for i in range(n):
        crc ^= data[i] << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc
