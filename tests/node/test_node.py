"""The firmware's main loop on MicroPython (ESP32 heap for the firmware), on simulated hardware
fed by scenario tapes: packets, heartbeats, config fallback, IMU faults and the watchdog."""

from __future__ import annotations

import numpy as np
import pytest

from roadnode.mpy.runtime import ESP32_HEAP
from roadnode.scenario import make_scenario
from roadnode.sim.offline import run_scenario


@pytest.fixture(scope="module")
def drive():
    return make_scenario(iso_class="C", length_m=500, speed_kmh=60, seed=11)


@pytest.fixture(scope="module")
def run(drive):
    return run_scenario(drive, settings={"heartbeat_s": 10, "device_id": 4242})


def _by(r, t):
    return [p for p in r["packets"] if p["type"] == t]


def test_segments_close_in_order_with_iri_and_rms(drive, run):
    assert not [p for p in run["packets"] if p["type"] == "error"]
    segs = _by(run, "segment")
    assert [s["seg_index"] for s in segs] == list(range(len(segs))) and len(segs) >= 4
    truth = drive.segments
    for s in segs[1:]:  # the first one holds the start from rest, flagged
        assert s["iri_m_per_km"] == pytest.approx(truth[s["seg_index"]]["true_iri_m_per_km"], rel=0.25)
    assert all(s["device_id"] == 4242 and s["segment_length_m"] == 100 for s in segs)
    assert "gps_lost" in segs[0]["flags"]  # no fix for the first seconds
    # RMS of vertical acceleration against the truth for the same stretch of road
    pos, acc = drive.truth_pos_m, drive.truth_vert_acc / 9.80665
    for s in segs[1:]:
        m = (pos >= s["start_m"]) & (pos < s["end_m"])
        true_rms = float(np.sqrt(np.mean(acc[m] ** 2)))
        assert s["rms_g"] == pytest.approx(true_rms, rel=0.25), s
        assert s["speed_kmh"] == pytest.approx(60, abs=6)
        assert abs(s["lat"] - 48.1486) < 0.01


def test_heartbeats_carry_vitals(run):
    hb = _by(run, "status")
    assert hb[0]["uptime_s"] == 0 and hb[0]["reset_reason"] == "power_on"
    ups = [h["uptime_s"] for h in hb]
    assert ups == list(range(0, 10 * len(hb), 10))
    last = hb[-1]
    assert last["gps_fix"] == 1 and last["gps_sats"] == 9 and last["supply_mv"] == 14200
    assert last["packets_sent"] >= 4 and last["fifo_overflows"] == 0 and last["i2c_errors"] == 0
    assert last["config_fallback"] is False and "wdt_armed" in last["flags"]


def test_peak_heap_of_the_firmware_under_60_percent(run):
    h = run["heap"]
    assert h["sim"] < h["total"] - ESP32_HEAP + 1024  # the simulation stays within its allowance
    firmware_peak = h["total"] - h["min_free"] - h["sim"]
    print(f"\nfirmware live heap while measuring: {firmware_peak} B = {100 * firmware_peak / ESP32_HEAP:.1f}% of {ESP32_HEAP}")
    assert firmware_peak < 0.60 * ESP32_HEAP, firmware_peak


def test_half_written_config_falls_back_and_is_flagged(drive):
    r = run_scenario(drive, settings={"heartbeat_s": 10}, config_text='{"segment_length_m": 2')
    hb = _by(r, "status")
    assert hb and all(h["config_fallback"] for h in hb)
    assert len(_by(r, "segment")) >= 4  # and it kept measuring, on defaults


def test_imu_nack_is_survived_and_counted(drive):
    r = run_scenario(drive, settings={"heartbeat_s": 10}, faults={"imu_nack": 12_000_000})
    hb = _by(r, "status")
    assert hb[-1]["i2c_errors"] > 0 and "watchdog" not in r["stderr"]
    # seen while it lasts (the NACKs end 12 s after power-on, on the board's clock; heartbeats count
    # from the node's start, which a loaded host's CPU charge can put a few seconds later), then recovered
    assert any("imu_fault" in h["flags"] for h in hb[:2]) and "imu_fault" not in hb[-1]["flags"]
    segs = _by(r, "segment")
    assert [s["seg_index"] for s in segs] == list(range(len(segs))) and len(segs) >= 4
    assert "imu_fault" in segs[0]["flags"] and "imu_fault" not in segs[-1]["flags"]


def test_watchdog_not_fed_when_the_imu_stays_dead(drive):
    # the IMU answers at boot, then NACKs for good: the loop stops feeding the watchdog
    r = run_scenario(drive, settings={"heartbeat_s": 10, "wdt_timeout_ms": 2000},
                     faults={"imu_nack": 10**12, "imu_nack_from": 3_000_000})
    assert "watchdog reset" in r["stderr"]


def test_watchdog_fires_about_when_expected(drive):
    r = run_scenario(drive, settings={"heartbeat_s": 10, "wdt_timeout_ms": 2000},
                     faults={"imu_nack": 10**12, "imu_nack_from": 3_000_000})
    t_ms = int(r["stderr"].split("watchdog reset at ")[1].split()[0])
    assert 3_000 + 20_000 < t_ms < 3_000 + 20_000 + 2_000 + 500  # dead for 20 s, then 2 s unfed


def test_1khz_odr_drained_in_time_without_overflow():
    sc = make_scenario(iso_class="B", length_m=200, odr_hz=1000, imu="icm42688", seed=3)
    r = run_scenario(sc, settings={"heartbeat_s": 10})
    hb = _by(r, "status")
    assert hb[-1]["fifo_overflows"] == 0 and hb[-1]["samples_lost"] == 0
    assert r["heap"]["produced"] >= 0.95 * sc.meta["duration_s"] * 1000


def test_a_fresh_flash_image_is_kept_per_content_and_never_served_stale(tmp_path, monkeypatch):
    """`sim run` keeps each provisioned flash image (firmware, board, config, files) compressed in the
    build folder: the same content gives the kept image (byte for byte the one MicroPython made; a
    new one differs only in LittleFS's file times), other content another image, and a damaged kept
    image is made again."""
    import zlib
    import json as _json

    import roadnode.paths
    from roadnode.mpy.build import compiled_firmware
    from roadnode.sim import offline

    monkeypatch.setattr(roadnode.paths, "BUILD_DIR", tmp_path / "build")
    cache = tmp_path / "build" / "flash-images"
    fwdir = compiled_firmware()
    bp = offline.board_path(None, "mpu6050")

    def image(name, cfg):
        cp = tmp_path / f"{name}.json"
        cp.write_text(_json.dumps(cfg))
        img = tmp_path / f"{name}.img"
        offline._provision(img, {"img": str(img), "blocks": 512, "fw": str(fwdir / "rnfw"), "board": str(bp),
                                 "config": str(cp), "key": "", "extra": []})
        return img.read_bytes()

    first = image("a1", {"segment_length_m": 50})  # made by MicroPython, then kept
    assert len(list(cache.glob("*.img.z"))) == 1
    assert image("a2", {"segment_length_m": 50}) == first  # from the kept copy: the same bytes
    other = image("b", {"segment_length_m": 100})
    assert other != first and len(list(cache.glob("*.img.z"))) == 2
    for f in cache.glob("*.img.z"):
        f.write_bytes(b"not zlib")  # damaged: made again, and kept again
    again = image("a3", {"segment_length_m": 50})
    assert len(again) == len(first) and b'"segment_length_m": 50' in again
    kept = [f.read_bytes() for f in cache.glob("*.img.z")]
    assert sorted(kept, key=len)[0] == b"not zlib" and zlib.decompress(sorted(kept, key=len)[1]) == again
    assert b'"segment_length_m": 100' in other and b'"segment_length_m": 50' in first  # each its own config
