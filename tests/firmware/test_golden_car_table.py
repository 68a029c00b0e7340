"""The node's Golden Car table is generated, never typed in: the committed firmware file must be
exactly what the generator makes from the host's expm discretisation (which test_iri checks against
the published values)."""

from __future__ import annotations

from roadnode.accuracy import golden_car_table as G
from roadnode.paths import FIRMWARE_DIR
from roadnode.science.iri import golden_car_matrices


def test_committed_table_is_the_generated_one():
    committed = (FIRMWARE_DIR / "rnfw" / "golden_car.py").read_text()
    assert committed == G.render(), "firmware/rnfw/golden_car.py differs: run python -m roadnode.accuracy.golden_car_table"


def test_table_rounds_the_scaled_matrices_to_q16():
    import numpy as np

    from roadnode.mpy.fwimport import fw

    q = fw("golden_car").Q16
    st, pr = golden_car_matrices(0.25)
    t = np.diag(G.SCALE).astype(float)
    exact = np.r_[(np.linalg.inv(t) @ st @ t).ravel(), np.linalg.inv(t) @ pr] * (1 << G.Q)
    assert len(q) == 20 and np.max(np.abs(np.array(q) - exact)) <= 0.5


def test_isqrt_is_the_floor_of_the_root_on_micropython_with_small_ints_only():
    """The node's integer root (gravity magnitude and segment RMS, twice per batch) against
    CPython's math.isqrt, run on MicroPython: exact at and beside every square, across 2^0..2^30."""
    import math
    import random

    from roadnode.mpy import runtime

    rnd = random.Random(9)
    ns = sorted({0, 1, 2, 3, (1 << 30) - 1, 1 << 30}
                | {k * k + d for k in rnd.sample(range(1, 1 << 15), 300) for d in (-1, 0, 1)}
                | {rnd.getrandbits(rnd.randint(1, 30)) for _ in range(1500)})
    out = runtime.run_code("from rnfw.golden_car import isqrt\nfor n in %r:\n    print(isqrt(n))\n" % ns)
    assert [int(x) for x in out.stdout.split()] == [math.isqrt(n) for n in ns]
