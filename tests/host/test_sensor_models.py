"""IMU and GPS models: datasheet behaviour and well-formed, correctly timed NMEA."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from roadnode.errors import InputError
from roadnode.models.geo import destination, distance_m
from roadnode.models.gps import GpsConfig, GpsModel
from roadnode.models.imu import PARTS, ImuConfig, ImuModel

LEVEL = dict(mount_rpy_deg=(0.0, 0.0, 0.0), bias_mg=(0.0, 0.0, 0.0), scale_err=(0.0, 0.0, 0.0))


@pytest.mark.parametrize("part", ["mpu6050", "icm42688"])
def test_level_sensor_at_rest_reads_one_g_with_datasheet_noise(part):
    m = ImuModel(ImuConfig(part=part, range_g=2, odr_hz=200, **LEVEL))
    t = np.arange(0, 60, 0.001)
    tt, c = m.sample(t, np.zeros((len(t), 3)))
    assert c.dtype == np.int16 and len(tt) == 12000 and np.allclose(np.diff(tt), 0.005)
    assert np.mean(c[:, 2]) == pytest.approx(16384, abs=3)
    sigma = PARTS[part].noise_ug_rthz * 1e-6 * np.sqrt(100) * 16384  # counts, ODR/2 band
    assert np.std(c[:, 0]) == pytest.approx(sigma, rel=0.15)


def test_clipping_at_range():
    m = ImuModel(ImuConfig(range_g=2, **LEVEL))
    t = np.arange(0, 2, 0.001)
    acc = np.zeros((len(t), 3))
    acc[:, 2] = 3 * 9.80665  # 4 g total on z
    _, c = m.sample(t, acc)
    assert c[:, 2].max() == 32767


def test_mounting_rotation_moves_gravity():
    m = ImuModel(ImuConfig(range_g=2, mount_rpy_deg=(0.0, 90.0, 0.0), bias_mg=(0, 0, 0), scale_err=(0, 0, 0)))
    t = np.arange(0, 2, 0.001)
    _, c = m.sample(t, np.zeros((len(t), 3)))
    g = c.mean(axis=0) / 16384
    assert abs(abs(g[0]) - 1) < 0.01 and abs(g[2]) < 0.01


def test_anti_alias_filter_attenuates_above_nyquist():
    m = ImuModel(ImuConfig(range_g=16, **LEVEL))
    t = np.arange(0, 5, 0.0005)
    acc = np.zeros((len(t), 3))
    acc[:, 0] = 9.80665 * np.sin(2 * np.pi * 170 * t)  # 1 g at 170 Hz, would alias to 30 Hz
    _, c = m.sample(t, acc)
    # 2nd-order low-pass at ODR/4 = 50 Hz: (50/170)^2 ~ -21 dB; under 10% of 0.707 g rms leaks
    assert np.std(c[200:, 0]) / 2048 < 0.1 * 0.707


def test_gps_sentences_checksum_and_fields_match_truth():
    g = GpsModel(GpsConfig(rate_hz=5, baud=38400, time_to_fix_s=1.0, pos_noise_m=0.0, speed_noise_mps=0.0,
                           dropouts=[(3.0, 4.0)], talker="GN"))
    t = np.arange(0, 6, 0.01)
    lat, lon = destination(48.0, 17.0, 45.0, 15.0 * t)
    out = g.nmea_stream(t, lat, lon, 15.0 + 0 * t, 45.0 + 0 * t)
    byte_s = 10 / 38400
    last_end = 0.0
    for ts, s in out:
        assert ts >= last_end - 1e-9  # bytes never overlap on the wire
        last_end = ts + len(s) * byte_s
        body, star, tail = s[1:].partition(b"*")
        assert s.startswith(b"$GN") and s.endswith(b"\r\n") and star
        x = 0
        for b in body:
            x ^= b
        assert int(tail[:2], 16) == x
        f = body.decode().split(",")
        if f[0] == "GNRMC":
            te = round((ts - 0.02) * 5) / 5
            fixed = 1.0 <= te and not (3.0 <= te < 4.0)
            assert f[2] == ("A" if fixed else "V")
            if fixed:
                la = float(Decimal(f[3][:2]) + Decimal(f[3][2:]) / 60)
                lo = float(Decimal(f[5][:3]) + Decimal(f[5][3:]) / 60)
                assert distance_m(la, lo, np.interp(te, t, lat), np.interp(te, t, lon)) < 0.05
                assert float(f[7]) * 1852 / 3600 == pytest.approx(15.0, abs=0.002)
            else:
                assert f[3] == f[5] == ""


def test_gps_refuses_more_bytes_than_the_baud_rate_carries():
    g = GpsModel(GpsConfig(rate_hz=10, baud=9600))
    t = np.arange(0, 3, 0.01)
    with pytest.raises(InputError, match="baud"):
        g.nmea_stream(t, 48 + 0 * t, 17 + 0 * t, 10 + 0 * t, 0 * t)
