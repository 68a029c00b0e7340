"""Shared by the collector/fleet tests: `roadnode collect` as a real subprocess, a host-side node that
publishes real batches (the firmware's codec) and hears its acknowledgements, the `fleet` CLI."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt

from roadnode.mpy.fwimport import fw

B = fw("batch")
P = fw("packet")
PD = fw("packet_decode")
ENTRY = [sys.executable, "-c", "from roadnode.cli import entry; entry()"]


def wait(cond, timeout=30.0, what="condition"):
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"{what} not met within {timeout:.0f} s")
        time.sleep(0.02)


def seg(dev: int, seq: int, idx: int, lat=48.1486, lon=17.1077, iri=2.5, flags=0, speed=50, length=100) -> bytes:
    buf = bytearray(64)
    n = P.encode_segment(buf, seq & 0xFFFF, dev, idx, length, round(lat * 1e7), round(lon * 1e7),
                         round(iri * 100), 40, 30, speed, flags)
    return bytes(buf[:n])


def status(dev: int, seq: int = 0, uptime=60, reset=1, reboots=0, min_heap=40000, queue_depth=0, gps_fix=1,
           flags=0b1100, heartbeat_s=60, fw_version=(0, 4, 0), self_cal=None) -> bytes:
    """A heartbeat; ``self_cal``: the node's six self-calibration values (rnfw.selfcal values())."""
    v = dict.fromkeys(PD.STATUS_FIELDS, 0)
    v.update(uptime_s=uptime, fw_major=fw_version[0], fw_minor=fw_version[1], fw_patch=fw_version[2],
             reset_reason=reset, unexpected_reboots=reboots, free_heap=min_heap + 1000, min_free_heap=min_heap,
             gps_fix=gps_fix, gps_sats=7, gps_hdop_c=120, flags=flags, heartbeat_s=heartbeat_s,
             queue_depth=queue_depth, link=2 | (3 << 2), last_ack_s=1)
    buf = bytearray(80)
    n = P.encode_status(buf, seq & 0xFFFF, dev, [v[k] for k in PD.STATUS_FIELDS] + list(self_cal or ()))
    return bytes(buf[:n])


def batch(epoch: int, base: int, first: int, pkts: list[bytes]) -> bytes:
    h = bytearray(B.HDR)
    B.put_header(h, epoch, base, first, len(pkts))
    return bytes(h) + b"".join(bytes([len(p)]) + p for p in pkts)


class Node:
    """A node's MQTT side, host-side: publishes batches on roadnode/<id>/up, hears its acks."""

    def __init__(self, broker, dev: int, will: bool = False):
        self.dev = dev
        self.acks: queue.Queue = queue.Queue()
        self.acked: dict[int, int] = {}  # epoch -> highest acknowledged seq
        self._sub = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"roadnode-{dev}")
        if will:
            c.will_set(f"roadnode/{dev}/status", b"offline", qos=1, retain=True)
        c.on_connect = lambda cl, *a: cl.subscribe(f"roadnode/{dev}/ack", 1)
        c.on_subscribe = lambda *a: self._sub.set()
        c.on_message = self._on_ack
        self.client = c
        self.broker = broker

    def _on_ack(self, c, u, m):
        a = B.decode_ack(m.payload)
        if a is None or m.topic != f"roadnode/{self.dev}/ack":
            print(f"node {self.dev}: unexpected message on {m.topic}: {bytes(m.payload)[:20]!r}")
            return
        ep, upto = a
        self.acked[ep] = max(self.acked.get(ep, -1), upto)
        self.acks.put((ep, upto))

    def start(self) -> "Node":
        self.client.connect(self.broker.host, self.broker.port)
        self.client.loop_start()
        assert self._sub.wait(20), "node: no SUBACK"
        return self

    def up(self, payload: bytes, qos: int = 1):
        return self.client.publish(f"roadnode/{self.dev}/up", payload, qos=qos)

    def send(self, epoch: int, first: int, pkts: list[bytes], base: int = 0):
        return self.up(batch(epoch, base, first, pkts))

    def status(self, payload: bytes, retain: bool = True):
        return self.client.publish(f"roadnode/{self.dev}/status", payload, qos=0, retain=retain)

    def wait_acked(self, epoch: int, upto: int, timeout: float = 30.0) -> None:
        wait(lambda: self.acked.get(epoch, -1) >= upto, timeout, f"device {self.dev} ack {epoch}:{upto}")

    def vanish(self) -> None:
        """The link dies without a DISCONNECT (the broker publishes the will)."""
        self.client.loop_stop()
        self.client.socket().close()

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Collect:
    """`roadnode collect --json` in a subprocess; its JSON lines read as they come."""

    def __init__(self, broker_url: str, db: str, *extra: str, stats_every: float = 0.2):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(ENTRY + ["collect", "--broker", broker_url, "--db", db, "--json",
                                              "--stats-every", str(stats_every), *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[dict] = []
        self.err: list[str] = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()
        threading.Thread(target=lambda: self.err.extend(self.proc.stderr), daemon=True).start()
        self.head = wait(lambda: self.lines and self.lines[0], 30, "collect's first line")
        wait(lambda: self.stats().get("connected"), 30, "collect connected")

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def stats(self) -> dict:
        s = [x for x in self.lines if x.get("type") in ("stats", "stopped")]
        return s[-1] if s else {}

    def wait_stats(self, cond, timeout=30.0, what="collector counts"):
        return wait(lambda: (lambda s: s if s and cond(s) else None)(self.stats()), timeout, what)

    def stop(self, sig=signal.SIGTERM, timeout=60) -> dict:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(timeout)
        self._t.join(10)
        return self.stats()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def fleet(*args: str) -> list[dict]:
    """`roadnode fleet ... --json` -> its JSON lines; raises with stderr on a non-zero exit."""
    p = subprocess.run(ENTRY + ["fleet", *args, "--json"], capture_output=True, text=True, timeout=300)
    if p.returncode:
        raise AssertionError(f"roadnode fleet {' '.join(args)} exited {p.returncode}: {p.stderr}")
    return [json.loads(x) for x in p.stdout.splitlines()]


def make_test_pki(d, dns=("localhost",), ips=("127.0.0.1",), name="roadnode test CA") -> dict:
    """A test CA (EC P-256, the `cryptography` package) and a server certificate it signs for the given
    DNS names and IPs, in folder d: {"ca" (PEM), "ca_der", "cert", "key"} paths. Another call makes
    another CA (a node holding it refuses the first one's broker)."""
    import datetime as dt
    import ipaddress
    from pathlib import Path

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    alt = [x509.DNSName(n) for n in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (list(dns) or list(ips))[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (d / "ca.pem").write_bytes(ca.public_bytes(pem))
    (d / "ca.der").write_bytes(ca.public_bytes(serialization.Encoding.DER))
    (d / "server.pem").write_bytes(cert.public_bytes(pem))
    (d / "server.key").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    (d / "server.key").chmod(0o600)
    return {"ca": str(d / "ca.pem"), "ca_der": str(d / "ca.der"), "cert": str(d / "server.pem"),
            "key": str(d / "server.key")}


class TlsBroker:
    """A broker on 127.0.0.1 with a plain listener (`port`) and a TLS one (`tls_port`, the given
    certificate and key). Mosquitto where installed, else amqtt (it does TLS too); ROADNODE_BROKER
    forces one, as for roadnode.fleet.broker.Broker."""

    def __init__(self, d, pki: dict):
        import getpass
        from pathlib import Path

        from roadnode.fleet.broker import default_kind, free_port, mosquitto_path, mqtt_ready

        d = Path(d)
        self.port, self.tls_port = free_port(), free_port()
        self.kind = default_kind()  # (ROADNODE_BROKER=amqtt forces the embedded one)
        if self.kind == "mosquitto":
            conf = d / "mosquitto.conf"
            conf.write_text("\n".join([
                f"listener {self.port} 127.0.0.1", f"listener {self.tls_port} 127.0.0.1",
                f"certfile {pki['cert']}", f"keyfile {pki['key']}", "allow_anonymous true",
                f"user {getpass.getuser()}", "log_dest stderr", "log_type error", "log_type warning"]) + "\n")
            cmd = [mosquitto_path(), "-c", str(conf)]
        else:
            conf = d / "amqtt.json"
            conf.write_text(json.dumps({
                "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"},
                              "tls": {"type": "tcp", "bind": f"127.0.0.1:{self.tls_port}", "ssl": True,
                                      "certfile": pki["cert"], "keyfile": pki["key"]}},
                "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}}))
            cmd = [sys.executable, "-m", "roadnode.fleet.broker", str(conf)]
        self.log = open(d / "broker.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log, cwd=d)
        wait(lambda: mqtt_ready("127.0.0.1", self.port, 0.5) or self.proc.poll() is not None, 30, "broker up")
        assert self.proc.poll() is None, (d / "broker.log").read_text()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(20)
        self.log.close()
