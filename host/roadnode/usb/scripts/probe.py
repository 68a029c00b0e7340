# Everything a flash plans with, in one round trip, printed as one JSON line: MicroPython and
# .mpy versions, the machine, the hashes of every file in both slots and at the root, the active
# slot, identity and config, which IMU answers where the board definitions expect one, free space.
# Data: _A = {'hx': hex digits of each hash, 'probes': [[i2c id, scl, sda, addr, reg, [ok ids], board]]}
# (sent after sha.py and clean.py: _s, _clean)
import gc
import json
import os
import sys

for _k in [k for k in sys.modules if k.startswith('rnfw')]:
    del sys.modules[_k]
gc.collect()


def _walk(d, out, pre):
    try:
        it = list(os.ilistdir(d))
    except OSError:
        return
    for e in it:
        if e[1] == 0x4000:
            _walk(d + '/' + e[0], out, pre + e[0] + '/')
        else:
            out[pre + e[0]] = _s(d + '/' + e[0])[:_A['hx']]


r = {'mpy': sys.implementation._mpy, 'ver': list(sys.implementation.version[:3]), 'machine': os.uname().machine}
try:
    import deflate
    r['deflate'] = 1
except ImportError:
    r['deflate'] = 0
r['slots'] = {}
for s in ('a', 'b'):
    r['slots'][s] = {}
    _walk('/fw/' + s, r['slots'][s], '')
try:
    r['active'] = open('/fw/active').read().strip()
except OSError:
    r['active'] = None
r['root'] = {}
for n in ('main.py', 'boot.py', 'board.json', 'config.json', 'identity.json', 'key.bin'):
    try:
        r['root'][n] = _s('/' + n)[:_A['hx']]
    except OSError:
        pass
try:
    r['identity'] = json.loads(open('/identity.json').read())
except Exception:
    r['identity'] = None
r['config'] = None
# (config.json.tmp read before _clean removes it: a flash cut after staging it left the good copy there)
for n in ('/config.json', '/config.json.tmp', '/config.bak'):
    try:
        r['config'] = json.loads(open(n).read())
        r['config_src'] = n
        break
    except Exception:
        pass
_clean()
try:
    os.stat('/rnfw')
    r['legacy'] = 1
except OSError:
    r['legacy'] = 0
r['imu'] = []
from machine import I2C, Pin
for c in _A['probes']:
    try:
        i = I2C(c[0], scl=Pin(c[1]), sda=Pin(c[2]), freq=100000)
        if c[3] in i.scan() and i.readfrom_mem(c[3], c[4], 1)[0] in c[5]:
            r['imu'].append(c[6])
    except Exception:
        pass
s = os.statvfs('/')
r['free'] = s[0] * s[3]
print(json.dumps(r))
del r, _A
