"""ISO 8608 roads, discrete features and the quarter-car vehicle models: physical checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import signal

from roadnode.errors import InputError
from roadnode.models.vehicle import PRESETS, VehicleParams, envelope, load_vehicle, quarter_car_ss, simulate_quarter_car
from roadnode.science.iri import compute_iri
from roadnode.science.roads import ISO_CLASSES, apply_features, iso8608_profile, parse_feature


@pytest.mark.parametrize("cls", "ABCD")
def test_class_mean_iri_matches_rule_of_thumb(cls):
    expect = 0.543 * np.sqrt(ISO_CLASSES[cls] / 1e-6)
    for seed in (0, 1, 2):
        x, z = iso8608_profile(1000.0, dx=0.05, iso_class=cls, seed=seed)
        assert compute_iri(x, z).iri_m_per_km == pytest.approx(expect, rel=0.10)


def test_psd_follows_iso_slope_and_level():
    x, z = iso8608_profile(4000.0, dx=0.05, iso_class="C", seed=4)
    f, p = signal.welch(z, fs=1 / 0.05, nperseg=8192)  # one-sided PSD in m^2/(cycle/m) = m^3
    band = (f > 0.05) & (f < 2.0)
    slope, icpt = np.polyfit(np.log(f[band]), np.log(p[band]), 1)
    assert slope == pytest.approx(-2.0, abs=0.15)
    gd_n0 = np.exp(icpt + slope * np.log(0.1))
    assert gd_n0 == pytest.approx(ISO_CLASSES["C"], rel=0.25)


def test_profile_is_deterministic_per_seed():
    a = iso8608_profile(200, iso_class="B", seed=9)[1]
    assert np.array_equal(a, iso8608_profile(200, iso_class="B", seed=9)[1])
    assert not np.array_equal(a, iso8608_profile(200, iso_class="B", seed=10)[1])


def test_features_at_their_positions():
    x = np.arange(0, 100, 0.01)
    z = apply_features(x, np.zeros_like(x), [parse_feature("bump@20:len=3.7,h=0.075"), parse_feature("pothole@60")])
    assert x[np.argmax(z)] == pytest.approx(20 + 3.7 / 2, abs=0.02)
    assert z.max() == pytest.approx(0.075, abs=1e-4)
    assert z.min() == pytest.approx(-0.05) and 60 <= x[np.argmin(z)] <= 60.6
    assert np.all(z[(x < 19.99) | ((x > 23.71) & (x < 59.99)) | (x > 60.61)] == 0)


@pytest.mark.parametrize("spec, msg", [("hole@3", "unknown feature"), ("bump@x", "expected KIND@POSITION"),
                                       ("bump@3:w=1", "unknown option"), ("bump@3:h=9", "height")])
def test_bad_feature_specs(spec, msg):
    with pytest.raises(InputError, match=msg):
        parse_feature(spec)


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_are_realistic_and_not_the_golden_car(name):
    v = PRESETS[name]
    assert 0.9 <= v.body_hz() <= 1.8
    assert 8 <= v.wheel_hop_hz() <= 16
    assert 0.2 <= v.damping_ratio() <= 0.45
    # Golden Car: k1 = 653, k2 = 63.3 s^-2 per unit sprung mass
    ratios = np.array([v.kt / v.ms, v.ks / v.ms, v.cs / v.ms, v.mu / v.ms])
    golden = np.array([653.0, 63.3, 6.0, 0.15])
    assert np.max(np.abs(ratios / golden - 1)) > 0.15


def test_flat_road_gives_zero_acceleration():
    x = np.arange(0, 500, 0.01)
    t = np.arange(0, 20, 0.001)
    out = simulate_quarter_car(PRESETS["suv"], x, 3.0 + 0 * x, t, 20 * t)
    assert np.max(np.abs(out["axle_acc"])) < 1e-9 and np.max(np.abs(out["body_acc"])) < 1e-9


@pytest.mark.parametrize("freq", [1.2, 5.0, 12.0])
def test_steady_state_matches_transfer_function(freq):
    v = VehicleParams(**{**PRESETS["sedan"].as_dict(), "tyre_radius_m": 0.15, "tyre_contact_m": 0.02})
    speed = 20.0
    wl = speed / freq
    x = np.arange(0, 3000, 0.01)
    z = 1e-3 * np.sin(2 * np.pi * x / wl)
    t = np.arange(0, 120, 0.0005)
    out = simulate_quarter_car(v, x, z, t, speed * t)
    a, b, c, d = quarter_car_ss(v)
    h = (c @ np.linalg.solve(2j * np.pi * freq * np.eye(4) - a, b) + d)[:, 0]
    tail = slice(-40000, None)
    assert np.ptp(out["body_acc"][tail]) / 2 == pytest.approx(abs(h[0]) * 1e-3, rel=0.01)
    assert np.ptp(out["axle_acc"][tail]) / 2 == pytest.approx(abs(h[1]) * 1e-3, rel=0.01)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_car_settles_on_a_raised_road_at_the_road_s_height(name):
    """Physics, not the model's own matrices: after a gentle 5 cm rise the springs are at rest again,
    so body and axle stand 5 cm higher and accelerate no more; and at a frequency far below the body
    mode the body follows the road (|H| ~ 1). A force put on the wrong state breaks both."""
    x = np.arange(0, 2000, 0.01)
    z = 0.05 / (1 + np.exp(-(x - 100) / 2.0))  # a smooth 5 cm rise at 100 m
    t = np.arange(0, 60, 0.001)
    out = simulate_quarter_car(PRESETS[name], x, z, t, 20 * t)
    tail = slice(-5000, None)
    assert np.allclose(out["body_z"][tail], 0.05, atol=5e-4) and np.allclose(out["axle_z"][tail], 0.05, atol=5e-4)
    assert np.max(np.abs(out["body_acc"][tail])) < 1e-3 and np.max(np.abs(out["axle_acc"][tail])) < 1e-3


def test_tyre_bridges_narrow_gaps_but_not_long_bumps():
    x = np.arange(0, 20, 0.005)
    joint = apply_features(x, 0 * x, [parse_feature("joint@10:len=0.05,h=0.02")])
    hump = apply_features(x, 0 * x, [parse_feature("bump@8:len=3.7,h=0.075")])
    v = PRESETS["sedan"]
    assert envelope(x, joint, v.tyre_radius_m, v.tyre_contact_m).min() > -0.2 * 0.02
    assert envelope(x, hump, v.tyre_radius_m, v.tyre_contact_m).max() == pytest.approx(0.075, rel=0.02)


def test_vehicle_json(tmp_path):
    f = tmp_path / "car.json"
    f.write_text(json.dumps({"base": "sedan", "ms": 420.0, "name": "my-car"}))
    v = load_vehicle(str(f))
    assert v.ms == 420.0 and v.kt == PRESETS["sedan"].kt and v.name == "my-car"
    f.write_text(json.dumps({"base": "sedan", "mass": 1}))
    with pytest.raises(InputError, match="unknown key 'mass'"):
        load_vehicle(str(f))
    f.write_text(json.dumps({"ms": 400}))
    with pytest.raises(InputError, match="missing key"):
        load_vehicle(str(f))
    f.write_text(json.dumps({"base": "van", "ks": -5}))
    with pytest.raises(InputError, match="ks = -5 is outside"):
        load_vehicle(str(f))
    with pytest.raises(InputError, match="unknown vehicle"):
        load_vehicle("spaceship")
