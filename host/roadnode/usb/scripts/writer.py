# The board side of the transfer. This first block prepares the target slot (folders made, stale
# files removed, files the active slot already holds copied on the board) and defines _a, which
# appends a base64 piece to the pack file (re-arming the watchdog, which keeps running at the
# REPL), and _unpack, which writes the pack's files. Only the paths the host announced may be
# written, so a pack garbled on the line can never touch the active slot or anything else.
# Data: _A = {'wdt': ms, 'wbits': deflate window bits, 'pack': pack file, 'dirs': [folders],
#             'rm': [stale files], 'cp': [[from, to]]}; the last block gives _unpack the paths the
# pack may write (the data goes once it is used: the heap is tight when the pieces arrive)
import binascii
import machine
import os
import struct

_w = machine.WDT(timeout=_A['wdt'])
_z = _A['wbits']


def _a(p, d):
    _w.feed()
    with open(p, 'ab') as f:
        f.write(binascii.a2b_base64(d))


def _unpack(p, z, W):
    f = open(p, 'rb')
    s = f
    if z:
        import deflate
        s = deflate.DeflateIO(f, deflate.ZLIB, _z)
    b = bytearray(512)
    while True:
        _w.feed()
        h = s.read(2)
        if not h:
            break
        path = s.read(struct.unpack('<H', h)[0]).decode()
        if path not in W:
            raise OSError('pack garbled: unexpected path')
        n = struct.unpack('<I', s.read(4))[0]
        with open(path, 'wb') as o:
            while n:
                k = s.readinto(memoryview(b)[:min(n, 512)])
                if not k:
                    raise OSError('pack cut short')
                o.write(memoryview(b)[:k])
                n -= k
    f.close()
    os.remove(p)


for d in _A['dirs']:
    try:
        os.mkdir(d)
    except OSError:
        pass
for p in _A['rm']:
    os.remove(p)
for p in _A['cp']:
    with open(p[0], 'rb') as a, open(p[1], 'wb') as o:
        while True:
            _w.feed()
            d = a.read(1024)
            if not d:
                break
            o.write(d)
try:
    os.remove(_A['pack'])
except OSError:
    pass
del _A
