"""Property-based fuzzing of the file readers: whatever the bytes, a reader returns data or raises
InputError (the CLI's one-line exit 2), never anything else. Bounded so the module runs in seconds."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from roadnode.errors import InputError
from roadnode.packets import decode_packet, read_packets
from roadnode.scenario import load_scenario, make_scenario, save_scenario
from roadnode.science.iri import compute_iri
from roadnode.science.profile_io import read_profile

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _only_input_errors(fn, *a, **kw):
    try:
        return fn(*a, **kw)
    except InputError as e:
        assert str(e).strip(), "an InputError says what is wrong"
        return None


# profiles: text that looks like numbers, separators, headers, ERD headers, junk
_num = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-10**12, 10**12).map(str),
                 st.sampled_from(["", "nan", "1e309", "-0", "0x10", "1,5", "１", "∞", "ERD", "END", "="]))
_row = st.lists(_num, min_size=0, max_size=4).flatmap(
    lambda xs: st.sampled_from([" ", ",", ";", "\t"]).map(lambda sep: sep.join(xs)))
_profile_text = st.one_of(
    st.lists(_row, max_size=40).map("\n".join),
    st.lists(_row, max_size=20).map(lambda rows: "ERD-FILE\n" + "\n".join(rows)),
    st.text(max_size=300),
)


@FUZZ
@given(text=_profile_text)
def test_profile_reader_only_raises_input_error(tmp_path, text):
    f = tmp_path / "p.txt"
    f.write_text(text, encoding="utf-8")
    prof = _only_input_errors(read_profile, f)
    if prof is not None:  # and what it read can be scored or refused, nothing else
        _only_input_errors(compute_iri, prof.distance_m, prof.elevation_m, segment_m=10.0)


@FUZZ
@given(data=st.binary(max_size=400))
def test_profile_reader_on_bytes(tmp_path, data):
    f = tmp_path / "p.bin"
    f.write_bytes(data)
    _only_input_errors(read_profile, f)


@FUZZ
@given(d=st.lists(st.floats(-1e12, 1e12), min_size=3, max_size=60, unique=True),
       seg=st.floats(1e-12, 1e12))
def test_iri_on_any_distances_is_bounded(d, seg):
    """Huge gaps, huge spans, tiny segments: a result or a refusal, never a giant allocation."""
    d = np.sort(np.array(d))
    z = np.zeros_like(d)
    _only_input_errors(compute_iri, d, z, segment_m=seg)


# hex strings and captures
_hexish = st.text(alphabet="0123456789abcdefABCDEF :,-\n#xyz", max_size=600)


@FUZZ
@given(s=_hexish)
def test_hex_argument_only_raises_input_error(s):
    packets = _only_input_errors(read_packets, s)
    for p in packets or []:
        r = decode_packet(p)  # a bad packet is a row of type "error", not an exception
        assert isinstance(r, dict) and "type" in r


@FUZZ
@given(data=st.one_of(st.binary(max_size=600), _hexish.map(str.encode)))
def test_capture_file_only_raises_input_error(tmp_path, data):
    f = tmp_path / "cap.bin"
    f.write_bytes(data)
    packets = _only_input_errors(read_packets, str(f))
    for p in packets or []:
        r = decode_packet(p)
        assert isinstance(r, dict) and "type" in r


# scenarios: a valid file with bytes flipped, cut, or members replaced
@pytest.fixture(scope="module")
def scenario_bytes(tmp_path_factory):
    p = tmp_path_factory.mktemp("sc") / "s.npz"
    save_scenario(make_scenario(iso_class="B", length_m=40, speed_kmh=40, seed=2), p)
    return p.read_bytes()


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 7)), min_size=1, max_size=6),
       cut=st.one_of(st.none(), st.integers(0, 10**9)))
@example(flips=[(814, 1)], cut=None)  # a bit in an array's header: numpy's parser raised TokenError
def test_scenario_loader_on_damaged_files(tmp_path, scenario_bytes, flips, cut):
    b = bytearray(scenario_bytes)
    for pos, bit in flips:
        b[pos % len(b)] ^= 1 << bit
    if cut is not None:
        b = b[: cut % len(b)]
    f = tmp_path / "d.npz"
    f.write_bytes(bytes(b))
    _only_input_errors(load_scenario, f)


@FUZZ
@given(member=st.sampled_from(["meta.npy", "imu_counts.npy", "gps_offsets.npy", "imu_t_s.npy", "seg_true_iri.npy"]),
       arr=st.one_of(
           st.lists(st.floats(allow_nan=True), max_size=8).map(lambda v: np.array(v, dtype=float)),
           st.lists(st.integers(-2**40, 2**40), max_size=8).map(np.array),
           st.binary(max_size=40).map(lambda b: np.frombuffer(b, dtype=np.uint8)),
       ))
def test_scenario_loader_on_replaced_arrays(tmp_path, scenario_bytes, member, arr):
    """Well-formed zip and .npy members whose content disagrees with the rest of the scenario."""
    src = zipfile.ZipFile(io.BytesIO(scenario_bytes))
    f = tmp_path / "r.npz"
    with zipfile.ZipFile(f, "w") as out:
        for info in src.infolist():
            if info.filename == member:
                buf = io.BytesIO()
                np.save(buf, arr, allow_pickle=False)
                out.writestr(info.filename, buf.getvalue())
            else:
                out.writestr(info, src.read(info))
    sc = _only_input_errors(load_scenario, f)
    if sc is not None:  # accepted only if it still holds together
        assert sc.imu_counts.shape == (len(sc.imu_t_s), 3) and sc.imu_counts.dtype == np.int16
        assert len(sc.gps_offsets) == len(sc.gps_t_s) + 1 and sc.gps_offsets[-1] == len(sc.gps_bytes)
        assert np.all(np.diff(sc.gps_offsets) >= 0) and np.all(np.diff(sc.imu_t_s) > 0)
        assert len(sc.seg_true_iri) == len(sc.seg_start_m)
