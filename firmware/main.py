# roadnode loader: runs the active firmware slot (/fw/a or /fw/b, named in /fw/active).
# `roadnode flash` stages a new firmware in the other slot and switches /fw/active atomically, so
# an interrupted flash leaves the old firmware running. Ctrl-C stops the node and gives the REPL;
# nothing else leaves the node there.
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
    # a failure at start-up runs the node in safe mode (app.main); one that escapes even that is
    # recorded and the watchdog resets the board (rescue.fail). Only Ctrl-C gives the REPL.
    try:
        try:
            app.main()
        except Exception as e:
            from rnfw import rescue

            rescue.fail(e)
    except KeyboardInterrupt:
        app.at_repl()
