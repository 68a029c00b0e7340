"""The simulated board's faults and network outages as the tools write them (``--fault``,
``--net-outage``): parsed into the entries of simhw.faults the board's models read. Kept apart from
the scenario runner (sim/offline.py) so that starting a board imports no road science (scipy)."""

from __future__ import annotations

from roadnode.errors import InputError

FAULTS = ("imu_nack", "imu_gone", "imu_stuck", "gps_silent", "gps_garbage", "hang", "ignition_off")


def parse_fault(spec: str) -> dict:
    """``NAME@T[:DUR]`` (seconds of board time) -> simhw.faults entries."""
    name, _, rest = spec.partition("@")
    if name not in FAULTS:
        raise InputError(f"fault {spec!r}: unknown fault {name!r} (known: {', '.join(FAULTS)})")
    t, _, dur = rest.partition(":")
    try:
        t0 = float(t)
        d = float(dur) if dur else 1e6
    except ValueError:
        raise InputError(f"fault {spec!r}: expected NAME@SECONDS[:DURATION]") from None
    if t0 < 0 or d <= 0:
        raise InputError(f"fault {spec!r}: times must be positive")
    a, b = int(t0 * 1e6), int((t0 + d) * 1e6)
    if name in ("imu_nack", "imu_gone"):  # gone = a NACK that never ends
        return {"imu_nack_from": a, "imu_nack": b if name == "imu_nack" else 1 << 62}
    if name == "imu_stuck":
        return {"imu_stuck_from": a, "imu_stuck": b}
    if name == "hang":
        return {"hang_from": a, "hang": 1}
    return {f"{name}_from": a, name: b}


# the kinds of network outage the simulated board knows (sim/mpy/network.py KINDS; a test holds them equal)
NET_KINDS = ("assoc", "reset", "unreachable", "refused", "blackhole")


def parse_net_outage(spec: str) -> list:
    """``T0:T1[:KIND]`` (seconds of board time, KIND assoc by default) -> [from_us, until_us, kind],
    an entry of simhw.faults["net"]."""
    parts = spec.split(":")
    kind = parts[2] if len(parts) == 3 else "assoc"
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        a, b = float(parts[0]), float(parts[1])
    except ValueError:
        raise InputError(f"net outage {spec!r}: expected T0:T1[:KIND] (seconds of board time)") from None
    if kind not in NET_KINDS:
        raise InputError(f"net outage {spec!r}: unknown kind {kind!r} (known: {', '.join(NET_KINDS)})")
    if not 0 <= a < b or b == float("inf"):
        raise InputError(f"net outage {spec!r}: needs 0 <= T0 < T1")
    return [int(a * 1e6), int(b * 1e6), kind]
