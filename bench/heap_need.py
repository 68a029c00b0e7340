"""The least heap the firmware boots and measures with, found by bisection: the same drive as
tests/node/test_uplink_heap.py (and the console node), run on the simulated board with less and less
heap (RNSIM_HEAP_EXTRA negative) until the node no longer starts normally or no longer runs the
drive cleanly. What the firmware needs at its worst moment, the boot's transient included (and
the fragmentation the allocator leaves), against the live heap while measuring that the tests
hold to the budget.

    python bench/heap_need.py [--nodes console,mqtt,mqtt-dns] [--step 512]

A run counts as clean when the node measured the whole drive (no sample lost, no FIFO overflow)
and, on MQTT, stayed silent on its console (safe mode would report there) and kept one broker
connection (a MemoryError inside the uplink drops the link). The figure is the heap the firmware
had at that edge: the interpreter's heap less the simulation's own (as the tests count it).
"""

from __future__ import annotations

import argparse
import os
import sys


def _run(kind: str, extra: int, port: int):
    from roadnode.scenario import make_scenario
    from roadnode.sim.offline import run_scenario

    os.environ["RNSIM_HEAP_EXTRA"] = str(extra)
    sc = make_scenario(iso_class="C", length_m=800, speed_kmh=50, seed=3)
    cfg = {"heartbeat_s": 10, "device_id": 77}
    if kind != "console":
        cfg.update(uplink="mqtt", wifi_ssid="depot", wifi_password="roadnode", mqtt_port=port,
                   mqtt_host="localhost" if kind == "mqtt-dns" else "127.0.0.1")
    try:
        r = run_scenario(sc, settings=cfg)
    except Exception:  # noqa: BLE001 - the interpreter died (MemoryError at the top level)
        return None
    h = r["heap"]
    if not h or h["produced"] < 10_000 or h["lost"] or h["overflows"]:
        return None
    if kind != "console" and (r["packets"] or not r["net"] or r["net"]["connects"] != 1):
        return None
    if kind == "console" and not r["packets"]:
        return None
    return h


def deployed() -> str:
    """What the node holds (firmware/deploy.toml's slot, compiled for the ESP32): the modules the
    heap figures below are for, and their size on the board's flash."""
    from pathlib import Path

    from roadnode.usb.image import deploy_list
    from roadnode.mpy.build import compiled_firmware

    d = deploy_list()
    out = compiled_firmware("xtensawin")
    size = sum((out / Path(p).with_suffix(".mpy")).stat().st_size for p in d["slot"])
    return (f"deployed: {len(d['slot'])} modules, {size} B of .mpy for xtensawin "
            f"(host only, not deployed: {', '.join(d['host_only'])})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", default="console,mqtt,mqtt-dns")
    ap.add_argument("--step", type=int, default=512, help="bisection resolution, bytes")
    a = ap.parse_args()
    print(deployed(), flush=True)
    from roadnode.fleet.broker import Broker
    from roadnode.mpy.runtime import ESP32_HEAP

    with Broker() as b:
        for kind in a.nodes.split(","):
            h0 = _run(kind, 0, b.port)
            if h0 is None:
                print(f"{kind}: does not run cleanly with the ESP32's heap")
                continue
            used = h0["total"] - h0["sim"] - h0["min_free"]
            lo, hi, hh = -ESP32_HEAP // 2, 0, h0  # lo fails (assumed), hi runs
            while hi - lo > a.step:
                mid = (lo + hi) // 2
                h = _run(kind, mid, b.port)
                if h is None:
                    lo = mid
                else:
                    hi, hh = mid, h
            need = hh["total"] - hh["sim"]
            print(f"{kind}: boots and measures with {need} B of firmware heap ({100 * need / ESP32_HEAP:.1f}% of "
                  f"{ESP32_HEAP}), not with {a.step} B less; live heap while measuring {used} B "
                  f"({100 * used / ESP32_HEAP:.1f}%)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
