"""A GPS receiver as the firmware hears it: NMEA 0183 sentences on a UART, with real-world warts.

Each fix epoch emits RMC, GGA and VTG (configurable), bytes timed at the baud rate (10 bits per
byte) from the epoch. Before the first fix and inside dropouts (tunnels) the receiver keeps
talking but with status V / quality 0 and empty fields, as u-blox parts do.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

import numpy as np

from roadnode.errors import InputError
from roadnode.models.geo import R_EARTH

TALKERS = ("GP", "GN", "GL", "GA", "GB", "BD")
KNOT = 1852.0 / 3600.0  # m/s per knot


def nmea_checksum(body: bytes) -> int:
    """XOR of the bytes between $ and * of an NMEA sentence."""
    c = 0
    for b in body:
        c ^= b
    return c


def sentence(body: str) -> bytes:
    """'GPRMC,...' -> b'$GPRMC,...*hh\\r\\n'."""
    raw = body.encode("ascii")
    return b"$" + raw + b"*%02X\r\n" % nmea_checksum(raw)


@dataclass
class GpsConfig:
    """How the simulated GPS receiver behaves: rate, sentences, noise, fix time and dropouts."""

    rate_hz: float = 5.0
    baud: int = 38400
    talker: str = "GP"
    sentences: tuple[str, ...] = ("RMC", "GGA", "VTG")
    pos_noise_m: float = 1.5
    speed_noise_mps: float = 0.05
    time_to_fix_s: float = 5.0
    dropouts: list[tuple[float, float]] = field(default_factory=list)
    start_utc: str = "2026-06-01T10:00:00"
    sats: int = 9
    hdop: float = 0.9
    altitude_m: float = 120.0
    seed: int = 0


def _latlon_fields(lat: float, lon: float) -> tuple[str, str, str, str]:
    def fmt(v, degw):
        """Degrees as NMEA's (d)ddmm.mmmmm, rounding never giving 60 minutes."""
        a = abs(v)
        d = int(a)
        m = (a - d) * 60.0
        if round(m, 5) >= 60.0:
            d, m = d + 1, 0.0
        return f"{d:0{degw}d}{m:08.5f}"

    return fmt(lat, 2), "N" if lat >= 0 else "S", fmt(lon, 3), "E" if lon >= 0 else "W"


class GpsModel:
    """The NMEA byte stream a GPS receiver sends along a drive."""

    def __init__(self, cfg: GpsConfig):
        if cfg.talker not in TALKERS:
            raise InputError(f"GPS talker must be one of {', '.join(TALKERS)}, got {cfg.talker!r}")
        if not 1 <= cfg.rate_hz <= 10:
            raise InputError(f"GPS rate must be 1–10 Hz, got {cfg.rate_hz:g}")
        for s in cfg.sentences:
            if s not in ("RMC", "GGA", "VTG"):
                raise InputError(f"unsupported sentence {s!r}")
        self.cfg = cfg
        self._rng = np.random.default_rng(cfg.seed + 104729)
        try:
            self.t0 = _dt.datetime.fromisoformat(cfg.start_utc)
        except ValueError:
            raise InputError(f"start time {cfg.start_utc!r} is not ISO 8601") from None

    def has_fix(self, t: float) -> bool:
        """Whether the receiver has a fix at ``t`` s (after its time to fix, outside dropouts)."""
        if t < self.cfg.time_to_fix_s:
            return False
        return not any(a <= t < b for a, b in self.cfg.dropouts)

    def _epoch(self, t, lat, lon, spd, crs) -> list[bytes]:
        c = self.cfg
        utc = self.t0 + _dt.timedelta(seconds=t)
        hms = utc.strftime("%H%M%S") + f".{utc.microsecond // 10000:02d}"
        date = utc.strftime("%d%m%y")
        out = []
        if self.has_fix(t):
            # position noise as a slow random walk would be more realistic; white noise at the
            # given sigma is the conservative case for distance integration
            n, e = self._rng.normal(0, c.pos_noise_m, 2)
            la = lat + np.degrees(n / R_EARTH)
            lo = lon + np.degrees(e / (R_EARTH * np.cos(np.radians(lat))))
            v = max(0.0, spd + self._rng.normal(0, c.speed_noise_mps))
            la_s, ns, lo_s, ew = _latlon_fields(la, lo)
            kn = f"{v / KNOT:.3f}"
            kmh = f"{v * 3.6:.3f}"
            trk = f"{crs % 360:.2f}" if v > 0.5 else ""
            for s in c.sentences:
                if s == "RMC":
                    out.append(sentence(f"{c.talker}RMC,{hms},A,{la_s},{ns},{lo_s},{ew},{kn},{trk},{date},,,A"))
                elif s == "GGA":
                    out.append(sentence(
                        f"{c.talker}GGA,{hms},{la_s},{ns},{lo_s},{ew},1,{c.sats:02d},{c.hdop:.2f},"
                        f"{c.altitude_m:.1f},M,47.0,M,,"))
                else:
                    out.append(sentence(f"{c.talker}VTG,{trk},T,,M,{kn},N,{kmh},K,A"))
        else:
            has_time = t >= min(1.0, c.time_to_fix_s)  # time arrives before position
            hms_f = hms if has_time else ""
            date_f = date if has_time else ""
            for s in c.sentences:
                if s == "RMC":
                    out.append(sentence(f"{c.talker}RMC,{hms_f},V,,,,,,,{date_f},,,N"))
                elif s == "GGA":
                    out.append(sentence(f"{c.talker}GGA,{hms_f},,,,,0,00,99.99,,,,,,"))
                else:
                    out.append(sentence(f"{c.talker}VTG,,,,,,,,,N"))
        return out

    def nmea_stream(self, t, lat, lon, speed_mps, course_deg) -> list[tuple[float, bytes]]:
        """[(time of first byte, sentence bytes)] for each epoch within [t[0], t[-1]]."""
        c = self.cfg
        t = np.asarray(t, float)
        period = 1.0 / c.rate_hz
        epochs = np.arange(np.ceil(t[0] / period) * period, t[-1] + 1e-9, period)
        byte_s = 10.0 / c.baud
        out: list[tuple[float, bytes]] = []
        la = np.interp(epochs, t, lat)
        lo = np.interp(epochs, t, lon)
        sp = np.interp(epochs, t, speed_mps)
        cr = np.interp(epochs, t, course_deg)
        for i, te in enumerate(epochs):
            tt = te + 0.02  # receivers output a little after the epoch
            for s in self._epoch(float(te), la[i], lo[i], sp[i], cr[i]):
                out.append((tt, s))
                tt += len(s) * byte_s
            if tt - te > period:
                raise InputError(
                    f"{c.baud} baud cannot carry {len(c.sentences)} sentences at {c.rate_hz:g} Hz "
                    f"({tt - te:.3f} s of bytes per {period:.3f} s epoch); raise the baud rate"
                )
        return out
