"""The on-device estimator: viper kernel vs its plain-Python twin, firmware vs golden model bit for
bit, fixed point vs float64, 32-bit safety on extreme drives, no allocation per sample, accuracy."""

from __future__ import annotations

import re

import numpy as np
import pytest

from roadnode.accuracy.golden import run_firmware, run_golden
from roadnode.accuracy.reference import FloatEstimator
from roadnode.accuracy.report import score, segment_record
from roadnode.mpy import runtime
from roadnode.mpy.fwimport import fw
from roadnode.paths import FIRMWARE_DIR
from roadnode.scenario import make_scenario


def _consts(name):
    src = (FIRMWARE_DIR / "rnfw" / name).read_text()
    return dict(re.findall(r"^_?([A-Z][A-Z0-9_]*) = const\((\d+)\)", src, re.M))


def test_state_layout_is_the_same_in_all_three_files():
    est, vip, twin = _consts("estimator.py"), _consts("est_viper.py"), _consts("est_twin.py")
    layout = {k: v for k, v in est.items() if k in vip}
    assert len(layout) >= 30
    assert all(vip[k] == v and twin[k] == v for k, v in layout.items())


VIPER_VS_TWIN = r"""
import random
from array import array
from rnfw import est_viper, est_twin
L = %s
random.seed(%d)
S1 = array('i', bytes(4 * L['NSTATE'])); S2 = array('i', bytes(4 * L['NSTATE']))
for S in (S1, S2):
    S[L['GZ']] = 4096 << 8; S[L['UZ']] = 4096; S[L['GM']] = 4096; S[L['KA']] = 9807
    S[L['PMS']] = 5; S[L['LEAK']] = 8; S[L['EVTH']] = 30000; S[L['PDROP']] = 19600
    S[L['AVMAX']] = 167056  # 400000 * 4096 // 9807 + 1
    S[L['GREL']] = 40  # short, so the tracker's re-acquire path runs too
    if (%d & 1) == 0:
        # body-mount path at body_hz 0.5: |a * cb| reaches 2^29 - 1 (the kernel's bound)
        S[L['CB']] = 111111; S[L['ALPHA']] = 2500; S[L['ABMAX']] = 4831
    else:  # axle mount with the two-mass inverse: the bin record carries the boundary velocity
        S[L['C3']] = 2048
B1 = array('i', bytes(4 * 128)); B2 = array('i', bytes(4 * 128))
buf = array('h', bytes(2 * 3 * 64))
bad = calls = 0
for batch in range(400):
    n = 1 + random.getrandbits(6)
    big = random.getrandbits(3) == 0
    for j in range(3 * n):
        v = random.getrandbits(16) - 32768 if big else random.getrandbits(12) - 2048
        buf[j] = v
    for j in range(2, 3 * n, 3):
        if not big:
            buf[j] += 4096
    if big:
        buf[0] = -32768
    step = random.getrandbits(17) if random.getrandbits(2) else 0
    if random.getrandbits(3) == 0:
        step = 650000  # 65 m/s at 100 Hz: several bins per sample
    for S in (S1, S2):
        S[L['STEP']] = step
        S[L['INV']] = 0x3FFFFFFF // step if step else 0
        S[L['BLIM']] = 31 - step // 250000
        S[L['POS']] = 0
    while True:  # as Estimator.add: call again from S[POS] while B fills up
        for S in (S1, S2):
            S[L['NB']] = 0
            S[L['EVDONE']] = 0
        n1 = est_viper.kernel(S1, buf, n, B1)
        n2 = est_twin.kernel_py(S2, buf, n, B2)
        calls += 1
        if n1 != n2 or list(S1) != list(S2) or list(B1[:4 * n1]) != list(B2[:4 * n2]):
            bad += 1
        if S1[L['POS']] >= n or S1[L['POS']] != S2[L['POS']]:
            break
print('mismatches', bad, 'bins', S1[L['BINS']], 'clip', S1[L['CLIP']], 'calls', calls)
"""

BINS_VIPER_VS_TWIN = r"""
import random
from array import array
from rnfw import est_viper, est_twin, golden_car
L = %s
random.seed(%d)
C = array('i', golden_car.Q16)
N = L['NSTATE']
bad = humps = full = calls = 0
B = array('i', bytes(16 * 32))
for trial in range(120):
    S1 = array('i', bytes(4 * N))
    body = random.getrandbits(1)
    S1[L['BODY']] = body
    if not body:
        S1[L['C1Q4']] = random.randint(-200, 3000)
        S1[L['C2']] = random.randint(0, 1341)
        if random.getrandbits(1):  # two-mass inverse
            S1[L['C3']] = random.randint(1, 3000)
            S1[L['DTQ']] = random.randint(0, 3277)
            S1[L['KB2']] = random.randint(1, 600)
            S1[L['CBQ']] = random.randint(1, 255)
    S1[L['BUMPNM']] = random.choice((20000000, 40000000))
    S1[L['BPS']] = random.choice((40, 400))
    S1[L['MINSPD']] = 5555
    S1[L['EVOK']] = random.choice((0, 1, 1))
    S1[L['SPEED']] = random.choice((3000, 8000, 14000, 20000))
    S1[L['VALID']] = random.choice((0, 1, 1, 1))
    S1[L['QUIET']] = random.choice((0, 30))
    S2 = array('i', S1)
    X1 = array('i', bytes(32))
    X2 = array('i', bytes(32))
    for batch in range(24):
        nb = random.randint(1, 32)
        if batch %% 3 == 2:  # a hump: the road rises ~48 mm over 1.5 m and falls again
            for k in range(nb):
                B[4 * k] = 8000000 if k %% 12 < 6 else -8000000
                B[4 * k + 1] = B[4 * k + 2] = B[4 * k + 3] = random.randint(-1000, 1000)
        else:
            amp = random.choice((1000, 100000, 3000000, 1 << 28))
            for k in range(4 * nb):
                B[k] = random.randint(-amp, amp)
        S1[L['BI']] = S2[L['BI']] = 0
        while True:  # as Estimator._bins: Python acts, then the bins go on
            r1 = est_viper.bins(S1, B, nb, X1, C)
            r2 = est_twin.bins_py(S2, B, nb, X2, C)
            calls += 1
            if r1 != r2 or list(S1) != list(S2) or list(X1) != list(X2):
                bad += 1
                break
            if not r1:
                break
            if S1[L['HUMP']]:
                humps += 1
                S1[L['HUMP']] = S2[L['HUMP']] = 0
            if S1[L['NBINS']] >= S1[L['BPS']]:
                full += 1
                S1[L['NBINS']] = S2[L['NBINS']] = 0
                S1[L['SEGBASE']] += S1[L['BPS']]
                S2[L['SEGBASE']] += S2[L['BPS']]
print('mismatches', bad, 'humps', humps, 'full', full, 'calls', calls)
"""


@pytest.mark.parametrize("seed", [1, 2])
def test_viper_kernel_equals_plain_twin_on_micropython(seed):
    layout = {k: int(v) for k, v in _consts("estimator.py").items()}
    out = runtime.run_code(VIPER_VS_TWIN % (layout, seed, seed)).stdout.decode().split()
    assert out[0] == "mismatches" and out[1] == "0"
    assert int(out[3]) > 100 and out[5] == "1"  # bins crossed, clipping exercised
    assert int(out[7]) > 400  # batches that filled B were resumed


@pytest.mark.parametrize("seed", [3, 4])
def test_viper_bins_equal_plain_twin_on_micropython(seed):
    """Axle and body mounts, one- and two-mass inverse, values at the clamps, humps reported and
    segments filled (each a return to Python and a resume): state, Golden Car and verdicts equal."""
    layout = {k: int(v) for k, v in _consts("estimator.py").items()}
    out = runtime.run_code(BINS_VIPER_VS_TWIN % (layout, seed)).stdout.decode().split()
    assert out[0] == "mismatches" and out[1] == "0"
    assert int(out[3]) > 20 and int(out[5]) > 20 and int(out[7]) > 2000


@pytest.fixture(scope="module")
def drives():
    return [
        make_scenario(iso_class="C", length_m=700, speed_kmh=60, seed=21, features=[]),
        make_scenario(iso_class="A", length_m=700, speed_kmh=100, imu="icm42688", odr_hz=500, vehicle="suv", seed=22),
        make_scenario(iso_class="D", length_m=700, speed_kmh=35, vehicle="van", seed=23),
    ]


def test_firmware_on_micropython_equals_golden_model_bit_for_bit(drives):
    from roadnode.science.roads import parse_feature

    drives = drives + [make_scenario(iso_class="B", length_m=500, speed_kmh=50, seed=24,
                                     features=[parse_feature("pothole@200"), parse_feature("bump@350")])]
    for sc in drives:
        g = run_golden(sc)
        f = run_firmware(sc)
        assert len(g["segments"]) >= 4
        assert f["segments"] == g["segments"]
        assert f["events"] == g["events"]


def test_fixed_point_within_half_percent_of_float64(drives):
    n = 0
    for sc in drives:
        fx = run_golden(sc)["segments"]
        fl = run_golden(sc, impl=FloatEstimator)["segments"]
        for a, b in zip(fx[1:], fl[1:]):  # the first segment starts from rest (flagged)
            if a[4] == 0xFFFF or b[1] is None:
                continue
            assert a[4] / 100 == pytest.approx(b[1], rel=0.005, abs=0.006), (a, b)
            n += 1
    assert n >= 10


def test_accuracy_on_simulated_drives(drives):
    errs = []
    for sc in drives:
        segs = [segment_record(t) for t in run_golden(sc)["segments"]]
        s = score(segs, sc.segments)
        errs.append(s)
        assert s["scored"] >= 4
    med = np.median([e["median_abs_err_pct"] for e in errs])
    p90 = max(e["p90_abs_err_pct"] for e in errs)
    assert med <= 10 and p90 <= 25, errs


class CInt(int):
    """An int that fails the test as soon as any arithmetic result leaves the 31-bit small-int
    range of the ESP32 (|x| < 2^30); that bound also keeps every viper int32 from wrapping."""

    LIMIT = 1 << 30

    def _c(self, v):
        if not -self.LIMIT <= v < self.LIMIT:
            raise OverflowError(f"intermediate {v} exceeds +-2^30")
        return CInt(v)


for _op in ("add", "sub", "mul", "floordiv", "mod", "lshift", "rshift", "and", "or", "xor"):
    for _name in (f"__{_op}__", f"__r{_op}__"):
        def _make(name):
            base = getattr(int, name)
            return lambda self, other: self._c(base(int(self), int(other))) if isinstance(other, int) else NotImplemented
        setattr(CInt, _name, _make(_name))
CInt.__neg__ = lambda self: self._c(-int(self))
CInt.__abs__ = lambda self: self._c(abs(int(self)))


def test_every_intermediate_fits_31_bits_on_extreme_drives():
    # class E road at 130 km/h, +-16 g range with clipping, and a deep pothole
    from roadnode.science.roads import parse_feature

    sc = make_scenario(iso_class="E", length_m=400, speed_kmh=130, range_g=16, vehicle="truck", seed=31,
                       features=[parse_feature("pothole@200:len=0.8,h=0.12")])
    assert (np.abs(sc.imu_counts) >= 32767).any()  # the sensor really clipped
    CInt_kernel = fw("est_twin").kernel_py

    def checked_kernel(S, buf, n, B):
        cb = [CInt(v) for v in buf[: 3 * n]]
        return CInt_kernel(S, cb, n, B)

    E = fw("estimator")
    orig = E.Estimator.__init__

    def init(self, *a, **k):
        orig(self, *a, **k)
        self.S = [CInt(v) for v in self.S]
        self.B = [CInt(0)] * len(self.B)
        self.kernel = checked_kernel
        self.x = [CInt(0)] * 8

    E.Estimator.__init__ = init
    try:
        r = run_golden(sc)  # raises OverflowError on the first out-of-range intermediate
    finally:
        E.Estimator.__init__ = orig
    assert len(r["segments"]) >= 3
    assert any(s[8] & 0x10 for s in r["segments"])  # clipping flagged


@pytest.mark.parametrize("mass_ratio", [0.0, 7.5])  # one-mass and two-mass inverse
def test_per_sample_path_allocates_nothing(tmp_path, mass_ratio):
    sc = make_scenario(iso_class="C", length_m=900, speed_kmh=70, seed=41)
    counts = sc.imu_counts[:10_000].astype("<i2").tobytes()
    (tmp_path / "imu.bin").write_bytes(counts)
    code = f"""
import gc, micropython
from array import array
from rnfw import config, pipeline
cfg = config.defaults()
cfg['mass_ratio'] = {mass_ratio}
cfg['body_hz'] = 1.45
p = pipeline.Pipeline(cfg, 200, 5, 4096)
f = open({str(tmp_path / 'imu.bin')!r}, 'rb')
batch = array('h', bytes(2 * 30))
nbat = 1000
# warm-up pass so every code path has run once
p.gps.fix_valid = True; p.gps.fixes = 1; p.gps.speed_mmps = 19444; p._fix_ms = 0
i = 0
segs = 0
a0 = 0
gc.collect()
a0 = gc.mem_alloc()
micropython.heap_lock()  # any allocation from here on raises MemoryError
while i < nbat:
    f.readinto(batch)  # 10 samples straight from the recording into the batch buffer
    p.feed_imu(batch, 10, 50 * i % 2000)
    if p.est.closed.n:
        segs += 1
        p.est.closed.pop()
    i += 1
micropython.heap_unlock()
print(nbat * 10, segs, gc.mem_alloc() - a0)
"""
    n, segs, delta = map(int, runtime.run_code(code).stdout.split())
    assert n >= 9_990 and segs >= 4 and delta == 0


@pytest.mark.slow
def test_estimate_cli_json_contract(cli, tmp_path):
    f = tmp_path / "d.npz"
    assert cli("scenario", "make", "--iso-class", "B", "--length-m", "500", "--seed", "3", "--feature",
               "pothole@300", "-o", str(f)).returncode == 0
    r = cli("estimate", str(f), "--json", "--set", "min_speed_kmh=10")
    assert r.returncode == 0, r.stderr
    import json

    rows = [json.loads(x) for x in r.stdout.splitlines()]
    segs = [x for x in rows if x["type"] == "segment"]
    summ = rows[-1]
    assert summ["type"] == "summary" and summ["segments"] == len(segs) >= 4
    assert {"start_m", "end_m", "iri_m_per_km", "flags", "samples"} <= set(segs[0])
    assert 1080 < segs[2]["samples"] < 1330  # 100 m at ~60 km/h and 200 Hz = 1200
    assert [s["start_m"] for s in segs] == [100 * i for i in range(len(segs))]
    assert summ["median_abs_err_pct"] < 15
    assert any(x["type"] == "event" and x["kind"] == "pothole" and abs(x["dist_m"] - 300) < 5 for x in rows)
    r = cli("estimate", str(f), "--set", "segment_length_m=5")
    assert r.returncode == 2 and "segment_length_m: 5 is below the minimum 10" in r.stderr


def test_pipeline_runs_across_the_2_30_ms_clock_wrap_without_allocating():
    """The node's millisecond clock wraps at 2^30 (12.4 days; beyond it every ms value would be a
    heap big int on the ESP32): GPS freshness is judged modulo 2^30, so a fix stays fresh across
    the wrap and a lost fix goes stale after it; no pass allocates (heap locked)."""
    code = """
import gc, micropython
from array import array
from rnfw import config, pipeline
p = pipeline.Pipeline(config.defaults(), 200, 5, 4096)
batch = array('h', [0, 0, 4096] * 10)
g = bytearray(8)
p.gps.fix_valid = True; p.gps.fixes = 1; p.gps.speed_mmps = 16000
t0 = 0x3FFFFFFF - 4999  # the wrap falls at pass 100
ok = bytearray(400)
i = now = 0
gc.collect()
a0 = gc.mem_alloc()
micropython.heap_lock()
for i in range(400):
    now = (t0 + 50 * i) & 0x3FFFFFFF
    if i < 90:  # fixes until 0.5 s before the wrap, then the receiver goes quiet
        p.feed_gps(g, 0, now)
    p.feed_imu(batch, 10, now)
    ok[i] = p.gps_ok()
micropython.heap_unlock()
print(gc.mem_alloc() - a0, sum(ok[:90]), sum(ok[90:141]), sum(ok[141:]), p.est.S[10] > 0)
"""
    delta, fresh, grace, stale, moved = runtime.run_code(code).stdout.decode().split()
    assert delta == "0"
    # fresh across the wrap for 2.5 s, then stale (the old code kept it fresh for 12 days)
    assert fresh == "90" and stale == "0", (fresh, grace, stale)
    assert 40 <= int(grace) <= 51 and moved == "True"


BIG_BATCHES = """
import gc, micropython
from array import array
from rnfw import config, estimator
def run(nper):
    e = estimator.Estimator(config.defaults(), 100, 10, %d)
    f = open(%r, 'rb')
    buf = array('h', bytes(2 * 3 * 128))
    iri = array('i', bytes(4 * 64))
    k = 0
    gc.collect()
    a0 = gc.mem_alloc()
    micropython.heap_lock()  # any allocation in add() raises MemoryError
    while True:
        m = f.readinto(buf, 6 * nper)
        if not m:
            break
        e.add(buf, m // 6, 65000, True, 0, 0)  # 65 m/s: 2.6 bins per sample, 333 per batch of 128
        while e.closed.n:
            if k < 64:
                iri[k] = e.closed.buf[e.closed.first() + 4]
                k += 1
            e.closed.pop()
    micropython.heap_unlock()
    print(gc.mem_alloc() - a0, e.index, ' '.join(str(iri[i]) for i in range(k)))
run(128)
run(8)
"""


def test_big_batches_lose_no_bins_and_allocate_nothing(tmp_path):
    """A batch of 128 samples at 100 Hz and 65 m/s makes 333 bins, ten times what the kernel's bin
    buffer holds: the kernel resumes where it stopped, so the segments equal those of the same
    samples fed 8 at a time (the old kernel dropped every bin past 32 with its road height, and a
    "100 m" segment then spanned a kilometre). Runs on MicroPython with the heap locked."""
    sc = make_scenario(iso_class="C", length_m=1500, speed_kmh=200, odr_hz=100, seed=51, start_dwell_s=0.5)
    f = tmp_path / "imu.bin"
    f.write_bytes(np.ascontiguousarray(sc.imu_counts, dtype="<i2").tobytes())
    out = runtime.run_code(BIG_BATCHES % (int(sc.meta["imu"]["lsb_per_g"]), str(f))).stdout.decode().splitlines()
    (d_big, n_big, *big), (d_small, n_small, *small) = (map(int, line.split()) for line in out)
    assert d_big == 0 and d_small == 0  # no allocation per pass
    # the u vector is refreshed once per batch, so the two differ by rounding only
    assert n_big == n_small >= 25 and len(big) == len(small) == n_big
    for a, b in zip(big, small):
        assert a == pytest.approx(b, rel=0.01, abs=2), (big, small)


def test_gravity_tracker_recovers_from_a_first_sample_at_the_rails():
    """The tracker starts on the first sample; if that one reads at the rails (power-up glitch), every
    later sample looks like > 3 g against it and the freeze that protects it from impacts held it
    there for good (IRI 0 until reboot). After ~1 s of continuous "impact" it re-acquires. On
    MicroPython: from the second segment on the node measures as if the glitch had not happened."""
    clean = make_scenario(iso_class="C", length_m=700, speed_kmh=60, seed=21, features=[], start_dwell_s=0.5)
    glitch = make_scenario(iso_class="C", length_m=700, speed_kmh=60, seed=21, features=[], start_dwell_s=0.5)
    glitch.imu_counts = glitch.imu_counts.copy()
    glitch.imu_counts[0] = (32767, -32768, 32767)
    ref = run_firmware(clean)["segments"]
    got = run_firmware(glitch)["segments"]
    assert got[0][8] & 0x10  # the glitch shows as clipping in the first segment
    assert len(got) == len(ref) >= 6
    for a, b in zip(got[1:], ref[1:]):
        assert a[4] == pytest.approx(b[4], rel=0.01), (got, ref)
    s = score([segment_record(t) for t in got[1:]], glitch.segments)
    assert s["scored"] >= 5 and s["median_abs_err_pct"] <= 10 and s["p90_abs_err_pct"] <= 25, s


def _axle_settings(vehicle):
    """The vehicle's wheel-hop frequency and damping, as a fleet operator configures them."""
    from roadnode.models.vehicle import PRESETS

    v = PRESETS[vehicle]
    return {"wheel_hop_hz": round(v.wheel_hop_hz(), 1), "wheel_damping": round(v.cs / (2 * np.sqrt((v.ks + v.kt) * v.mu)), 2)}


@pytest.fixture(scope="module")
def signed_errors(drives):
    """(estimate / truth - 1) of every scored segment over 36 axle drives (classes A-D x sedan/suv/
    van x 40/70/100 km/h, both IMUs) plus the module's drives: the estimate as the user reads it,
    through the packet codec."""
    from roadnode.accuracy.report import UNSCORED

    runs = [(sc, None) for sc in drives]
    for k, (cls, veh, spd) in enumerate((c, v, s) for c in "ABCD" for v in ("sedan", "suv", "van") for s in (40, 70, 100)):
        sc = make_scenario(iso_class=cls, length_m=600, speed_kmh=spd, vehicle=veh, imu=("mpu6050", "icm42688")[k % 2],
                           seed=300 + k)
        runs.append((sc, _axle_settings(veh)))
    errs = []
    for sc, settings in runs:
        for t in run_golden(sc, settings=settings)["segments"]:
            r = segment_record(t)
            if UNSCORED & set(r["flags"]) or r["iri_m_per_km"] is None or t[0] >= len(sc.segments):
                continue
            errs.append(r["iri_m_per_km"] / sc.segments[t[0]]["true_iri_m_per_km"] - 1)
    return np.array(errs)


# measured on this code: median signed error -3.3% over 159 segments (axle estimates read low:
# tyre enveloping, docs/estimator.md); a 4% scale error anywhere in the chain moves it by ~3.9%
BIAS_MEASURED = -0.033
BIAS_TOL = 0.019


def test_median_signed_error_is_tightly_bounded_over_many_segments(signed_errors):
    """|error| bounds let a 0.95-1.15 scale error pass; the signed median over many segments does
    not: x1.04 or x0.96 on the acceleration scale, the Golden Car output or the final IRI fails."""
    e = signed_errors
    bias = float(np.median(e))
    print(f"\nmedian signed error {100 * bias:+.2f}% over {len(e)} segments "
          f"(allowed {100 * (BIAS_MEASURED - BIAS_TOL):+.1f}% to {100 * (BIAS_MEASURED + BIAS_TOL):+.1f}%)")
    assert len(e) >= 150
    assert abs(bias - BIAS_MEASURED) <= BIAS_TOL, bias


# the two-mass inverse (mass_ratio > 0): a vehicle's own settings, as self-calibration finds them
TWO_MASS = {"wheel_hop_hz": 11.9, "wheel_damping": 0.292, "body_hz": 1.26, "mass_ratio": 9.5}  # the sedan preset


def test_two_mass_inverse_firmware_equals_golden_model_bit_for_bit():
    """The kernel's interpolated boundary acceleration and the per-bin body filter, on MicroPython
    (viper) and CPython (twin): the same segments."""
    sc = make_scenario(iso_class="C", length_m=600, speed_kmh=70, seed=31)
    g = run_golden(sc, TWO_MASS)
    assert len(g["segments"]) >= 5
    assert run_firmware(sc, TWO_MASS)["segments"] == g["segments"]
    assert g["segments"] != run_golden(sc)["segments"]  # the inverse is really another


@pytest.mark.parametrize("iso_class, kmh, vehicle", [("C", 90, "sedan"), ("D", 80, "suv")])
def test_two_mass_inverse_fixed_point_follows_float64(iso_class, kmh, vehicle):
    """Fixed point vs the float64 reference of the two-mass inverse: within 0.5% per segment
    (measured <= 0.16% on sedan/truck/van drives at 50-110 km/h), the drive's mean within 0.3%.
    Class D: the damper moves the body's acceleration by tens of m/s^2 per bin there (a clamp at
    4 m/s^2 read 3-6% low)."""
    sc = make_scenario(iso_class=iso_class, length_m=1000, speed_kmh=kmh, vehicle=vehicle, seed=32)
    fx = run_golden(sc, TWO_MASS)["segments"]
    fl = dict(run_golden(sc, TWO_MASS, impl=FloatEstimator)["segments"])
    pairs = [(a[4] / 100, fl[a[0]]) for a in fx[1:] if a[4] != 0xFFFF and fl.get(a[0])]
    assert len(pairs) >= 7
    for a, b in pairs:
        assert a == pytest.approx(b, rel=0.005), (a, b)
    assert sum(a for a, _ in pairs) / sum(b for _, b in pairs) == pytest.approx(1.0, abs=0.003)


def test_two_mass_inverse_with_true_settings_removes_the_vehicle_bias():
    """On the truck, the one-mass inverse with the truck's own wheel hop reads low at every speed
    (body motion not in the model); the two-mass inverse with the truck's settings reads within
    8% at 40 and 90 km/h, and closer to the truth than the one-mass one."""
    from roadnode.models.vehicle import PRESETS

    v = PRESETS["truck"]
    st = {"wheel_hop_hz": 10.0, "wheel_damping": 0.374, "body_hz": round(float(np.sqrt(v.ks / v.ms) / (2 * np.pi)), 2),
          "mass_ratio": round(v.ms / v.mu, 1)}
    for spd, seed in ((40, 33), (90, 34)):
        sc = make_scenario(iso_class="C", length_m=800, speed_kmh=spd, vehicle="truck", seed=seed)
        truth = [t["true_iri_m_per_km"] for t in sc.segments]

        def bias(settings):
            e = [s[4] / 100 / truth[s[0]] - 1 for s in run_golden(sc, settings)["segments"]
                 if not s[8] & 0x87 and s[4] != 0xFFFF and s[0] < len(truth)]
            assert len(e) >= 5
            return float(np.mean(e))

        one, two = bias({**st, "mass_ratio": 0.0}), bias(st)
        assert abs(two) < 0.08 and abs(two) < abs(one), (spd, one, two)


def _true_settings_bias(seed, kind, kmh):
    """Mean signed error of the two-mass inverse with a random vehicle's true settings (class C, 1.5 km)."""
    from roadnode.accuracy.selfcal import true_settings
    from roadnode.models.vehicle import random_vehicle

    v = random_vehicle(seed, kind=kind)
    sc = make_scenario(iso_class="C", length_m=1500, speed_kmh=kmh, vehicle=v, imu="icm42688", seed=seed % 1000)
    truth = [t["true_iri_m_per_km"] for t in sc.segments]
    e = [s[4] / 100 / truth[s[0]] - 1 for s in run_golden(sc, true_settings(v))["segments"][2:]
         if not s[8] & 0x87 and s[4] != 0xFFFF and s[0] < len(truth)]
    assert len(e) >= 10
    return float(np.mean(e))


def test_two_mass_inverse_makes_good_the_boundary_interpolation_at_speed():
    """At 100 km/h the IRI band's short end is at 20 Hz, where the linear interpolation at each
    0.25 m boundary passes ~97% on average: the slope's correction (s - e (s+ - 2s + s-)) lifts
    three vehicles' true-settings mean from -4.1% to -3.2% (measured); floor -3.6%."""
    bias = [_true_settings_bias(seed, kind, 100) for seed, kind in ((500023, "truck"), (500008, "car"), (500021, "suv"))]
    assert float(np.mean(bias)) >= -0.036, bias


def test_two_mass_inverse_reads_any_vehicle_alike_with_its_true_settings():
    """A heavily damped 9 Hz SUV and a lightly damped 15.5 Hz one at 70 km/h, a truck at 60 and
    another at 100 km/h, class C, each with its own settings: all read -5.5..-1.5% (measured
    -3.9..-2.5%: the tyre envelope and the short wavelengths' share, common to all), within 3% of
    each other. The body stepped on its velocities (the damper's wheel-hop share half a bin late)
    read them +6.1, -4.5, +6.1 and +3.8%."""
    bias = [_true_settings_bias(seed, kind, kmh)
            for seed, kind, kmh in ((500013, "suv", 70), (500025, "suv", 70), (500035, "truck", 60), (500023, "truck", 100))]
    assert all(-0.055 <= b <= -0.015 for b in bias), bias
    assert max(bias) - min(bias) <= 0.03, bias
