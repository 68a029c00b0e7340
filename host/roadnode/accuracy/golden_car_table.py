"""Generate firmware/rnfw/golden_car.py: the Golden Car at 0.25 m in Q16 with a balanced state
scaling, computed from the same expm discretisation as roadnode.science.iri (never typed in).

States are scaled x~ = T^-1 x with T = diag(1, 8, 1, 64) so that every coefficient lies within
+-2 and none is tiny (balancing |ST[i][j]| against |ST[j][i]|); z1 and z3 keep their units, so the
rectified slope |z1 - z3| needs no rescaling. `python -m roadnode.accuracy.golden_car_table`
rewrites the file's table; tests check that the committed table matches.
"""

from __future__ import annotations

import re

import numpy as np

from roadnode.paths import FIRMWARE_DIR
from roadnode.science.iri import golden_car_matrices

SCALE = (1, 8, 1, 64)
Q = 16


def coefficients() -> list[int]:
    """The Golden Car's ST and PR at 0.25 m in Q16 with the balanced state scaling (20 ints)."""
    st, pr = golden_car_matrices(0.25)
    t = np.diag(SCALE).astype(float)
    ti = np.linalg.inv(t)
    sts = ti @ st @ t
    prs = ti @ pr
    return [int(round(v * (1 << Q))) for v in np.r_[sts.ravel(), prs]]


FILE = FIRMWARE_DIR / "rnfw" / "golden_car.py"
_TABLE = re.compile(r"Q16 = \(\n.*?\n\)\n", re.S)


def render(text: str | None = None) -> str:
    """firmware/rnfw/golden_car.py with its Q16 table computed here (the test holds the file to it).
    Only the table is generated: the file's integer helpers (wheel_w2, isqrt, ...) are written there."""
    text = FILE.read_text() if text is None else text
    c = coefficients()
    rows = ",\n    ".join(", ".join(str(v) for v in c[i : i + 4]) for i in range(0, 20, 4))
    text, n = _TABLE.subn(lambda _: f"Q16 = (\n    {rows},\n)\n", text, count=1)
    if not n:
        raise ValueError(f"{FILE}: no 'Q16 = (...)' table to rewrite")
    return text


def main():
    """Regenerate firmware/rnfw/golden_car.py from the Golden Car matrices."""
    FILE.write_text(render())


if __name__ == "__main__":
    main()
