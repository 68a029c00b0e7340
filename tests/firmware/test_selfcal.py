"""Self-calibration (float prototype, roadnode.accuracy.selfcal): a vehicle no test or preset has
seen is identified from its own axle acceleration on an ordinary drive, and the node's IRI with
the identified settings is closer to the truth than with the default settings."""

import numpy as np
import pytest

from roadnode.errors import InputError
from roadnode.accuracy.golden import run_golden
from roadnode.accuracy.selfcal import axle_tf, identify
from roadnode.models.vehicle import quarter_car_ss, random_vehicle
from roadnode.scenario import make_scenario
from roadnode.scenario.build import mixed_iso_road
from roadnode.scenario.speed import varied_limits


def test_axle_transfer_function_is_the_quarter_car_s():
    """The four-parameter H_u equals the simulator's state-space quarter car (road -> axle height)."""
    v = random_vehicle(3)
    a, b, c, d = quarter_car_ss(v)
    w = 2 * np.pi * np.array([0.5, 1.3, 4.0, 11.0, 25.0])
    ss = np.array([(c[3] @ np.linalg.solve(1j * x * np.eye(4) - a, b))[0] for x in w])
    mine = axle_tf(w, v.kt / v.mu, v.ms / v.mu, np.sqrt(v.ks / v.ms), v.cs / (2 * np.sqrt(v.ks * v.ms)))
    assert np.allclose(mine, ss, rtol=1e-9)


def _drive(v, seed, classes, length_m):
    road = mixed_iso_road([(c, length_m / len(classes)) for c in classes], seed=seed)
    limits, stops = varied_limits(length_m, seed)
    return make_scenario(road=road, length_m=length_m, speed_limits=limits, stops=stops, vehicle=v, seed=seed)


@pytest.mark.slow
def test_identifies_an_unseen_vehicle_and_shrinks_its_iri_bias():
    v = random_vehicle(41)  # seeds 5000+ are the benchmark's
    learn = _drive(v, 141, "BCDC", 3000.0)  # 30-110 km/h with stops, four road stretches
    ident = identify(learn)
    st = ident.settings()
    assert ident.windows >= 20
    assert st["wheel_hop_hz"] == pytest.approx(v.wheel_hop_hz(), rel=0.05)
    assert st["wheel_damping"] == pytest.approx(v.wheel_damping(), rel=0.25)
    assert st["body_hz"] == pytest.approx(np.sqrt(v.ks / v.ms) / (2 * np.pi), rel=0.25)
    assert st["mass_ratio"] == pytest.approx(v.ms / v.mu, rel=0.35)
    # another drive of the same vehicle: the identified settings measure it better than the defaults
    sc = _drive(v, 241, "ABCD", 2500.0)
    truth = [s["true_iri_m_per_km"] for s in sc.segments]

    def errors(settings):
        return np.array([s[4] / 100 / truth[s[0]] - 1 for s in run_golden(sc, settings)["segments"]
                         if not s[8] & 0x87 and s[4] != 0xFFFF and s[0] < len(truth)])

    e_def, e_cal = errors({}), errors(st)
    assert len(e_cal) >= 15
    assert np.median(np.abs(e_cal)) < np.median(np.abs(e_def))
    assert abs(np.mean(e_cal)) < 0.06 and abs(np.mean(e_cal)) < abs(np.mean(e_def)), (np.mean(e_def), np.mean(e_cal))


def test_refuses_a_drive_without_enough_steady_driving():
    sc = make_scenario(iso_class="C", length_m=200, speed_kmh=30, vehicle=random_vehicle(42), seed=42)
    with pytest.raises(InputError, match="steady windows"):
        identify(sc)
    body = make_scenario(iso_class="C", length_m=100, speed_kmh=30, mount="body", seed=43)
    with pytest.raises(InputError, match="axle"):
        identify(body)


def test_the_nodes_fit_keeps_the_wheel_hop_within_what_its_band_can_tell():
    """The node's fit (rnfw.sc_fit) sees 0.7-16 Hz. Beyond that a sharp, barely damped resonance
    fits a rising spectrum as well as the true hop: this van (wheel hop 15.0 Hz) was read 22.5 Hz
    with damping 0.05 under the old 22 Hz bound on the tyre frequency; under 18 Hz it is read
    within 15%."""
    from array import array

    from roadnode.accuracy.selfcal import node_pipeline
    from roadnode.mpy.fwimport import fw

    v = random_vehicle(500034, kind="van")
    seed = 5002226
    road = mixed_iso_road([(c, 750.0) for c in "BCDC"], seed=seed)
    limits, stops = varied_limits(3000.0, seed, 30.0, 110.0)
    sc = make_scenario(road=road, length_m=3000.0, speed_limits=limits, stops=stops, vehicle=v, mount="axle",
                       imu="icm42688", seed=seed)
    s = node_pipeline(sc).sc
    assert s.nw >= 40
    run = fw("sc_fit").Fit(s).run()
    try:
        while True:
            next(run)
    except StopIteration as e:
        got = e.value
    assert got["wheel_hop_hz"] == pytest.approx(v.wheel_hop_hz(), rel=0.15), (got, v.wheel_hop_hz())
    assert got["wheel_damping"] > 0.1, got


def _damping_error(k):
    """log(identified / true wheel damping) of development vehicle k after its 3 km learning drive
    (the node's pipeline under CPython), or None when it was not identified."""
    from roadnode.accuracy.selfcal import node_pipeline, true_settings
    from roadnode.models.vehicle import KINDS

    v = random_vehicle(500000 + k, kind=list(KINDS)[k % len(KINDS)])
    seed = 5000000 + 64 * k + 50
    road = mixed_iso_road([(c, 750.0) for c in "BCDC"], seed=seed)
    limits, stops = varied_limits(3000.0, seed, 30.0, 110.0)
    sc = make_scenario(road=road, length_m=3000.0, speed_limits=limits, stops=stops, vehicle=v, mount="axle",
                       imu=("mpu6050", "icm42688")[(k + 1) % 2], seed=seed)
    pipe = node_pipeline(sc)
    s = pipe.sc
    while s.fit is not None:  # a fit under way at the drive's end: run it out
        s.step(pipe.est)
    return float(np.log(s.cur["wheel_damping"] / true_settings(v)["wheel_damping"])) if s.cur else None


@pytest.mark.slow
def test_the_nodes_spectra_do_not_flatten_the_wheel_hop():
    """The node averages its windows' log spectra. It averaged each window's power relative to
    the window's own 2-15 Hz mean: that mean rises and falls with the wheel-hop bins, so their
    average came out ~10% low at the peak and the fit read the damping high. On 16 vehicles' own
    3 km learning drives the damping it identified was +8.6% high on average then; it must now be
    within 5.5% on average (+2.9% measured before the windows overlapped, +4.6% since: the looser
    speed gate takes windows whose level moves within them, which broadens the peak: with the
    overlap and the old +-10% gate, -0.2%). The vehicles run in two processes: the suite leaves a
    core idle ~40% of the time (it waits on boards and lines in real time)."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2) as ex:
        errs = list(ex.map(_damping_error, range(16)))
    assert None not in errs, f"vehicles not identified: {[k for k, e in enumerate(errs) if e is None]}"
    mean = 100 * float(np.mean(errs))
    print(f"\nidentified wheel damping against the true one, 16 vehicles: mean {mean:+.1f}%")
    assert abs(mean) < 5.5, [round(100 * e, 1) for e in errs]
