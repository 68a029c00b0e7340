"""The shipped road network's truth and the cost of fleet drives over it.

    python bench/bench_roads.py [--vehicles 3] [--minutes 4] [--km 12]

Prints: (1) how far the IRI of the profile each vehicle actually drove over a stretch lies from the
stretch's truth (the road's own IRI there; the difference is the quarter car's motion carried in
from the road before), over every stretch that N and 5 vehicles' long drives cover whole; (2) how
much a stretch's two directions differ; (3) the time to build N vehicles' scenarios of M minutes
(what `roadnode demo` pays before running the firmware), and how many stretches all N drive in both
directions.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from roadnode.roads import load_network, network_scenario
from roadnode.roads.trips import pieces_profile, pieces_route, route_stretches, trip_pieces
from roadnode.science.iri import segment_iri


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vehicles", type=int, default=3)
    ap.add_argument("--minutes", type=float, default=4.0)
    ap.add_argument("--km", type=float, default=12.0, help="drive length for the truth check")
    a = ap.parse_args()
    net = load_network("town")

    devs = []
    for n in sorted({a.vehicles, 5}):
        for k in range(n):
            pieces = trip_pieces(net, k, n, a.km * 1000)
            route, spans = pieces_route(net, pieces, "bench")
            x, z = pieces_profile(net, pieces)
            for s in route_stretches(net, spans, route.length_m):
                v = segment_iri(x, z, [s["route_start_m"], s["route_end_m"]])[0].iri_m_per_km
                devs.append(abs(v / s["true_iri_m_per_km"] - 1))
    devs = np.array(devs) * 100
    print(f"driven vs true IRI over {len(devs)} stretches ({a.km:g} km drives of {a.vehicles} and 5 vehicles): "
          f"median {np.median(devs):.3f}%, p95 {np.percentile(devs, 95):.2f}%, max {devs.max():.2f}%")

    d = []
    for r in net.roads.values():
        fwd, rev = r.stretch_truth("forward"), r.stretch_truth("reverse")[::-1]
        d += [abs(p["true_iri_m_per_km"] / q["true_iri_m_per_km"] - 1) * 100 for p, q in zip(fwd, rev)]
    print(f"a stretch's two directions differ by: median {np.median(d):.1f}%, p95 {np.percentile(d, 95):.1f}%, "
          f"max {np.max(d):.1f}% ({len(d)} stretches)")

    t0 = time.perf_counter()
    fleet = [network_scenario(k, a.vehicles, minutes=a.minutes, seed=k) for k in range(a.vehicles)]
    dt = time.perf_counter() - t0
    per = {}
    for k, sc in enumerate(fleet):
        for s in sc.meta["stretches"]:
            per.setdefault(s["stretch_id"], set()).add(k)
    full = {sid[:-2] for sid, ks in per.items() if len(ks) == a.vehicles}
    both = {sid for sid in full if f"{sid}/f" in per and f"{sid}/r" in per
            and len(per[f"{sid}/f"]) == len(per[f"{sid}/r"]) == a.vehicles}
    durs = ", ".join(f"{sc.meta['duration_s']:.0f} s/{sc.meta['length_m']:.0f} m" for sc in fleet)
    print(f"{a.vehicles} vehicles x {a.minutes:g} min ({durs}): built in {dt:.1f} s; "
          f"{len(per)} stretch-directions driven, {len(both)} stretches by all {a.vehicles} in both directions")


if __name__ == "__main__":
    main()
