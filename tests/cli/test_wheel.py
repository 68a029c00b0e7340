"""The package works as a wheel, not only installed editable from a checkout: the sdist and the
wheel built from it (python -m build) carry the firmware, the board definitions, the simulated
hardware and the board scripts, and the installed `roadnode` flashes a simulated board and runs a
drive from a folder far from any checkout.

The wheel is installed (--no-deps) into a fresh venv that sees the project venv's site-packages
for its dependencies (numpy, MicroPython...: offline, seconds instead of minutes) but not its
editable roadnode (that .pth is not processed from there): the test checks that roadnode, its
firmware and its boards are the wheel's."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = ["host", "firmware", "boards", "pyproject.toml", "setup.py", "MANIFEST.in", "README.md"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv python, roadnode script, environment) of the wheel installed in a fresh venv."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "*.mpy")
    for name in SOURCES:  # a copy: building writes egg-info and build/ beside the sources
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy2)(REPO / name, src / name,
                                                                   **({"ignore": junk} if (REPO / name).is_dir() else {}))
    dist = tmp / "dist"
    r = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    wheel = next(dist.glob("roadnode-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
                        "--no-index", str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "project-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROADNODE_", "PYTHON", "VIRTUAL_ENV"))}
    env["XDG_CACHE_HOME"] = str(tmp / "cache")  # the compiled-firmware cache of an installed package
    env["XDG_DATA_HOME"] = str(tmp / "data")
    return {"wheel": wheel, "py": py, "roadnode": venv / "bin" / "roadnode", "env": env, "cwd": tmp, "site": site,
            "sdist": next(dist.glob("roadnode-*.tar.gz"))}


def _run(w, *args, timeout=300):
    return subprocess.run([str(w["roadnode"]), *args], capture_output=True, text=True, cwd=w["cwd"], env=w["env"],
                          timeout=timeout)


@pytest.mark.slow
def test_wheel_carries_firmware_boards_simulator_and_board_scripts(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for f in ["roadnode/_data/firmware/deploy.toml", "roadnode/_data/firmware/main.py",
              "roadnode/_data/firmware/rnfw/app.py", "roadnode/_data/boards/esp32s3-icm42688-neom8n.json",
              "roadnode/sim/mpy/machine.py", "roadnode/mpy/scripts/run_node.py", "roadnode/usb/scripts/probe.py",
              "roadnode/data/roads/town.geojson", "roadnode/web/templates/base.html"]:
        assert f in names, f
    assert not [n for n in names if "__pycache__" in n or n.endswith(".mpy")]
    # the installed package is the wheel's, with its own firmware (not the checkout's)
    r = subprocess.run([str(installed["py"]), "-c", "import roadnode, roadnode.paths as p; "
                        "print(roadnode.__file__, p.FIRMWARE_DIR, p.BOARDS_DIR, p.INSTALLED, p.BUILD_DIR)"],
                       capture_output=True, text=True, cwd=installed["cwd"], env=installed["env"], check=True)
    mod, fw, boards, inst, build = r.stdout.split()
    for p in (mod, fw, boards):
        assert Path(p).is_relative_to(installed["site"]), p
    assert inst == "True" and Path(build).is_relative_to(installed["cwd"])


@pytest.mark.slow
def test_installed_wheel_flashes_a_simulated_board_and_runs_a_drive(installed):
    w = installed
    serve = subprocess.Popen([str(w["roadnode"]), "sim", "serve", "--json", "--realtime"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=w["cwd"], env=w["env"])
    try:
        port = json.loads(serve.stdout.readline())["port"]
        r = _run(w, "flash", "--port", port, "--device-id", "77", "--json")
        assert r.returncode == 0, r.stderr
        d = json.loads(r.stdout)
        assert d["ok"] and d["form"] == "mpy-x64" and d["heartbeat"]["device_id"] == 77
        assert d["heartbeat"]["fw_version"] == d["version"]
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(30)
    assert (w["cwd"] / "data" / "roadnode" / "keys" / "key-77.bin").is_file()  # the user's data folder
    sc = w["cwd"] / "drive.npz"
    r = _run(w, "scenario", "make", "--iso-class", "B", "--length-m", "300", "--seed", "3", "-o", str(sc))
    assert r.returncode == 0, r.stderr
    r = _run(w, "sim", "run", str(sc), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["packets"] > 0 and summary["bad_packets"] == 0 and summary["scored"] >= 1
