"""Shared fixtures: the MicroPython runner (ESP32 heap imposed) and the real data folders."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from roadnode.mpy import runtime
from roadnode.paths import SHARED_DATA_DIR

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    # the checks against outside sources must never quietly stop running: missing data is a
    # failure (set ROADNODE_SHARED to the folder that holds data/ when the checkout lives elsewhere)
    if not SHARED_DATA_DIR.is_dir():
        pytest.fail(f"shared data not found at {SHARED_DATA_DIR}: these tests check the code against real "
                    "recordings and published results; set ROADNODE_SHARED=/path/to/shared", pytrace=False)
    return SHARED_DATA_DIR


def run_cli(*args: str, input: str | None = None):
    """Run the real ``roadnode`` console entry point in a subprocess; returns CompletedProcess."""
    import subprocess

    return subprocess.run(
        [sys.executable, "-c", "from roadnode.cli import entry; entry()", *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=600,
    )


@pytest.fixture(scope="session")
def cli():
    """run_cli, for tests and fixtures of any scope (``from conftest import`` is ambiguous: hil_tests
    has a conftest too)."""
    return run_cli


@pytest.fixture(scope="session")
def mpy():
    """Run MicroPython code: ``mpy(code, sim=False, input=None) -> stdout text``; raises on error."""

    def _run(code: str, *, sim: bool = False, input: bytes | None = None, path=(), emit=None) -> str:
        return runtime.run_code(code, sim=sim, input=input, path=path, emit=emit).stdout.decode()

    return _run


def _broker_kinds() -> list[str]:
    """Both brokers, or the one ROADNODE_BROKER forces."""
    forced = os.environ.get("ROADNODE_BROKER", "").strip().lower()
    return [forced] if forced else ["mosquitto", "amqtt"]


@pytest.fixture(scope="session", params=_broker_kinds())
def broker_kind(request) -> str:
    """'mosquitto' or 'amqtt': tests that use a broker run against each (Mosquitto only where it
    is installed: the embedded amqtt is what a machine with Python alone has)."""
    from roadnode.fleet.broker import mosquitto_path

    if request.param == "mosquitto" and not mosquitto_path():
        pytest.skip("mosquitto is not installed (the tests run against amqtt)")
    return request.param


@pytest.fixture(scope="module")
def mqtt_broker(broker_kind):
    """A real MQTT broker on 127.0.0.1 (free port) for the module's tests; stopped afterwards."""
    from roadnode.fleet.broker import Broker

    with Broker(kind=broker_kind) as b:
        yield b


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server for the session (initdb/pg_ctl in a temporary folder, 127.0.0.1 on a
    free port; as root the cluster runs as `nobody`)."""
    from roadnode.fleet.pgserver import PgServer, pg_bindir

    if not pg_bindir():
        pytest.skip("PostgreSQL is not installed: no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin "
                    "(CI installs the Debian package postgresql)")
    with PgServer(fsync=False) as pg:  # (commits still ordered; only the disk flush skipped)
        yield pg


@pytest.fixture(scope="session", autouse=True)
def _user_data_in_tmp(tmp_path_factory):
    """Tests never write to the user's home: roadnode's data folder (platformdirs: the default
    fleet.db, keys/ of `roadnode flash`) is a temporary one, for the CLI's subprocesses too."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg-data")))
        yield


# --- the suite's order and its slow tests (issue 17: "nothing is slow without a reason") ---

UNMARKED_SLOW_S = 8.0  # longer without the `slow` marker: listed at the end (the marked ones take >= 3 s
# quiet; at -n 4 on two cores a test takes up to twice that, so 8 s lists only the real misses)
_unmarked: list[tuple[float, str]] = []


def pytest_collection_modifyitems(config, items):
    """The slow tests first, in their own order: a parallel run (pyproject's ``--dist worksteal``)
    then ends on short tests, never with one worker alone on a long one while the other idles."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_runtest_logreport(report):
    if report.when == "call" and report.duration > UNMARKED_SLOW_S and "slow" not in report.keywords:
        _unmarked.append((report.duration, report.nodeid))


def pytest_terminal_summary(terminalreporter):
    """Tests that took long without saying why (the `slow` marker): mark them, or make them quick."""
    if _unmarked:
        terminalreporter.section("slow without the slow marker")
        for d, nodeid in sorted(_unmarked, reverse=True):
            terminalreporter.write_line(f"{d:6.1f} s  {nodeid}")
