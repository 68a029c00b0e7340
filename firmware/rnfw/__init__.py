"""roadnode firmware package."""


def unload(name):
    """Forget a firmware module so the GC takes its code back (it is imported again when needed):
    code on MicroPython lives on the heap, and the node has ~110 KB for everything."""
    import gc
    import sys

    import rnfw

    sys.modules.pop("rnfw." + name, None)
    try:
        delattr(rnfw, name)
    except (AttributeError, KeyError):  # MicroPython raises KeyError for a missing module attribute
        pass
    gc.collect()


def save(path, data, head=None):
    """Replace the file at path with data (str or bytes) atomically: written to path.tmp, synced
    where the port can (os.sync), renamed over path, so a power cut leaves the old file or the new
    one, never half of one (a rename is atomic on LittleFS). ``head``: the old file is kept under
    that name (a backup; the parameter's name is one the node already has: no new qstr). The one
    way the firmware writes its small files (config, identity, vitals, the console's requests)."""
    import os

    t = path + ".tmp"
    with open(t, "w" if isinstance(data, str) else "wb") as f:
        f.write(data)
    s = getattr(os, "sync", None)
    if s:
        s()
    if head:
        try:
            os.remove(head)
        except OSError:
            pass
        os.rename(path, head)
    os.rename(t, path)
    if s:
        s()
