"""What firmware a board holds: one digest over every firmware file's SHA-256, computed on the board
(for `roadnode flash`: by the running node on request, or from the REPL after staging) and by the
host from the files it would install, with this same function. Equal digests = the same files.

Not imported by the node's main loop: loaded for a request and unloaded after (heap).
"""

import binascii
import hashlib
import os

ROOT_FILES = ("main.py", "boot.py", "board.json")  # the loader and the board definition


def digest(pairs):
    """16 hex digits over sorted (path, sha256 hex) pairs."""
    h = hashlib.sha256()
    for p, x in sorted(pairs):
        h.update(p.encode())
        h.update(b"\x00")
        h.update(x.encode())
        h.update(b"\n")
    return binascii.hexlify(h.digest()).decode()[:16]


def file_sha(path, buf):
    """SHA-256 of the file at ``path``, read through ``buf`` (no allocation per block)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(memoryview(buf)[:n])
    return binascii.hexlify(h.digest()).decode()


def files(d, pre="", out=None):
    """Paths of the files under d, relative to it."""
    out = [] if out is None else out
    try:
        it = list(os.ilistdir(d))
    except OSError:
        return out
    for e in it:
        if e[1] == 0x4000:
            files(d + "/" + e[0], pre + e[0] + "/", out)
        else:
            out.append(pre + e[0])
    return out


def installed(slot, root=True):
    """(digest, file count) of slot /fw/<slot> (and the root files)."""
    buf = bytearray(512)
    base = "/fw/" + slot + "/"
    pairs = [(p, file_sha(base + p, buf)) for p in files(base[:-1])]
    n = len(pairs)
    for r in ROOT_FILES if root else ():
        try:
            pairs.append(("/" + r, file_sha("/" + r, buf)))
        except OSError:
            pass
    return digest(pairs), n


def active_slot():
    """The firmware slot /fw/active names ("a" or "b"), or None."""
    try:
        with open("/fw/active") as f:
            s = f.read().strip()
        return s if s in ("a", "b") else None
    except OSError:
        return None
