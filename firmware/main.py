# roadnode loader: runs the active firmware slot (/fw/a or /fw/b, named in /fw/active).
# `roadnode flash` stages a new firmware in the other slot and switches /fw/active atomically, so
# an interrupted flash leaves the old firmware running. Ctrl-C stops the node and gives the REPL.
import sys

try:
    with open("/fw/active") as f:
        _slot = f.read().strip()
    if _slot in ("a", "b"):
        sys.path.insert(0, "/fw/" + _slot)
except OSError:
    pass  # no slot: firmware copied at the root (development) or none at all

try:
    from rnfw import app
except ImportError as e:
    print("roadnode: no firmware installed (%s): run `roadnode flash`" % e)
else:
    try:
        app.main()
    except KeyboardInterrupt:
        app.at_repl()
