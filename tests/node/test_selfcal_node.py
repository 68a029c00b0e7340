"""Self-calibration on the node (rnfw.selfcal): its viper code equals its plain twin on MicroPython,
its per-batch path allocates nothing, its identification agrees with the host's float prototype
(roadnode.accuracy.selfcal) and with the true vehicle, and on the simulated board it converges,
reports its settings in the heartbeat and keeps them across a power cut."""

from array import array

import numpy as np
import pytest

from roadnode.accuracy.golden import config_for, readers
from roadnode.accuracy.selfcal import identify, node_pipeline
from roadnode.models.vehicle import random_vehicle
from roadnode.mpy import runtime
from roadnode.mpy.fwimport import fw
from roadnode.scenario import make_scenario
from roadnode.scenario.build import mixed_iso_road
from roadnode.scenario.speed import varied_limits
from roadnode.sim.offline import run_scenario

VIPER_VS_TWIN = """
import random
from array import array
from rnfw import selfcal, sc_twin
random.seed(%d)
bad = 0
h = array('H', selfcal.SelfCal(200).h)
u = array('i', [0, 0, 0, 120, -350, 4070, 2051])
for trial in range(6):
    T1 = array('i', [0, 0, 0, trial %% 3, 0]); T2 = array('i', T1)
    x1 = array('i', bytes(2048)); x2 = array('i', bytes(2048))
    for half in range(2):  # a window, then (its second half moved to the front) the next one
        while T1[0] < 512:
            n = random.randint(1, 40)
            b = array('h', [random.randint(-32768, 32767) if random.random() < 0.02 else random.randint(-3000, 3000) + (2048 if k %% 3 == 2 else 0) for k in range(3 * n)])
            if selfcal.proj(b, n, x1, T1, u) != sc_twin.proj(b, n, x2, T2, u) or list(T1) != list(T2):
                bad += 1
        bad += list(x1) != list(x2)
        if half == 0:
            selfcal.move(x1, 0, x1, 256, 256); sc_twin.move(x2, 0, x2, 256, 256)
            T1[0] = T2[0] = 256
            if T1[4]:  # the rest of the batch that filled the window goes on into the next
                bad += selfcal.proj(b, n, x1, T1, u) != sc_twin.proj(b, n, x2, T2, u) or list(T1) != list(T2)
    y1 = array('h', bytes(1024)); y2 = array('h', bytes(1024))
    bad += selfcal.prep(x1, h, y1) != sc_twin.prep(x2, h, y2)
    bad += list(y1) != list(y2) or list(x1) != list(x2)
    o1 = array('i', bytes(16)); o2 = array('i', bytes(16))
    for k in (2, 17, 40, 255):
        selfcal.dft(y1, h, k, o1, 1); sc_twin.dft(y2, h, k, o2, 1)
        bad += list(o1) != list(o2)
print('mismatches', bad)
"""


@pytest.mark.parametrize("seed", [1, 2])
def test_viper_equals_plain_twin_on_micropython(seed):
    out = runtime.run_code(VIPER_VS_TWIN % seed).stdout.decode().split()
    assert out == ["mismatches", "0"]



def _inverse(est):
    """The estimator's inverse of the vehicle as configured: its state slots _KB2, _CBQ, _C3 (46-48)
    and _C1Q4, _C2 (52, 53) (rnfw/estimator.py's layout)."""
    return list(est.S)[46:49] + list(est.S)[52:54]

def test_per_batch_path_allocates_nothing():
    """Samples reach the window with the heap locked; only the once-per-window spectrum (floats)
    may allocate."""
    code = """
import gc, micropython
from array import array
from rnfw import selfcal
def run():
    s = selfcal.SelfCal(200)
    u = array('i', [0, 0, 0, 0, 0, 4096, 2048])
    b = array('h', [0, 0, 2048] * 10)
    wins = 0
    d = k = 0
    ks = []
    for w in range(3):
        gc.collect()
        a0 = gc.mem_alloc()
        micropython.heap_lock()
        k = 0
        while not s.full:
            for i in range(10):
                b[3 * i + 2] = 2048 + (k * 37 + i * 53) % 200 - 100
            s.add(b, 10, u, 16000, True)
            k += 1
        micropython.heap_unlock()
        d += gc.mem_alloc() - a0
        ks.append(k)
        s.step(None)
        wins += 1
    print(d, s.nw, wins, *ks)
run()
"""
    delta, taken, wins, *batches = map(int, runtime.run_code(code).stdout.split())
    # 512 samples, then 256 for each overlapping window after it: 10-sample batches fill the
    # first at sample 512 (52 batches), and the rest of that batch starts the next (264: 25 more
    # batches to 514, 26 to 516): not a sample skipped
    assert delta == 0 and batches == [52, 25, 26] and wins == 3 and taken >= 1


def _drive(v, seed, classes, length_m, **kw):
    road = mixed_iso_road([(c, length_m / len(classes)) for c in classes], seed=seed)
    limits, stops = varied_limits(length_m, seed)
    return make_scenario(road=road, length_m=length_m, speed_limits=limits, stops=stops, vehicle=v, seed=seed, **kw)


def _true(v):
    return {"wheel_hop_hz": v.wheel_hop_hz(), "wheel_damping": v.wheel_damping(),
            "body_hz": float(np.sqrt(v.ks / v.ms) / (2 * np.pi)), "mass_ratio": v.ms / v.mu}


TOL = {"wheel_hop_hz": 0.05, "wheel_damping": 0.25, "body_hz": 0.25, "mass_ratio": 0.35}


def _close(a, b):
    return {k: abs(a[k] / b[k] - 1) for k in TOL if abs(a[k] / b[k] - 1) > TOL[k]}


@pytest.fixture(scope="module")
def learn():
    v = random_vehicle(42)  # (seeds 5000+ are the benchmark's)
    return v, _drive(v, 142, "BCDC", 5000.0)


@pytest.mark.slow
def test_node_identification_agrees_with_the_prototype_and_the_truth(learn):
    """The node's pipeline (under CPython: the plain twins, bit-identical integers) identifies the
    vehicle of a drive as the float prototype does on the same data, and close to the truth."""
    v, sc = learn
    P = fw("pipeline")
    pipe = node_pipeline(sc)
    imu, _ = readers(sc)
    s = pipe.sc
    assert s.state == 3 and s.fit is None and pipe.est.pend is None, (s.state, s.nw)  # identified during the drive
    # ... and in force: the estimator's inverse is the one configured with those settings
    E = fw("estimator").Estimator(config_for(sc, dict(s.cur)), imu.odr_hz, imu.period_ms, imu.lsb_per_g)
    assert _inverse(pipe.est) == _inverse(E)
    assert _inverse(pipe.est) != _inverse(P.Pipeline(config_for(sc, {}), imu.odr_hz, imu.period_ms, imu.lsb_per_g).est)
    while s.fit is not None:
        s.step(pipe.est)
    s.due = s.nw  # a last fit on all the windows, as the prototype uses all of the drive
    s.step(pipe.est)
    while s.fit is not None:
        s.step(pipe.est)
    assert s.state == 3 and s.nw >= 48
    proto = identify(sc).settings()
    assert not _close(s.cur, proto), (s.cur, proto)
    assert not _close(s.cur, _true(v)), (s.cur, _true(v))
    assert pipe.est.pend == s.cur or pipe.est.pend is None  # handed to the estimator


@pytest.mark.slow
def test_simulated_board_converges_reports_and_keeps_it_across_a_power_cut(learn):
    """A node with self_cal on, on an unseen vehicle: its heartbeat says "learning", then
    "identified" with settings near the truth; after a power cut it boots with them ("stored")."""
    v, sc = learn
    # the cut comes after the first fit (done by ~160 s of this drive) and the refit (due at twice
    # its windows, done by ~270 s), and before the next (at 256 windows: after this drive)
    r = run_scenario(sc, settings={"heartbeat_s": 10, "self_cal": "on"}, power_cuts=[sc.meta["duration_s"] - 55])
    hb = [p for p in r["packets"] if p["type"] == "status"]
    line = " ".join("%d:%s:%d:%s" % (h["uptime_s"], h["self_cal"]["state"][:2], h["self_cal"]["windows"],
                                     h["self_cal"]["wheel_hop_hz"]) for h in hb)  # (for the messages)
    print(f"\nheartbeats (uptime:state:windows:wheel hop), cut at {sc.meta['duration_s'] - 55:.0f} s: {line}")
    assert r["boots"] == 2, line
    boot = next(i for i in range(1, len(hb)) if hb[i]["uptime_s"] < hb[i - 1]["uptime_s"])  # the power-up
    states = [h["self_cal"]["state"] for h in hb[:boot]]
    assert states[0] == "learning" and "identified" in states, line
    ident = [h["self_cal"] for h in hb[:boot] if h["self_cal"]["state"] == "identified"][-1]
    assert not _close(ident, _true(v)), (ident, _true(v))
    stored = hb[boot]["self_cal"]  # the boot heartbeat after the cut
    assert stored["state"] == "stored", line
    # what was stored is the last fit before the cut: the one the last heartbeat reported, or one
    # that ended after it (on its more windows: a fit that ends between the last heartbeat and the
    # cut is stored but never reported, seen 1 run in 8 under load with the cut at the refit)
    same = {k: stored[k] for k in TOL} == {k: ident[k] for k in TOL}
    assert same or (stored["windows"] >= ident["windows"] and not _close(stored, _true(v))), (stored, ident, line)
    off = run_scenario(make_scenario(iso_class="C", length_m=150, speed_kmh=40, seed=5), settings={"heartbeat_s": 10})
    assert [p["self_cal"]["state"] for p in off["packets"] if p["type"] == "status"][0] == "off"


@pytest.mark.slow
def test_status_cli_reports_self_calibration(tmp_path, cli):
    """`roadnode status` on a (simulated) board: off by default; with `config set self_cal=on` the
    node boots learning, and `--json` carries the self_cal object (the table a row)."""
    import json

    from roadnode.usb.flash import flash_board
    from roadnode.sim.board import SimBoard

    with SimBoard(board="esp32-devkitc-mpu6050-neo6m", flash_dir=tmp_path / "b", realtime=True) as b:
        assert flash_board(b.port, device_id=77).ok
        r = cli("status", "--port", b.port, "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["self_cal"]["state"] == "off"
        assert cli("config", "set", "self_cal=on", "--port", b.port).returncode == 0
        r = cli("status", "--port", b.port, "--json")
        assert r.returncode == 0, r.stderr
        sc = json.loads(r.stdout)["self_cal"]
        assert sc == {"state": "learning", "windows": 0, "wheel_hop_hz": None, "wheel_damping": None,
                      "body_hz": None, "mass_ratio": None}
        r = cli("status", "--port", b.port)
        assert r.returncode == 0 and "learning (0 windows)" in r.stdout, r.stdout


def test_stored_settings_seed_the_estimator_and_off_forgets_them(tmp_path):
    """A stored identification is in force from the boot (the estimator tuned with it, state
    "stored"); a damaged file is ignored; a boot with self_cal off deletes it."""
    C, P = fw("config"), fw("pipeline")
    f = tmp_path / "selfcal.json"
    f.write_text('{"wheel_hop_hz": 13.2, "wheel_damping": 0.21, "body_hz": 1.6, "mass_ratio": 6.5, "windows": 96}')
    cfg = C.defaults()
    cfg["self_cal"] = "on"
    p = P.Pipeline(cfg, 200, 5, 2048, str(f))
    assert p.sc.values() == (2, 96, 132, 42, 80, 65)
    cfg2 = dict(cfg, self_cal="off", wheel_hop_hz=13.2, wheel_damping=0.21, body_hz=1.6, mass_ratio=6.5)
    ref = P.Pipeline(cfg2, 200, 5, 2048)  # the same settings configured by hand: the same inverse
    assert list(p.est.S) == list(ref.est.S)  # (the inverse's settings among them)
    assert f.exists()
    P.Pipeline(cfg2, 200, 5, 2048, str(f))
    assert not f.exists()
    f.write_text('{"wheel_hop_hz": 13')  # half-written (rnfw.save never leaves one; a corrupt flash might)
    assert P.Pipeline(cfg, 200, 5, 2048, str(f)).sc.values() == (1, 0, 0, 0, 0, 0)


def test_new_settings_take_effect_at_a_segment_boundary():
    """Settings handed over mid-segment (Estimator.pend) wait for the segment to close: no segment
    is measured half with one inverse and half with another."""
    C, P = fw("config"), fw("pipeline")
    p = P.Pipeline(C.defaults(), 200, 5, 2048)
    g = p.gps
    g.fix_valid, g.fixes, g.speed_mmps = True, 1, 16000
    b = array("h", [0, 0, 2048] * 10)
    c2 = _inverse(p.est)
    p.est.pend = {"wheel_hop_hz": 14.0, "wheel_damping": 0.2, "body_hz": 1.5, "mass_ratio": 7.0}
    t = 0
    while not p.est.closed.n:
        assert _inverse(p.est) == c2 and p.est.pend is not None
        t += 50
        p.feed_gps(b"", 0, t)
        p.feed_imu(b, 10, t)
    assert p.est.pend is None and _inverse(p.est) != c2 and p.est.S[48] > 0  # the two-mass inverse now


def test_identified_settings_are_always_accepted_config_values():
    """Whatever the fit returns within its bounds, the settings are values the config accepts, so
    the fixed-point inverse stays within the ranges tests/firmware/test_int32_safety.py proves."""
    import itertools
    import math

    C, S = fw("config"), fw("sc_fit")
    w = 2 * math.pi
    corners = [((w * 5) ** 2, (w * 22) ** 2), (3.0, 16.0), (w * 0.7, w * 2.6), (0.08, 0.7)]
    for q in itertools.product(*corners):
        for k, val in S.settings(q).items():
            assert C.check(k, val) == val, (q, k, val)
