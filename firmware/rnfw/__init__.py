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
