# What an interrupted flash leaves behind (staged root files, the pack, a half-written slot
# switch): removed by the probe at the start of every flash, and after a failure (_clean()).
import os


def _clean():
    for n in os.listdir('/'):
        if n.endswith('.tmp') or n == 'rn.pack':
            os.remove('/' + n)
    try:
        os.remove('/fw/active.tmp')
    except OSError:
        pass
