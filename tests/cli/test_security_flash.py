"""Issue 15 at flash time: `roadnode flash` gives a node with a device id its own random key on the
first flash (key.bin beside its config), registers it with --db, keeps it on a re-flash, makes a
new one with --rekey (saved for `fleet keys add` without --db); the key is never in the output."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from roadnode.fleet.store import Store
from test_flash import _board


def _board_key(port, tmp_path):
    f = tmp_path / "got.bin"
    p = subprocess.run([sys.executable, "-m", "mpremote", "connect", port, "cp", ":/key.bin", str(f)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return f.read_bytes()


@pytest.mark.slow
def test_flash_provisions_keeps_and_rekeys_the_node_key(tmp_path, cli):
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    with _board(tmp_path) as b:
        r = cli("flash", "--port", b.port, "--device-id", "4242", "--db", db, "--json")
        assert r.returncode == 0, r.stderr
        d = json.loads(r.stdout)
        assert d["ok"] and d["key"] == "new" and "registered" in r.stderr
        s = Store(db)
        key = s.get_key(4242)
        s.close()
        assert key is not None and len(key) == 16
        assert key.hex() not in r.stdout + r.stderr and "key.bin" not in json.dumps(d["manifest"])
        # a re-flash keeps it
        r2 = cli("flash", "--port", b.port, "--json")
        assert r2.returncode == 0 and json.loads(r2.stdout)["key"] in (None, "kept"), r2.stderr
        # --rekey without --db: a new key on the board, saved here for `fleet keys add`
        r3 = cli("flash", "--port", b.port, "--rekey", "--key-dir", str(tmp_path / "keys"), "--json")
        assert r3.returncode == 0, r3.stderr
        assert json.loads(r3.stdout)["key"] == "rekeyed" and "fleet keys add --device 4242" in r3.stderr
        new = (tmp_path / "keys" / "key-4242.bin").read_bytes()
        assert new != key and (tmp_path / "keys" / "key-4242.bin").stat().st_mode & 0o077 == 0
        assert _board_key(b.port, tmp_path) == new
    # registered from the saved file, as the message says
    r4 = cli("fleet", "keys", "add", "--db", db, "--device", "4242", "--key-file", str(tmp_path / "keys" / "key-4242.bin"),
             "--replace", "--json")
    assert r4.returncode == 0 and new.hex() not in r4.stdout, r4.stderr
    s = Store(db)
    assert s.get_key(4242) == new
    s.close()
