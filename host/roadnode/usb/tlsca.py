"""The broker's CA on a node (docs/security.md): the node checks the broker's TLS certificate against it.

The CA is kept on the node's flash as DER in `/ca.der`, beside key.bin and the config, outside the
firmware slots: a flash of new firmware keeps it. It is written through the raw REPL (the node stops
measuring for a few seconds and restarts), as `tmp` + rename, and read back by hash. The firmware reads
it when it first connects with `mqtt_tls on` (rnfw.mqtt). DER, not PEM: the node parses it as it is,
with no base64 and no text on its heap.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from roadnode.errors import DeviceError, InputError

NODE_PATH = "/ca.der"  # beside /config.json and /key.bin (rnfw.mqtt_uplink)
MAX_BYTES = 4096  # one certificate; a bundle of several is not what the node needs (one broker)


def load_ca(path: Path) -> tuple[bytes, dict]:
    """The CA certificate in ``path`` (PEM or DER) as DER, and what it is (subject, expiry, sha256).
    Refused (InputError): not a certificate, not a CA, several in one PEM, expired."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise InputError(f"{path}: {e.strerror or e}") from None
    try:
        if b"-----BEGIN" in raw:
            if raw.count(b"-----BEGIN CERTIFICATE-----") != 1:
                raise InputError(f"{path}: expected exactly one PEM certificate (the broker's CA)")
            cert = x509.load_pem_x509_certificate(raw)
        else:
            cert = x509.load_der_x509_certificate(raw)
    except ValueError as e:
        raise InputError(f"{path}: not an X.509 certificate ({e})") from None
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise InputError(f"{path}: {cert.subject.rfc4514_string()} is not a CA certificate (basicConstraints "
                         "CA:TRUE): give the CA that signed the broker's certificate")
    now = dt.datetime.now(dt.timezone.utc)
    if cert.not_valid_after_utc < now:
        raise InputError(f"{path}: the CA expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    der = cert.public_bytes(serialization.Encoding.DER)
    if len(der) > MAX_BYTES:
        raise InputError(f"{path}: {len(der)} bytes of DER, more than the node keeps ({MAX_BYTES})")
    return der, {"subject": cert.subject.rfc4514_string(), "not_after": cert.not_valid_after_utc.isoformat(),
                 "bytes": len(der), "sha256": hashlib.sha256(der).hexdigest()}


def _write_code(der: bytes) -> str:
    b64 = base64.b64encode(der).decode()
    return (
        "import os, hashlib, binascii\n"
        f"d = binascii.a2b_base64({b64!r})\n"
        f"with open({NODE_PATH + '.tmp'!r}, 'wb') as f:\n"
        "    f.write(d)\n"
        f"os.rename({NODE_PATH + '.tmp'!r}, {NODE_PATH!r})\n"
        f"with open({NODE_PATH!r}, 'rb') as f:\n"
        "    print('rn:ca', binascii.hexlify(hashlib.sha256(f.read()).digest()).decode())\n"
    )


def _remove_code() -> str:
    return (
        "import os\n"
        "try:\n"
        f"    os.remove({NODE_PATH!r})\n"
        "    print('rn:ca removed')\n"
        "except OSError:\n"
        "    print('rn:ca none')\n"
    )


def _mqtt_tls(repl) -> str | None:
    """The node's saved mqtt_tls setting (None: no config or an older firmware without the key)."""
    out = repl.exec("import json\ntry:\n    print(json.dumps(json.load(open('/config.json')).get('mqtt_tls')))\n"
                    "except Exception:\n    print('null')\n").decode().strip().splitlines()
    try:
        return json.loads(out[-1]) if out else None
    except ValueError:
        return None


def install_ca(port: str, der: bytes | None, baud: int = 115200) -> dict:
    """Write ``der`` as the node's CA (None: remove it), then restart the node. Returns
    {"path", "action": "written"|"removed"|"none", "sha256", "mqtt_tls"} (the node's saved setting,
    so the caller can say when TLS is still off)."""
    from roadnode.usb.portlock import hold
    from roadnode.usb.repl import RawRepl

    with hold(port):
        repl = RawRepl(port, baud)
        try:
            repl.enter(soft_reset=True)  # a clean interpreter: the measuring loop is not running
            lines = repl.exec(_write_code(der) if der is not None else _remove_code(),
                              timeout=30).decode().strip().splitlines()
            last = lines[-1].split() if lines else []
            tls = _mqtt_tls(repl)
        finally:
            try:
                repl.restart()
            finally:
                repl.close()
    if last[:1] != ["rn:ca"] or len(last) < 2:
        raise DeviceError(f"{port}: unexpected answer writing the CA: {' '.join(last) or 'nothing'}")
    res = {"port": port, "path": NODE_PATH, "mqtt_tls": tls}
    if der is None:
        res.update(action="removed" if last[1] == "removed" else "none", sha256=None)
        return res
    want = hashlib.sha256(der).hexdigest()
    if last[1] != want:
        raise DeviceError(f"{port}: the CA read back differs from what was sent (sha256 {last[1][:16]}..., "
                          f"expected {want[:16]}...); run the command again")
    res.update(action="written", sha256=want)
    return res
