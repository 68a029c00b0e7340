"""Hardware-in-the-loop fixtures: the same tests against a simulated board (default) or a real one.

    pytest hil_tests                          # a fresh simulated board for the session
    pytest hil_tests --port /dev/ttyUSB0      # a real board; simulation-only tests are skipped
    pytest hil_tests --junitxml=hil.xml       # JUnit XML for a test rig's CI
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from roadnode.sim.board import wait_repl


def pytest_addoption(parser):
    parser.addoption("--port", default=None, help="serial port of a real board (default: a simulated one)")
    parser.addoption("--hil-board", default="esp32-devkitc-mpu6050-neo6m", help="board definition for the simulated board")


class RealBoard:
    sim = False

    def __init__(self, port):
        self.port = port


@pytest.fixture(scope="session")
def board(request, tmp_path_factory):
    port = request.config.getoption("--port")
    if port:
        yield RealBoard(port)
        return
    from roadnode.sim.board import SimBoard

    # realtime: the simulated board keeps wall-clock time, as a real board on a USB port does
    b = SimBoard(board=request.config.getoption("--hil-board"), flash_dir=tmp_path_factory.mktemp("hil-flash"),
                 realtime=True)
    b.sim = True
    b.start()
    wait_repl(b.port)
    yield b
    b.stop()


@pytest.fixture
def fresh_board(request, tmp_path):
    """Simulated boards of a test's own, for tests that break things (faults, power cuts):
    ``b = fresh_board(faults={...}, baud=115200, tape_dir=...)`` (SimBoard's arguments)."""
    from roadnode.sim.board import SimBoard

    made = []

    def make(**kw):
        b = SimBoard(board=request.config.getoption("--hil-board"), flash_dir=tmp_path / f"flash{len(made)}",
                     realtime=True, **kw)
        b.sim = True
        b.start()
        made.append(b)
        wait_repl(b.port)
        return b

    yield make
    for b in made:
        b.stop()


@pytest.fixture(scope="session")
def flashed(board):
    """The session's board with the current firmware on it (flashed by `roadnode flash`)."""
    from roadnode.usb.flash import flash_board

    r = flash_board(board.port, device_id=4711)
    assert r.ok, r.error
    return board


@pytest.fixture(autouse=True)
def _sim_only(request, board):
    if request.node.get_closest_marker("sim_only") and not getattr(board, "sim", False):
        pytest.skip("needs the simulated board (fault injection / power control), not a real one")


@pytest.fixture
def mpremote(board):
    def run(*args, timeout=60):
        return subprocess.run([sys.executable, "-m", "mpremote", "connect", board.port, *args],
                              capture_output=True, text=True, timeout=timeout)

    return run
