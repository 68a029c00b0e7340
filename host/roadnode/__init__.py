"""roadnode host package: road science, scenarios, the simulated board and the technician tools.

The firmware lives in the repository's firmware/ folder; its hardware-free modules (NMEA parser,
packet codec, config schema) are imported by the host through :mod:`roadnode.mpy.fwimport` so that
formats have one source of truth.
"""

__version__ = "0.4.0"
