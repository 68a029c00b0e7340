"""A node's identity survives config corruption: the device id lives in /identity.json (written
when the node is provisioned, kept by later flashes), and a node running on a fallback config says
so everywhere its config is shown: heartbeat, `config show`/`get`, `status`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from roadnode.usb import flash as F
from roadnode.usb.link import NodeLink
from roadnode.usb.repl import RawRepl
from roadnode.sim.board import SimBoard

ID = 4711


def cli(*args):
    return subprocess.run([sys.executable, "-m", "roadnode.cli", *args], capture_output=True, text=True, timeout=300)


def _on_board(port, code: str) -> str:
    """Run code on the stopped node, then restart it (main.py runs again)."""
    r = RawRepl(port)
    try:
        r.enter()
        out = r.exec(code).decode()
        r.restart()
    finally:
        r.close()
    return out


CORRUPT = """
for n, b in (('/config.json', b'{"device_id": 47'), ('/config.bak', b'\\xff\\x00{{')):
    f = open(n, 'wb')
    f.write(b)
    f.close()
"""


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    with SimBoard(flash_dir=tmp_path_factory.mktemp("idflash"), realtime=True) as b:
        r = F.flash_board(b.port, device_id=ID)
        assert r.ok, r.error
        yield b


@pytest.mark.slow
def test_both_config_files_corrupt_keep_the_identity_and_say_fallback(board):
    port = board.port
    with NodeLink(port) as link:
        link.config_set({"heartbeat_s": 20})  # a saved config: /config.json and its backup exist
    assert "identity.json" in _on_board(port, "import os\nprint(os.listdir('/'))")
    _on_board(port, CORRUPT)
    beats = []
    with NodeLink(port, on_packet=lambda d: beats.append(d) if d["type"] == "status" else None) as link:
        link.wait_boot(fresh=False)
        beats.clear()
        link.restart()  # its boot heartbeat, from a boot with both files corrupt
        ping = link.ping()
    assert beats, "no heartbeat after the restart"
    hb = beats[0]
    assert hb["device_id"] == ID and hb["config_fallback"] is True, hb
    assert hb["heartbeat_s"] == 60  # the defaults run it (the saved 20 s is unreadable)
    assert ping["config_status"] == "/config.json not valid JSON; defaults"

    r = cli("config", "show", "--port", port, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["device_id"] == ID and d["fallback"] is True and "defaults" in d["config_status"]
    assert len(r.stderr.strip().splitlines()) == 1 and "fallback config" in r.stderr

    r = cli("config", "show", "--port", port)
    assert r.returncode == 0 and "FALLBACK" in r.stdout and "fallback config" in r.stderr
    r = cli("config", "get", "device_id", "--port", port)
    assert r.returncode == 0 and r.stdout.strip() == str(ID) and "fallback config" in r.stderr
    r = cli("status", "--port", port)
    assert r.returncode == 0 and "FALLBACK, not the saved config" in r.stdout and "fallback config" in r.stderr
    r = cli("status", "--port", port, "--json")
    st = json.loads(r.stdout)
    assert st["config_fallback"] is True and st["device_id"] == ID and "defaults" in st["config_status"]

    # `roadnode flash` (no --device-id) repairs it: a valid config, the identity kept
    r = cli("flash", "--port", port, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["ok"] and d["changed"] and d["heartbeat"]["device_id"] == ID and not d["heartbeat"]["config_fallback"]
    assert any(f"device id {ID} kept (from /identity.json)" in w for w in d["warnings"]), d["warnings"]
    r = cli("config", "show", "--port", port, "--json")
    d = json.loads(r.stdout)
    assert r.returncode == 0 and d["device_id"] == ID and d["fallback"] is False and not r.stderr.strip()
    r = cli("status", "--port", port)
    assert r.returncode == 0 and "ok (its saved config)" in r.stdout and not r.stderr.strip()


def test_a_new_device_id_moves_the_identity_a_later_flash_keeps_it(board):
    port = board.port
    with NodeLink(port) as link:
        assert link.config_set({"device_id": 99})["device_id"] == 99
    ident = _on_board(port, "print(open('/identity.json').read())")
    assert json.loads(ident) == {"device_id": 99}
    r = cli("flash", "--port", port, "--json")
    d = json.loads(r.stdout)
    assert r.returncode == 0 and d["ok"] and not d["changed"] and d["heartbeat"]["device_id"] == 99
    r = cli("flash", "--port", port, "--device-id", str(ID), "--json")
    d = json.loads(r.stdout)
    assert r.returncode == 0 and d["ok"] and d["heartbeat"]["device_id"] == ID
    assert json.loads(_on_board(port, "print(open('/identity.json').read())")) == {"device_id": ID}


@pytest.mark.slow
def test_a_board_flashed_before_identity_files_gets_one_from_its_config(tmp_path):
    """The unchanged-firmware fast path must not skip writing the identity of an older board."""
    with SimBoard(flash_dir=tmp_path, realtime=True) as b:
        assert F.flash_board(b.port, device_id=321).ok
        _on_board(b.port, "import os\nos.remove('/identity.json')")
        with NodeLink(b.port) as link:
            link.wait_boot(fresh=False)
        r = F.flash_board(b.port)
        assert r.ok and r.changed, r.error
        assert json.loads(_on_board(b.port, "print(open('/identity.json').read())")) == {"device_id": 321}


IDENTITY_ON_MPY = r"""
import json
from rnfw import config
d = %(d)r
def w(n, t):
    with open(d + n, 'w') as f:
        f.write(t)
w('/identity.json', '{"device_id": 4711}')
w('/config.json', '{"device_id": 4711, "heartbeat_s": 3')
w('/config.bak', 'garbage')
cfg, st = config.load(d + '/config.json')
print(json.dumps([cfg['device_id'], st]))
w('/config.json.pending', '{"device_id": 4711, "heartbeat_s": 30}')
print(json.dumps([config.apply_pending(d + '/config.json'), config.load(d + '/config.json')[1],
                  open(d + '/identity.json').read()]))
w('/config.json.pending', '{"device_id": 12, "heartbeat_s": 30}')
print(json.dumps([config.apply_pending(d + '/config.json'), open(d + '/identity.json').read()]))
w('/identity.json', '{"device_id": tr')
print(json.dumps(config.load(d + '/config.json')[0]['device_id']))
"""


def test_config_load_on_micropython_takes_the_id_from_the_identity(mpy, tmp_path):
    from roadnode.paths import FIRMWARE_DIR

    out = mpy(IDENTITY_ON_MPY % {"d": str(tmp_path)}, path=(str(FIRMWARE_DIR),)).strip().splitlines()
    assert json.loads(out[0]) == [4711, "fallback: %s/config.json not valid JSON; "
                                        "defaults" % tmp_path]
    applied, st, ident = json.loads(out[1])
    assert applied is None and st == "ok" and ident == '{"device_id": 4711}'  # a config save leaves it alone
    assert json.loads(out[2]) == [None, '{"device_id": 12}']  # the id changed on purpose: it follows
    assert json.loads(out[3]) == 12  # a corrupt identity: the config's id
