"""Mosquitto's password file and ACL for the fleet (`roadnode fleet broker-config`, docs/security.md).

Each device logs in as its device id with the password derived from its key (keys.mqtt_password:
the node derives the same); it may write only ``roadnode/<id>/up`` and ``roadnode/<id>/status`` and
read only ``roadnode/<id>/ack``. The collector's user reads every device's up and status topics and
writes the acks. The password file is made by Mosquitto's own ``mosquitto_passwd`` when installed,
else in the PBKDF2-SHA512 format it documents (``$7$iterations$salt$hash``, base64).
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from roadnode.fleet.keys import mqtt_password

ITERATIONS = 101  # mosquitto_passwd's default for $7$


def hash_password(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """One password as Mosquitto's $7$ (PBKDF2-HMAC-SHA512, 12-byte salt, 64-byte hash)."""
    salt = secrets.token_bytes(12) if salt is None else salt
    h = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(h).decode()}"


def acl(device_ids: list[int], collector_user: str) -> str:
    """A mosquitto ACL file: each device writes only its own up/status topics and reads only its own acks; the
    collector reads them all and writes acks."""
    lines = ["# roadnode: written by `roadnode fleet broker-config`", "", f"user {collector_user}",
             "topic read roadnode/+/up", "topic read roadnode/+/status", "topic write roadnode/+/ack", ""]
    for d in sorted(device_ids):
        lines += [f"user {d}", f"topic write roadnode/{d}/up", f"topic write roadnode/{d}/status",
                  f"topic read roadnode/{d}/ack", ""]
    return "\n".join(lines)


def write(out: Path, keys: dict[int, bytes], collector_user: str, collector_password: str) -> dict:
    """passwd and acl in ``out`` (mode 0600): the devices with an active key, and the collector."""
    out.mkdir(parents=True, exist_ok=True)
    users = [(str(d), mqtt_password(k)) for d, k in sorted(keys.items())] + [(collector_user, collector_password)]
    pw = out / "passwd"
    tool = shutil.which("mosquitto_passwd")
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".passwd")
    os.close(fd)
    os.chmod(tmp, 0o600)
    if tool:
        Path(tmp).write_text("")
        for u, p in users:  # (-b: the password on the command line of a local, short-lived process)
            subprocess.run([tool, "-b", tmp, u, p], check=True, capture_output=True)
    else:
        Path(tmp).write_text("".join(f"{u}:{hash_password(p)}\n" for u, p in users))
    os.replace(tmp, pw)
    a = out / "acl"
    a.write_text(acl(list(keys), collector_user))
    os.chmod(a, 0o600)
    return {"passwd": str(pw), "acl": str(a), "devices": len(keys), "tool": "mosquitto_passwd" if tool else "builtin"}
