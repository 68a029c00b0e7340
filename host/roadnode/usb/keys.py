"""Where a node's new device key goes once the board holds it (`roadnode flash`, docs/security.md)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable


def default_key_dir() -> Path:
    """keys/ in the user's data folder, beside the default fleet.db."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("roadnode", appauthor=False)) / "keys"


def save_key(key_dir: Path, dev: int, key: bytes) -> Path:
    """key-<id>.bin in ``key_dir``, readable by its owner only (0600 from its creation)."""
    key_dir.mkdir(parents=True, exist_ok=True)
    f = key_dir / f"key-{dev}.bin"
    fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return f


def key_sink(db_url: str | None, key_dir: Path, notes: list) -> Callable[[int, bytes], None]:
    """flash_board's ``key_sink``: a new key registered in the key store (``db_url``), else saved
    as key-<id>.bin for `roadnode fleet keys add` (also when registering fails). ``notes`` gets a
    line per key saying where it went (never the key). Safe from parallel flashes."""
    lock = threading.Lock()

    def sink(dev: int, key: bytes) -> None:
        """Register or save one board's new key (one at a time)."""
        with lock:
            if db_url:
                try:
                    from roadnode.fleet.store import Store

                    st = Store(db_url)
                    try:
                        st.add_key(dev, key, replace=True)  # the board's key is the one that counts now
                    finally:
                        st.close()
                    notes.append(f"device {dev}: new key registered in the key store")
                    return
                except Exception as e:  # (the board has it: keep it on this machine, say how to register)
                    notes.append(f"device {dev}: registering the new key failed ({e})")
            f = save_key(key_dir, dev, key)
            notes.append(f"device {dev}: new key saved to {f}; register it with `roadnode fleet keys add --device "
                         f"{dev} --key-file {f} --replace`, then delete the file")

    return sink
