# The SHA-256 of a file on the board, read in 1 KB pieces (the probe and the commit use it).
import binascii
import hashlib


def _s(p):
    h = hashlib.sha256()
    with open(p, 'rb') as f:
        while True:
            b = f.read(1024)
            if not b:
                break
            h.update(b)
    return binascii.hexlify(h.digest()).decode()
