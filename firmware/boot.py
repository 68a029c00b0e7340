# boot.py: runs at every boot before main.py. Keep it minimal: a failure here stops the node.
import gc

gc.collect()
