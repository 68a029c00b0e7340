"""Every configuration that validation accepts is 32-bit safe and stable on the ESP32.

On the ESP32 viper ints are 32-bit and wrap silently; plain-Python ints beyond +-2^30 become heap
big ints. The x86-64 unix port hides both (64-bit words and small ints), so the proof is a checked
model: the golden model (rnfw.estimator with the kernels' plain twins) raises on any intermediate
beyond int32 inside the viper kernels (their twins' source rewritten with a range test on every
arithmetic result) or beyond the 31-bit small-int range (everything the node computes in plain
Python, through a checked int type, and every value it reads back from the kernels), driven by
worst-case inputs over the corners of every config range and random configs.
Run with -s to see the count ("0 wraps over N configs")."""

from __future__ import annotations

import ast
import itertools
from array import array

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roadnode.mpy.fwimport import fw
from roadnode.paths import FIRMWARE_DIR

C = fw("config")
E = fw("estimator")
T = fw("est_twin")
G = fw("golden_car")


class Wrap(ArithmeticError):
    pass


def _checked(bits, where):
    lim = 1 << bits

    class Checked(int):
        __slots__ = ()  # no instance dict: the hottest allocation of the suite
        def _c(self, v):
            if not -lim <= v < lim:
                raise Wrap(f"{where}: intermediate {v} beyond {bits + 1}-bit signed range")
            return Checked(v)

    def make(name):
        base = getattr(int, name)

        def op(self, other):  # the hottest code of the suite: int's own method on the subclass, one range test
            v = base(self, other)
            if v is NotImplemented or type(v) is not int:
                return v
            if -lim <= v < lim:
                return Checked(v)
            raise Wrap(f"{where}: intermediate {v} beyond {bits + 1}-bit signed range")

        return op

    for o in ("add", "sub", "mul", "floordiv", "mod", "lshift", "rshift", "and", "or", "xor"):
        for n in (f"__{o}__", f"__r{o}__"):
            setattr(Checked, n, make(n))
    Checked.__neg__ = lambda self: self._c(-int(self))
    Checked.__abs__ = lambda self: self._c(abs(int(self)))
    Checked.__pos__ = lambda self: self
    return Checked


I32 = _checked(31, "viper kernel (int32)")  # machine words inside @micropython.viper
I31 = _checked(30, "plain Python on the ESP32 (31-bit small int)")


# The kernels' twins (rnfw.est_twin) are where nearly all the arithmetic is; checked ints there made
# every operation build an int subclass (~0.6 us). Instead the twins' source is rewritten: every
# arithmetic result inside a function (binary ops, augmented assignments, negation, abs) is tested
# against the int32 range inline, where it is made, so a wrap raises with its line.
_ARITH = (ast.Add, ast.Sub, ast.Mult, ast.FloorDiv, ast.Mod, ast.LShift, ast.RShift, ast.BitAnd, ast.BitOr,
          ast.BitXor)


def _wrap32(v, line):
    raise Wrap(f"viper kernel (int32), est_twin.py line {line}: intermediate {v} beyond 32-bit signed range")


class _Int32Checks(ast.NodeTransformer):
    """Wraps each arithmetic result e as (t if -2^31 <= (t := e) < 2^31 else _wrap32(t, line))."""

    def _check(self, node, line):
        t = "_i32_t"
        test = ast.Compare(left=ast.Constant(-(1 << 31)), ops=[ast.LtE(), ast.Lt()],
                           comparators=[ast.NamedExpr(target=ast.Name(t, ast.Store()), value=node), ast.Constant(1 << 31)])
        bad = ast.Call(func=ast.Name("_wrap32", ast.Load()), args=[ast.Name(t, ast.Load()), ast.Constant(line)], keywords=[])
        return ast.IfExp(test=test, body=ast.Name(t, ast.Load()), orelse=bad)

    def visit_BinOp(self, node):
        self.generic_visit(node)
        return self._check(node, node.lineno) if isinstance(node.op, _ARITH) else node

    def visit_UnaryOp(self, node):
        self.generic_visit(node)
        return self._check(node, node.lineno) if isinstance(node.op, ast.USub) else node

    def visit_Call(self, node):
        self.generic_visit(node)
        return self._check(node, node.lineno) if isinstance(node.func, ast.Name) and node.func.id == "abs" else node

    def visit_AugAssign(self, node):  # x op= e  ->  x = checked(x op e)
        self.generic_visit(node)
        load = ast.fix_missing_locations(ast.parse(ast.unparse(node.target), mode="eval").body)
        value = self._check(ast.BinOp(left=load, op=node.op, right=node.value), node.lineno)
        return ast.Assign(targets=[node.target], value=value, lineno=node.lineno)


def _int32_twin():
    """rnfw.est_twin with every arithmetic result checked against int32 (its functions call each
    other's checked versions: one namespace)."""
    path = FIRMWARE_DIR / "rnfw" / "est_twin.py"
    tree = ast.parse(path.read_text())
    for f in tree.body:  # the functions only: module constants are not computed per call
        if isinstance(f, ast.FunctionDef):
            _Int32Checks().visit(f)
    ns = dict(vars(T))
    ns["_wrap32"] = _wrap32
    exec(compile(ast.fix_missing_locations(tree), str(path), "exec"), ns)  # noqa: S102 - the firmware's own source
    return ns


T32 = _int32_twin()


def _small(v, what):
    if not -(1 << 30) <= v < (1 << 30):
        raise Wrap(f"{what} = {v}: read back into plain Python it is a big int on the ESP32")
    return I31(v)


def _kernel(S, buf, n, B):
    S32 = [int(v) for v in S]
    B32 = [int(v) for v in B]
    nb = T32["kernel_py"](S32, [int(v) for v in buf[: 3 * n]], n, B32)
    for i, v in enumerate(S32):
        S[i] = _small(v, f"kernel state S[{i}]")
    for i in range(4 * nb):
        B[i] = _small(B32[i], f"kernel bin value B[{i}]")
    return _small(nb, "nb")


def _bins(S, B, nb, x, c):
    S32 = [int(v) for v in S]
    x32 = [int(v) for v in x]
    r = T32["bins_py"](S32, [int(v) for v in B[: 4 * nb]], nb, x32, [int(v) for v in c])
    for i, v in enumerate(S32):
        S[i] = _small(v, f"bins state S[{i}]")
    for i in range(8):
        x[i] = _small(x32[i], f"Golden Car state x[{i}]")
    return _small(r, "bins")


def checked_estimator(cfg, period_ms, lsb):
    """The firmware's Estimator (built with plain ints: __init__ runs once at boot), then every int
    it holds made a checked int, and its kernels swapped for the checked twins."""
    est = E.Estimator(cfg, 1000 // period_ms, period_ms, lsb)
    for k, v in list(vars(est).items()):
        if type(v) is int:
            setattr(est, k, I31(v))
        elif isinstance(v, array):
            setattr(est, k, [I31(x) for x in v])
    est.kernel = _kernel
    est.bins = _bins
    return est


def _signal(period_ms, lsb, cfg, rng_seed):
    """Worst cases, as (samples, speed mm/s, lost) batches: the sensor at its rails from the very
    first sample (gravity tracker dragged to the rail, then the opposite rail), steps held until
    every integrator saturates, full-scale square waves at the body and wheel-hop resonances,
    full-scale noise; speeds from 0 to beyond the 65 m/s clamp, a FIFO gap."""
    import random

    rnd = random.Random(rng_seed)
    hi, lo = 32767, -32768
    odr = 1000 // period_ms
    seq = [(hi, hi, hi)] * 30 + [(lo, lo, lo)] * 150 + [(hi, hi, hi)] * 150 + [(lo, lo, hi)] * 40
    seq += [(0, 0, lsb)] * 20
    for f in (cfg["body_hz"], cfg["wheel_hop_hz"]):
        half = max(1, int(odr / (2 * f)))
        n = min(200, max(4 * half, 40))
        seq += [(0, 0, hi if (k // half) % 2 else lo) for k in range(n)]
    seq += [(rnd.randint(lo, hi), rnd.randint(lo, hi), rnd.randint(lo, hi)) for _ in range(60)]
    seq += [(0, 0, lsb + (hi - lsb if k % 2 else -lsb)) for k in range(40)]
    speeds = [70000, 65000, 0, 300, cfg["min_speed_kmh"] * 10000 // 36, 15300, 40000]
    out = []
    k = 0
    b = 0
    while k < len(seq):
        n = (64, 128, 5, 1)[b % 4]
        chunk = seq[k : k + n]
        k += n
        spd = speeds[b % len(speeds)] if b > 3 else 70000
        lost = 5000 if b == 9 else 0
        out.append((chunk, spd, lost))
        b += 1
    return out


def run_checked(cfg, period_ms, lsb, seed=0):
    est = checked_estimator(cfg, period_ms, lsb)
    buf = array("h", bytes(2 * 3 * 128))
    closed = 0
    for b, (chunk, spd, lost) in enumerate(_signal(period_ms, lsb, cfg, seed)):
        for j, (x, y, z) in enumerate(chunk):
            buf[3 * j], buf[3 * j + 1], buf[3 * j + 2] = x, y, z
        est.add(buf, len(chunk), I31(spd), b % 13 != 5, 481485940, 171104338, I31(lost), b == 11)
        while est.closed.n:
            est.iri_cmkm()
            est.closed.pop()
            closed += 1
        while est.events.n:
            est.events.pop()
    # close the segment in progress as the node would at its end, and evaluate its IRI path
    est._close()
    return closed + 1


# the keys the estimator's arithmetic depends on, at the ends of their accepted ranges
_S = C.schema()
_CORNER_KEYS = ("segment_length_m", "min_speed_kmh", "bump_height_mm", "bump_threshold_g")
_AXLE_KEYS = ("wheel_hop_hz", "wheel_damping", "mass_ratio", "body_hz")  # body_hz: the two-mass inverse
_BODY_KEYS = ("body_hz", "body_damping", "body_gain", "body_speed_exp")
_TIMING = [(p, lsb) for p in (1, 10) for lsb in (16384, 2048)]  # 1 kHz / 100 Hz, +-2 g / +-16 g


def _ends(k):
    return (_S[k][2], _S[k][3])


def corner_configs():
    for mount, keys in (("axle", _AXLE_KEYS), ("body", _BODY_KEYS)):
        ks = _CORNER_KEYS + keys
        for vals in itertools.product(*(_ends(k) for k in ks)):
            d = dict(zip(ks, vals))
            d["mount"] = mount
            d["pothole_threshold_g"] = max(d["bump_threshold_g"], _S["pothole_threshold_g"][2])
            yield C.validate(d)


def test_checked_model_catches_a_wrap():
    """The checker is real: an int32 overflow in the kernel raises."""
    with pytest.raises(Wrap):
        I32(1 << 20) * I32(1 << 12)
    with pytest.raises(Wrap):
        I31(1 << 29) + I31(1 << 29)
    x, c = [1 << 20] + [0] * 7, [1 << 22] + [0] * 19  # c * (x >> 10) = 2^32 inside the Golden Car step
    T.gc_step_py(list(x), c, 0)  # plain Python: no complaint
    with pytest.raises(Wrap, match="line"):
        T32["gc_step_py"](list(x), c, 0)


def test_the_checked_twins_compute_what_the_twins_compute():
    """The rewrite adds checks and nothing else: the same drive through the plain twins and the
    checked ones leaves the same kernel state, bins and Golden Car state."""
    import random

    cfg = C.validate({"mount": "axle", "mass_ratio": 6.0, "body_hz": 1.4})
    outs = []
    for twin in (vars(T), T32):
        est = E.Estimator(cfg, 200, 5, 16384)
        est.kernel = lambda S, buf, n, B, k=twin["kernel_py"]: k(S, buf, n, B)
        est.bins = lambda S, B, nb, x, c, b=twin["bins_py"]: b(S, B, nb, x, c)
        rnd = random.Random(4)
        buf = array("h", bytes(2 * 3 * 64))
        segs = []
        for b in range(400):
            for j in range(64):
                buf[3 * j], buf[3 * j + 1], buf[3 * j + 2] = (rnd.randint(-900, 900), rnd.randint(-900, 900),
                                                             16384 + rnd.randint(-6000, 6000))
            est.add(buf, 64, 15000 + 40 * b, True, 481485940, 171104338, 0, False)
            while est.closed.n:
                segs.append(est.iri_cmkm())
                est.closed.pop()
        outs.append((segs, list(est.S), list(est.x)))
    assert outs[0][0] and outs[0] == outs[1]


# one test per mount and timing (8 of them), so the parallel runner spreads the 1,280 checked drives
@pytest.mark.slow
@pytest.mark.parametrize("period_ms,lsb", _TIMING)
@pytest.mark.parametrize("mount", ["axle", "body"])
def test_zero_wraps_over_every_corner_of_the_config_ranges(mount, period_ms, lsb):
    n = 0
    failures = []
    for cfg in corner_configs():
        if cfg["mount"] != mount:
            continue
        try:
            run_checked(cfg, period_ms, lsb)
        except Wrap as e:
            failures.append((period_ms, lsb, {k: cfg[k] for k in _CORNER_KEYS + _AXLE_KEYS + _BODY_KEYS + ("mount",)}, str(e)))
        n += 1
    print(f"\n{len(failures)} wraps over {n} {mount} configs (every corner) at {1000 // period_ms} Hz, 1 g = {lsb} LSB")
    assert not failures, failures[:5]
    assert n == 2 ** (len(_CORNER_KEYS) + len(_AXLE_KEYS if mount == "axle" else _BODY_KEYS))


def _cfg_strategy():
    def val(k):
        typ, _, lo, hi, _ = _S[k]
        return st.integers(lo, hi) if typ == "int" else st.floats(lo, hi, allow_nan=False)

    keys = _CORNER_KEYS + _AXLE_KEYS + _BODY_KEYS + ("pothole_threshold_g",)
    return st.fixed_dictionaries({k: val(k) for k in keys}, optional={"mount": st.sampled_from(C.schema()["mount"][3])})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(d=_cfg_strategy(), period_ms=st.sampled_from([1, 2, 3, 4, 5, 10]), lsb=st.sampled_from([16384, 8192, 4096, 2048]),
       seed=st.integers(0, 1000))
def test_zero_wraps_on_random_accepted_configs(d, period_ms, lsb, seed):
    d["pothole_threshold_g"] = max(d["pothole_threshold_g"], d["bump_threshold_g"])
    run_checked(C.validate(d), period_ms, lsb, seed)


@pytest.mark.parametrize("period_ms", [1, 2, 5, 10])
def test_body_filter_is_stable_for_every_accepted_config(period_ms):
    """The body-mount low-pass q += alpha (u - q): pole 1 - alpha/4096 must lie in [0, 1) for every
    body_hz x body_damping the schema accepts (at 100 Hz, 4 Hz with damping 0.05 put it at -1.5)."""
    lo_f, hi_f = _ends("body_hz")
    lo_z, hi_z = _ends("body_damping")
    worst = 0
    for f10 in range(int(lo_f * 10), int(hi_f * 10) + 1):
        for z100 in range(int(lo_z * 100), int(hi_z * 100) + 1):
            cfg = C.validate({"mount": "body", "body_hz": f10 / 10, "body_damping": z100 / 100})
            est = E.Estimator(cfg, 1000 // period_ms, period_ms, 4096)
            alpha = est.S[E._ALPHA]
            assert 0 < alpha <= 4096, (f10, z100, alpha)
            worst = max(worst, alpha)
            # and |a * cb| fits: q stays within +-2^29 nm
            assert est.S[E._ABMAX] * est.S[E._CB] < 1 << 29
    # impulse response over a long run stays bounded and decays (the worst-case corner)
    cfg = C.validate({"mount": "body", "body_hz": hi_f, "body_damping": lo_z})
    est = E.Estimator(cfg, 1000 // period_ms, period_ms, 4096)
    S, n = est.S, 0
    q, alpha, peak = 1 << 28, S[E._ALPHA], 0
    for _ in range(5000):
        dq = 0 - q
        q += (dq >> 12) * alpha + (((dq & 4095) * alpha) >> 12)
        peak = max(peak, abs(q))
        n += 1
    assert peak <= 1 << 28 and abs(q) < 1 << 20


def _consts_beyond_small_int(path):
    """Integer constants (literals and folded constant expressions) outside the 31-bit small-int
    range in functions the node runs per pass (not __init__: once, at boot)."""
    tree = ast.parse(path.read_text())
    bad = []

    def const_value(node):
        try:
            return ast.literal_eval(node) if isinstance(node, ast.Constant) else eval(  # noqa: S307
                compile(ast.Expression(node), "<c>", "eval"), {"__builtins__": {}})
        except Exception:
            return None

    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef) or fn.name == "__init__":
            continue
        for node in ast.walk(fn):
            if isinstance(node, (ast.Constant, ast.BinOp)):
                v = const_value(node)
                if isinstance(v, int) and not isinstance(v, bool) and not -(1 << 30) <= v < (1 << 30):
                    bad.append((fn.name, node.lineno, v))
    return bad


@pytest.mark.parametrize("name", ["estimator.py", "pipeline.py", "golden_car.py"])
def test_no_big_int_constants_in_the_per_pass_python(name):
    """e.g. (1 << 30) // step in Estimator.add was a heap big int on the ESP32 in every batch (the
    64-bit unix port cannot show it)."""
    assert _consts_beyond_small_int(FIRMWARE_DIR / "rnfw" / name) == []
