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
