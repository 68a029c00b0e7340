# The switch: every staged file checked (the slot: its SHA-256 digest by the staged firmware's own
# rnfw.manifest code; root files: SHA-256 each) and only if all equal, the root files renamed and
# /fw/active switched (renames are atomic on LittleFS); else the staged root files are removed.
# Prints "rn:commit ok|refused DIGEST [what differed]".
# Data: _A = {'wdt': ms, 'root': [[path, sha256 hex]], 'slot': slot to switch to or '', 'digest': expected}
# (sent after sha.py: _s; the host sends it guarded by its CRC-32: a byte changed on the line must
# not turn a refusal into a switch)
import machine
import os
import sys

machine.WDT(timeout=_A['wdt']).feed()
_bad = [p for p, x in _A['root'] if _s(p + '.tmp') != x]
_d = _A['digest']
if _A['slot']:
    sys.path.insert(0, '/fw/' + _A['slot'])
    from rnfw import manifest
    _d = manifest.installed(_A['slot'], False)[0]
    sys.path.pop(0)
    del sys.modules['rnfw.manifest']
    if _d != _A['digest']:
        _bad.append('slot')
if _bad:
    for p, x in _A['root']:
        try:
            os.remove(p + '.tmp')
        except OSError:
            pass
else:
    for p, x in _A['root']:
        os.rename(p + '.tmp', p)
    if _A['slot']:
        f = open('/fw/active.tmp', 'w')
        f.write(_A['slot'])
        f.close()
        os.rename('/fw/active.tmp', '/fw/active')
print('rn:commit', 'refused' if _bad else 'ok', _d, ' '.join(_bad))
