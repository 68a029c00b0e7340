# roadnode firmware package (MicroPython; pure modules also import under CPython)
