"""Modules written for MicroPython that the host shares, hardware-free and not firmware.

Each file here runs unchanged in three places: under CPython (imported as ``roadnode.mpy.lib.X``
by the host), on the unix port for the scripts in ``roadnode/mpy/scripts`` (runtime.micropython_env
puts this folder on MICROPYPATH, where it is imported as ``X``), and inside the simulated board
(sim/mpy/simboot.py adds this folder before it mounts the flash). Nothing here goes on a board:
the firmware lives in firmware/, the simulated hardware in sim/mpy/.
"""
