"""Issue 15 at the broker: `roadnode fleet broker-config` writes Mosquitto's password file and ACL
from the key store; Mosquitto runs with them: a device logs in as its id with the password derived
from its key and may publish only on its own topics (another device's topic: denied, the collector
never sees it), an unknown user is refused; TLS with a test CA (the `cryptography` package), the
collector connecting with --ca; and the firmware node with a key, through that broker, to the
collector: its sealed batches stored, across power cuts (its counter never goes back)."""

from __future__ import annotations

import datetime as dt
import getpass
import ipaddress
import json
import socket
import ssl
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from fleet_helpers import ENTRY, batch, seg, wait
from roadnode.fleet import keys as K
from roadnode.fleet.broker import mosquitto_path
from roadnode.fleet.service import Collector
from roadnode.fleet.store import Store

pytestmark = pytest.mark.skipif(not mosquitto_path(), reason="Mosquitto is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosq:
    """Mosquitto with the fleet's password file and ACL (and TLS when given certificates)."""

    def __init__(self, d, conf_dir, tls=None):
        self.port = _free_port()
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous false",
                 f"password_file {conf_dir}/passwd", f"acl_file {conf_dir}/acl", f"user {getpass.getuser()}",
                 "log_dest stderr", "log_type error", "log_type warning"]
        if tls:
            lines += [f"cafile {tls['ca']}", f"certfile {tls['cert']}", f"keyfile {tls['key']}"]
        (d / "mosquitto.conf").write_text("\n".join(lines) + "\n")
        self.log = open(d / "mosquitto.log", "wb")
        self.proc = subprocess.Popen([mosquitto_path(), "-c", str(d / "mosquitto.conf")], stdout=self.log,
                                     stderr=self.log, cwd=d)
        self.d = d

        def up():
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return True
            except OSError:
                return self.proc.poll() is not None
        wait(up, 20, "mosquitto listening")
        assert self.proc.poll() is None, (d / "mosquitto.log").read_text()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(20)
        self.log.close()


def _client(port, user, pw, cid, tls_ca=None):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid)
    c.username_pw_set(user, pw)
    if tls_ca:
        c.tls_set(ca_certs=tls_ca)
    res = {}
    ev = threading.Event()

    def on_connect(cl, u, flags, reason, props):
        res["rc"] = reason
        ev.set()
    c.on_connect = on_connect
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert ev.wait(20), "no CONNACK"
    return c, res["rc"]


def _setup(tmp_path, devices):
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    keys = {}
    for d in devices:
        p = subprocess.run(ENTRY + ["fleet", "keys", "add", "--db", db, "--device", str(d), "--json"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        keys[d] = bytes.fromhex(json.loads(p.stdout)["key_hex"])
    conf = tmp_path / "broker"
    p = subprocess.run(ENTRY + ["fleet", "broker-config", "--db", db, "--out", str(conf), "--json"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["devices"] == len(devices)
    # no key in what the CLI printed about the config, nor in the files but as Mosquitto's hashes
    assert all(k.hex() not in p.stdout + (conf / "passwd").read_text() for k in keys.values())
    return db, keys, conf, (conf / "collector.password").read_text().strip(), r


def _sealed(key, dev, ctr, first=0, n=2):
    b = bytearray(batch(3, 0, first, [seg(dev, first + i, first + i) for i in range(n)]))
    b[0] = K.SEALED_FORMAT
    return K.seal(key, bytes(b), ctr)


def test_mosquitto_with_the_fleets_acl_denies_a_device_on_another_devices_topic(tmp_path):
    db, keys, conf, cpw, r = _setup(tmp_path, (1, 2))
    assert r["tool"] == "mosquitto_passwd" or "$7$" in (conf / "passwd").read_text()
    m = Mosq(tmp_path, conf)
    store = Store(db)
    col = Collector(f"mqtt://127.0.0.1:{m.port}", store, username="roadnode-collector", password=cpw).start()
    try:
        assert col.connected.wait(20), "the collector could not log in"
        bad, rc = _client(m.port, "1", "wrong", "x")
        assert rc.is_failure
        bad.loop_stop()
        nobody, rc = _client(m.port, "77", K.mqtt_password(K.generate()), "y")
        assert rc.is_failure
        nobody.loop_stop()
        c1, rc = _client(m.port, "1", K.mqtt_password(keys[1]), "roadnode-1")
        assert not rc.is_failure
        # device 1 publishes as device 2 (with 2's key even): the broker drops it, 2's topic is not 1's
        c1.publish("roadnode/2/up", _sealed(keys[2], 2, 0), qos=1).wait_for_publish(10)
        c1.publish("roadnode/1/ack", b"\x03\x00\x00\x00\x05\x00\x00\x00", qos=1).wait_for_publish(10)
        # its own topic: stored and acknowledged
        acks = []
        c1.on_message = lambda cl, u, msg: acks.append(bytes(msg.payload))
        c1.subscribe("roadnode/1/ack", 1)
        c1.subscribe("roadnode/2/ack", 1)  # (not allowed to read: nothing comes)
        c1.publish("roadnode/1/up", _sealed(keys[1], 1, 0), qos=1).wait_for_publish(10)
        wait(lambda: store.count("packets") >= 2, 20, "device 1's batch stored")
        wait(lambda: acks, 20, "device 1's ack")
        c1.loop_stop()
        c1.disconnect()
        st = col.stats()
        assert [r[0] for r in store.packets()] == [1, 1]  # nothing of device 2's
        assert st["rejected"] == 0 and st["batches"] == 1, st  # the denied message never reached it
        assert acks == [bytes.fromhex("0300000001000000")]  # its own ack, not the forged one (denied)
    finally:
        col.stop()
        store.close()
        m.stop()


def _make_ca(d):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "roadnode test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (d / "ca.pem").write_bytes(ca.public_bytes(pem))
    (d / "server.pem").write_bytes(cert.public_bytes(pem))
    (d / "server.key").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    (d / "server.key").chmod(0o600)
    return {"ca": str(d / "ca.pem"), "cert": str(d / "server.pem"), "key": str(d / "server.key")}


def test_tls_with_a_test_ca_and_the_collector_connecting_with_ca(tmp_path):
    db, keys, conf, cpw, _ = _setup(tmp_path, (5,))
    tls = _make_ca(tmp_path)
    m = Mosq(tmp_path, conf, tls)
    (tmp_path / "cpw").write_text(cpw)
    col = subprocess.Popen(ENTRY + ["collect", "--broker", f"mqtts://127.0.0.1:{m.port}", "--db", db, "--json",
                                    "--stats-every", "0.2", "--user", "roadnode-collector", "--password-file",
                                    str(tmp_path / "cpw"), "--ca", tls["ca"]],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    threading.Thread(target=lambda: lines.extend(json.loads(x) for x in col.stdout), daemon=True).start()
    try:
        wait(lambda: any(x.get("connected") for x in lines), 30, "the collector connected over TLS")
        # without the CA the broker's certificate is not trusted
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="z")
        c.tls_set()
        with pytest.raises(ssl.SSLError):
            c.connect("127.0.0.1", m.port)
        n, rc = _client(m.port, "5", K.mqtt_password(keys[5]), "roadnode-5", tls_ca=tls["ca"])
        assert not rc.is_failure
        n.publish("roadnode/5/up", _sealed(keys[5], 5, 0, n=3), qos=1).wait_for_publish(10)
        wait(lambda: any(x.get("stored", 0) >= 3 for x in lines), 30, "stored over TLS")
        n.loop_stop()
        n.disconnect()
    finally:
        col.terminate()
        col.wait(60)
        m.stop()
    assert col.returncode == 0, col.stderr.read()[-2000:]


@pytest.mark.slow
def test_the_firmware_node_with_a_key_reports_through_the_acl_broker_across_power_cuts(tmp_path, monkeypatch):
    """The unchanged firmware on the simulated board, key.bin on its flash, no MQTT user configured:
    it logs in as its id with the key's password, seals every batch and heartbeat; a power cut in
    the middle; the collector (keys required) stores all it measured, once, and refuses nothing."""
    from roadnode.scenario import make_scenario
    from roadnode.sim.offline import run_scenario

    monkeypatch.setenv("RNSIM_CPU_RATIO", "0")
    dev = 42
    db, keys, conf, cpw, _ = _setup(tmp_path, (dev,))
    m = Mosq(tmp_path, conf)
    store = Store(db)
    col = Collector(f"mqtt://127.0.0.1:{m.port}", store, username="roadnode-collector", password=cpw,
                    auth=True).start()
    sc = make_scenario(iso_class="C", length_m=1500, speed_kmh=50, seed=4)
    try:
        assert col.connected.wait(20)
        cfg = {"device_id": dev, "heartbeat_s": 10, "stop_close_s": 20, "uplink": "mqtt", "wifi_ssid": "depot",
               "wifi_password": "roadnode", "mqtt_host": "127.0.0.1", "mqtt_port": m.port}
        r = run_scenario(sc, settings=cfg, power_cuts=[50.0], linger_s=40, key=keys[dev])
        store.settled(dev)
    finally:
        col.stop()
        m.stop()
    rows = store.packets(dev)
    counters = store.list_keys()
    store.close()
    st = col.stats()
    assert r["boots"] == 2 and r["net"]["connects"] >= 2
    segs = [x for x in rows if x[3] == "segment"]
    seqs = [x[2] for x in rows]
    assert len(segs) >= 10 and seqs == sorted(set(seqs)) == list(range(seqs[0], seqs[0] + len(seqs)))
    assert st["rejected"] == 0 and st["statuses"] >= 1, st  # sealed heartbeats too; no replay after the cut
    # the counter went on past the power cut: the second boot started a stride (1024) ahead
    assert counters[0]["last_counter"] >= 1024, counters
    print(f"\nfirmware node {dev}: {len(rows)} packets ({len(segs)} segments) in {st['batches']} sealed batches, "
          f"{st['statuses']} sealed heartbeats, last counter {counters[0]['last_counter']}, 0 refused")


@pytest.mark.slow
def test_the_builtin_password_hashes_are_mosquittos_format(tmp_path, monkeypatch):
    """Without mosquitto_passwd, broker-config writes the $7$ (PBKDF2-SHA512) lines itself: Mosquitto
    takes them (the right password logs in, a wrong one does not)."""
    from pathlib import Path

    from roadnode.fleet import brokerconf

    monkeypatch.setattr(brokerconf.shutil, "which", lambda name: None)
    key = K.generate()
    r = brokerconf.write(Path(tmp_path / "conf"), {8: key}, "col", "colpw")
    assert r["tool"] == "builtin" and (tmp_path / "conf" / "passwd").read_text().count("$7$101$") == 2
    m = Mosq(tmp_path, tmp_path / "conf")
    try:
        c, rc = _client(m.port, "8", K.mqtt_password(key), "roadnode-8")
        assert not rc.is_failure
        c.loop_stop()
        c.disconnect()
        c, rc = _client(m.port, "col", "colpw", "col")
        assert not rc.is_failure
        c.loop_stop()
        c.disconnect()
        c, rc = _client(m.port, "8", "not-it", "roadnode-8b")
        assert rc.is_failure
        c.loop_stop()
    finally:
        m.stop()
