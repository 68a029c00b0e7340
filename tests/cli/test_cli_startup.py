"""`roadnode --help` and every `roadnode COMMAND --help` stay quick: they import no heavy library.

Checked by what lands in ``sys.modules`` of a fresh interpreter, never by timing (the figure is
printed by bench/bench_iri.py).
"""

from __future__ import annotations

import json
import subprocess
import sys

import click

from roadnode.cli import COMMANDS, cli, main

# Libraries that cost tens to hundreds of milliseconds to import, or open devices and sockets.
HEAVY = ("numpy", "scipy", "matplotlib", "rich.live", "rich.progress", "paho", "amqtt", "flask", "waitress",
         "mpremote", "serial", "esptool", "psycopg", "h3", "networkx", "plotly", "gpxpy")

_PROBE = """
import contextlib, io, json, sys
from roadnode.cli import COMMANDS, main
seen = {}
for args in [["--help"]] + [[name, "--help"] for name in sorted(COMMANDS)]:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        rc = main(args)
    seen[" ".join(args)] = {"rc": rc, "help": out.getvalue(), "modules": sorted(sys.modules)}
print(json.dumps(seen))
"""


def _heavy(modules):
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_help_imports_no_heavy_library():
    r = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    top = seen["--help"]
    assert top["rc"] == 0
    for name in COMMANDS:  # every command is listed
        assert f"\n  {name} " in top["help"], name
    assert _heavy(top["modules"]) == [], "roadnode --help imports heavy libraries"
    # modules accumulate in the one interpreter: after the last command's --help, the set holds what
    # any of them imported
    for args, got in seen.items():
        assert got["rc"] == 0 and "Usage: roadnode" in got["help"], args
    last = seen[f"{sorted(COMMANDS)[-1]} --help"]
    assert _heavy(last["modules"]) == [], "a command's module imports a heavy library at import time"


def test_probe_sees_heavy_imports():
    """The check above can fail: the same probe reports numpy once a command has used it."""
    code = "import roadnode.science.iri, sys, json; print(json.dumps(sorted(sys.modules)))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "numpy" in _heavy(json.loads(r.stdout))


def test_every_registered_command_loads_as_a_click_command():
    ctx = click.Context(cli)
    assert cli.list_commands(ctx) == sorted(COMMANDS)
    for name in COMMANDS:
        cmd = cli.get_command(ctx, name)
        assert isinstance(cmd, click.Command) and cmd.help, name
    assert cli.get_command(ctx, "no-such-command") is None


def test_unknown_command_is_a_usage_error(capsys):
    assert main(["no-such-command"]) == 2
    err = capsys.readouterr().err
    assert "No such command" in err and len(err.strip().splitlines()) == 1


_BOARD_PROBE = """
import json, sys, tempfile
from roadnode.sim.board import SimBoard, wait_repl
with tempfile.TemporaryDirectory() as d:
    b = SimBoard(flash_dir=d).start()
    try:
        wait_repl(b.port)
    finally:
        b.stop()
print(json.dumps(sorted(sys.modules)))
"""


def test_a_simulated_board_starts_without_the_road_science():
    """A board with its network (the default) at its REPL has imported no numpy or scipy: the board's
    network heap and outage kinds live apart from the scenario runner (sim/faults.py,
    mpy/runtime.py), whose import took ~1 s before the first board of a process answered."""
    r = subprocess.run([sys.executable, "-c", _BOARD_PROBE], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert _heavy(json.loads(r.stdout.splitlines()[-1])) == []


_DRIVE_PROBE = """
import contextlib, io, json, sys
from roadnode.cli import main
drive, port, out = sys.argv[1:4]
runs = {}
for args in (["scenario", "show", drive, "--json"], ["estimate", drive, "--json"], ["replay", drive, "--port", port],
             ["capture", "--port", port, "-o", out, "--duration", "1"]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        runs[args[0]] = main(args)
print(json.dumps({"rc": runs, "modules": sorted(sys.modules)}))
"""


def test_commands_that_read_a_recorded_drive_import_no_scipy(tmp_path):
    """estimate, replay, capture and scenario show read or write a drive file (numpy) and talk to a
    port: none of them builds a drive, so none loads the builder's sensor models and their scipy
    (~1 s of CPU at each start; roadnode.scenario loads its names on first use)."""
    from roadnode.scenario import make_scenario, save_scenario

    save_scenario(make_scenario(iso_class="C", length_m=60, speed_kmh=50, seed=3), tmp_path / "d.npz")
    (tmp_path / "port").write_text("not a serial port\n")
    r = subprocess.run([sys.executable, "-c", _DRIVE_PROBE, str(tmp_path / "d.npz"), str(tmp_path / "port"),
                        str(tmp_path / "out.npz")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.splitlines()[-1])
    # the drive was read (show, estimate: 0) and the port refused (replay, capture: 3), as a user sees
    assert got["rc"] == {"scenario": 0, "estimate": 0, "replay": 3, "capture": 3}, got["rc"]
    assert [m for m in got["modules"] if m == "scipy" or m.startswith("scipy.")] == []
