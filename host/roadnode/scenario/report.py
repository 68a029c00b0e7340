"""Scenario summaries (dict for --json, rich table) and the four-panel plot."""

from __future__ import annotations

import numpy as np

from roadnode.scenario.fileformat import Scenario
from roadnode.userfiles import save_figure


def summarize(sc: Scenario) -> dict:
    """The scenario's key facts as a JSON-ready dict (what `scenario show` prints)."""
    m = sc.meta
    truth = len(sc.truth_speed_mps) > 0  # a captured drive (roadnode capture) has none
    stopped = float(np.mean(sc.truth_speed_mps < 0.5)) * m["duration_s"] if truth else None
    return {
        "length_m": m["length_m"],
        "duration_s": m["duration_s"],
        "segments": sc.segments,
        "mean_true_iri_m_per_km": float(np.nanmean(sc.seg_true_iri)) if len(sc.seg_true_iri) else None,
        "road": m["road"],
        "vehicle": m["vehicle"]["name"],
        "mount": m["mount"],
        "imu": {"part": m["imu"]["part"], "odr_hz": m["imu"]["odr_hz"], "range_g": m["imu"]["range_g"],
                "samples": int(len(sc.imu_t_s)), "mount_rpy_deg": m["imu"].get("mount_rpy_deg")},
        "gps": {"rate_hz": m["gps"]["rate_hz"], "baud": m["gps"]["baud"], "sentences": int(len(sc.gps_t_s)),
                "bytes": int(len(sc.gps_bytes)), "dropouts": m["gps"].get("dropouts", [])},
        "mean_speed_kmh": float(m["length_m"] / m["duration_s"] * 3.6),
        "max_speed_kmh": float(np.max(sc.truth_speed_mps) * 3.6) if truth else None,
        "stopped_s": round(stopped, 2) if truth else None,
        "features": sc.features,
        "route": {k: v for k, v in m.get("route", {}).items() if k != "pieces"},
        "stretches": m.get("stretches", []),
        "seed": m["seed"],
        "version": m["version"],
    }


def plot(sc: Scenario, path, device_segments=None, events=None) -> None:
    """Four panels; ``device_segments`` (dicts with start_m/end_m/iri_m_per_km) are drawn over the
    true IRI, ``events`` (dicts with kind/dist_m) as markers on the profile."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(4, 1, figsize=(11, 9), sharex=True)
    n = len(sc.road_x_m)
    stride = max(1, n // 20000)
    keep = sc.road_x_m <= sc.meta["length_m"]
    ax[0].plot(sc.road_x_m[keep][::stride], sc.road_z_m[keep][::stride] * 1000, lw=0.6)
    ax[0].set_ylabel("profile (mm)")
    for f in sc.features:
        ax[0].axvline(f["position_m"], color="C3", lw=0.8, alpha=0.6)
    ax[1].plot(sc.truth_pos_m, sc.truth_speed_mps * 3.6, lw=0.8)
    ax[1].set_ylabel("speed (km/h)")
    lsb = sc.meta["imu"]["lsb_per_g"]
    pos_imu = np.interp(sc.imu_t_s, sc.truth_t_s, sc.truth_pos_m)
    ax[2].plot(pos_imu, sc.imu_counts[:, 2] / lsb, lw=0.4, label="IMU z (g, incl. gravity)")
    ax[2].plot(sc.truth_pos_m, sc.truth_vert_acc / 9.80665 + 1, lw=0.4, alpha=0.7,
               label=f"{sc.meta['mount']} vertical (g) + 1")
    ax[2].set_ylabel("accel (g)")
    ax[2].legend(loc="upper right", fontsize=7)
    for i, s in enumerate(sc.segments):
        ax[3].hlines(s["true_iri_m_per_km"], s["start_m"], s["end_m"], colors="C1", lw=2,
                     label="true IRI" if i == 0 else None)
    for i, d in enumerate(device_segments or []):
        if d.get("iri_m_per_km") is not None:
            ax[3].hlines(d["iri_m_per_km"], d["start_m"], d["end_m"], colors="C0", lw=2, linestyles="--",
                         label="node IRI" if i == 0 or not ax[3].get_legend_handles_labels()[1][1:] else None)
    if device_segments:
        ax[3].legend(loc="upper right", fontsize=7)
    for e in events or []:
        ax[0].plot(e["dist_m"], 0, "v" if e["kind"] == "pothole" else "^", color="C2", ms=8)
    ax[3].set_ylabel("IRI (m/km)")
    ax[3].set_xlabel("distance along route (m)")
    road = sc.meta["road"]
    if "iso_class" in road:
        road_s = f"ISO 8608 class {road['iso_class']}"
    elif "iso_classes" in road:
        road_s = "ISO 8608 classes " + ", ".join(f"{c} ({n:g} m)" for c, n in road["iso_classes"])
    elif "network" in road:
        road_s = f"network {road['network']} ({len(road.get('roads', []))} roads)"
    else:
        road_s = f"profile {road.get('profile')}"
    fig.suptitle(f"{road_s} · {sc.meta['vehicle']['name']} · {sc.meta['imu']['part']} @ "
                 f"{sc.meta['imu']['odr_hz']:g} Hz · {sc.meta['mount']} mount", fontsize=10)
    fig.tight_layout()
    try:
        save_figure(fig, path, "plot", dpi=100)
    finally:
        plt.close(fig)
