"""The simulated board's network (sim/mpy/network.py, socket.py): the ESP32's WLAN station on a simulated
access point, the node's sockets as real sockets to real servers, the outages applied below the firmware,
board time kept in step with real round trips; and `roadnode sim run` with --net-outage, --power-cut and
--uplink mqtt --broker.

The MicroPython scripts here play the firmware's part: they run on the unix port with the board's shims,
in virtual (fast) time, against real TCP servers started by the test (a threaded echo server, or the real
MQTT broker). Times in the scripts are board times; the servers record what really reached them."""

from __future__ import annotations

import json
import socket as pysocket
import subprocess
import threading
import time

import numpy as np
import pytest

from roadnode.mpy import runtime
from roadnode.mpy.runtime import ESP32_HEAP, SIM_HEAP_ALLOWANCE
from roadnode.scenario import make_scenario
from roadnode.mpy.runtime import NET_HEAP
from roadnode.sim.faults import NET_KINDS
from roadnode.sim.offline import run_scenario

# ---- helpers -------------------------------------------------------------------------------------------

PRE = """
import json, time, utime, errno, network, socket, select, simhw, simclock
def out(**k):
    print("R " + json.dumps(k))
def ms():
    return time.ticks_ms()
def since(t):
    return time.ticks_diff(ms(), t)
def err(f, *a):
    try:
        f(*a)
    except OSError as e:
        return errno.errorcode.get(e.args[0], e.args[0]) if isinstance(e.args[0], int) else str(e)
    return None
w = network.WLAN(network.STA_IF)
def up(ssid="depot", key="roadnode"):
    w.active(True)
    w.connect(ssid, key)
    while not w.isconnected():
        time.sleep_ms(50)
def conn(port, limit_ms=60000):
    # a non-blocking connect as the firmware makes it, one look per 50 ms pass
    s = socket.socket()
    s.setblocking(False)
    e = err(s.connect, ("127.0.0.1", port))
    assert e == "EINPROGRESS", e
    p = select.poll()
    p.register(s, select.POLLOUT)
    t = ms()
    while since(t) < limit_ms:
        for _, ev in p.ipoll(0):
            return s, ev, since(t)
        time.sleep_ms(50)
    return s, 0, since(t)
def read(s, n, limit_ms):
    # what arrives within limit_ms of board time, one readinto per 50 ms pass (errors: their name)
    b = bytearray(n)
    got = 0
    t = ms()
    while got < n and since(t) < limit_ms:
        try:
            k = s.readinto(memoryview(b)[got:])
        except OSError as e:
            return bytes(b[:got]), errno.errorcode.get(e.args[0], e.args[0]), since(t)
        if k == 0:
            return bytes(b[:got]), "EOF", since(t)
        if k:
            got += k
            continue
        time.sleep_ms(50)
    return bytes(b[:got]), None, since(t)
def at(t_us):
    # let board time pass (50 ms passes) until t_us since the script's start
    while simclock.now_us() - T0 < t_us:
        time.sleep_ms(50)
T0 = simclock.now_us()
"""


def _mpy(code: str, env: dict | None = None, timeout: float = 300) -> list[dict]:
    """Run code on the simulated board's shims (network on); its ``R {json}`` lines."""
    e = runtime.micropython_env([], sim=True)
    e["RNSIM_NET"] = "1"
    e.update(env or {})
    cmd = runtime.micropython_cmd(["-c", PRE + code], heap=ESP32_HEAP + SIM_HEAP_ALLOWANCE + NET_HEAP)
    p = subprocess.run(cmd, env=e, capture_output=True, timeout=timeout)
    assert p.returncode == 0, (p.stdout.decode()[-1500:], p.stderr.decode()[-3000:])
    return [json.loads(line[2:]) for line in p.stdout.decode().splitlines() if line.startswith("R ")]


def _by(rows: list[dict]) -> dict:
    return {r["k"]: r for r in rows}


def wait_for(cond, timeout: float = 30.0, what: str = "condition"):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class Server:
    """A real TCP server on 127.0.0.1: echoes what each connection sends (after ``delay`` s of real
    time; never with ``answer=False``) and records per connection the bytes received and how it ended
    ("eof", "reset")."""

    def __init__(self, delay: float = 0.0, answer: bool = True):
        self.delay, self.answer = delay, answer
        self.sock = pysocket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[dict] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            rec = {"data": bytearray(), "end": None}
            self.conns.append(rec)
            threading.Thread(target=self._serve, args=(c, rec), daemon=True).start()

    def _serve(self, c, rec):
        with c:
            while True:
                try:
                    d = c.recv(65536)
                except ConnectionResetError:
                    rec["end"] = "reset"
                    return
                except OSError:
                    rec["end"] = "error"
                    return
                if not d:
                    rec["end"] = "eof"
                    return
                rec["data"] += d
                if self.answer:
                    if self.delay:
                        time.sleep(self.delay)
                    try:
                        c.sendall(d)
                    except OSError:
                        pass

    def close(self):
        self._stop = True
        self.sock.close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


# ---- the WLAN station ----------------------------------------------------------------------------------


def test_wlan_station_as_on_the_esp32():
    r = _by(_mpy("""
import machine
out(k="init", active=w.active(), status=w.status(), conn=w.isconnected(), same=network.WLAN(network.STA_IF) is w,
    ifc=w.ifconfig())
out(k="inactive", e=err(w.connect, "depot", "roadnode"))
w.active(True)
t = ms()
aps = w.scan()
out(k="scan", aps=[[a[0].decode(), a[2], a[3], a[4]] for a in aps], ms=since(t))
out(k="mac", ok=w.config("mac") == machine.unique_id(), n=len(w.config("mac")), reconnects=w.config("reconnects"))
t = ms()
w.connect("depot", "roadnode")
out(k="connect", ret_ms=since(t), status=w.status(), conn=w.isconnected(), ifc=w.ifconfig())
while not w.isconnected():
    time.sleep_ms(50)
out(k="up", ms=since(t), status=w.status(), ifc=w.ifconfig(), rssi=w.status("rssi"), ssid=w.config("ssid"))
w.disconnect()
out(k="down", status=w.status(), conn=w.isconnected(), ifc=w.ifconfig(), rssi=err(w.status, "rssi"))
w.connect("depot", "not-the-key")
time.sleep(10)
out(k="badkey", status=w.status(), conn=w.isconnected())
w.connect("elsewhere", "roadnode")
time.sleep(5)
out(k="noap", status=w.status(), conn=w.isconnected())
w.active(False)
out(k="off", status=w.status(), active=w.active(), scan=err(w.scan))
out(k="consts", idle=network.STAT_IDLE, connecting=network.STAT_CONNECTING, got=network.STAT_GOT_IP,
    noap=network.STAT_NO_AP_FOUND, wrong=network.STAT_WRONG_PASSWORD)
"""))
    c = r["consts"]
    assert (c["idle"], c["connecting"], c["got"], c["noap"], c["wrong"]) == (1000, 1001, 1010, 201, 202)
    assert r["init"] == {"k": "init", "active": False, "status": 1000, "conn": False, "same": True,
                         "ifc": ["0.0.0.0"] * 4}
    assert r["inactive"]["e"] == "Wifi Not Started"
    assert r["scan"]["aps"] == [["depot", 6, -61, 3]] and r["scan"]["ms"] >= 1500  # a scan blocks
    assert r["mac"] == {"k": "mac", "ok": True, "n": 6, "reconnects": -1}
    # connect() returns at once; the association takes board time in the background
    assert r["connect"]["ret_ms"] < 50 and r["connect"]["status"] == 1001 and not r["connect"]["conn"]
    assert 1900 <= r["up"]["ms"] <= 2200 and r["up"]["status"] == 1010
    ip, mask, gw, dns = r["up"]["ifc"]
    assert ip.startswith("192.168.1.") and mask == "255.255.255.0" and gw == "192.168.1.1" and dns.count(".") == 3
    assert r["up"]["rssi"] == -61 and r["up"]["ssid"] == "depot"
    assert r["down"] == {"k": "down", "status": 1000, "conn": False, "ifc": ["0.0.0.0"] * 4, "rssi": "Wifi Not Connected"}
    assert r["badkey"] == {"k": "badkey", "status": 202, "conn": False}
    assert r["noap"] == {"k": "noap", "status": 201, "conn": False}
    assert r["off"]["status"] == 1000 and r["off"]["active"] is False and r["off"]["scan"] == "STA must be active"


def test_access_points_come_from_the_host():
    aps = [{"ssid": "yard", "key": ""}, {"ssid": "depot-2", "key": "k2", "channel": 11, "rssi": -77}]
    r = _by(_mpy("""
w.active(True)
out(k="scan", aps=sorted([[a[0].decode(), a[2], a[3], a[4]] for a in w.scan()]))
up("yard", None)
out(k="open", ok=w.isconnected())
up("depot-2", "k2")
out(k="second", ok=w.isconnected(), ch=w.config("channel"), rssi=w.status("rssi"))
""", env={"RNSIM_WIFI": json.dumps(aps)}))
    assert r["scan"]["aps"] == [["depot-2", 11, -77, 3], ["yard", 6, -61, 0]]
    assert r["open"]["ok"] and r["second"] == {"k": "second", "ok": True, "ch": 11, "rssi": -77}


# ---- sockets -------------------------------------------------------------------------------------------


def test_sockets_are_real_and_behave_as_the_esp32s(server):
    r = _by(_mpy(f"""
out(k="down", dns=err(socket.getaddrinfo, "localhost", {server.port}), conn=err(socket.socket().connect,
    ("127.0.0.1", {server.port})))
up()
out(k="ai", ai=[list(a[:4]) + [list(a[4])] for a in socket.getaddrinfo("localhost", {server.port})])
s, ev, t = conn({server.port})
out(k="conn", ev=ev, ms=t)
out(k="empty", e=err(s.recv, 10), ri=s.readinto(bytearray(4)), rd=s.read(4))
n = s.send(b"a" * 8000)
back, e, t = read(s, n, 5000)
out(k="big", n=n, back=len(back), e=e)
out(k="again", e=err(s.connect, ("127.0.0.1", {server.port})))
s.close()
out(k="closed", e=err(s.send, b"x"))
"""))
    # no WLAN: a name does not resolve (the port's -202), a connect finds no route
    assert r["down"] == {"k": "down", "dns": -202, "conn": "EHOSTUNREACH"}
    assert r["ai"]["ai"] == [[2, 1, 0, "localhost", ["127.0.0.1", server.port]]]
    assert r["conn"]["ev"] & 4 and r["conn"]["ms"] <= 500  # POLLOUT within a few passes
    assert r["empty"] == {"k": "empty", "e": "EAGAIN", "ri": None, "rd": None}
    # one send takes what lwIP's send buffer holds (5,744 bytes), as on the ESP32; the echo comes back
    assert r["big"] == {"k": "big", "n": 5744, "back": 5744, "e": None}
    assert r["again"]["e"] == 106 and r["closed"]["e"] == "EBADF"  # EISCONN: errno does not name it
    wait_for(lambda: server.conns and server.conns[0]["end"], what="the close reaching the server")
    assert bytes(server.conns[0]["data"]) == b"a" * 5744 and server.conns[0]["end"] == "eof"


def test_dns_through_the_access_points_forwarder():
    """The node resolves names itself (UDP to the DNS server DHCP gave it): the simulated AP answers from
    the host's resolver, so a broker named `localhost` works; no answer in a blackhole, no route without
    the WLAN."""
    r = _by(_mpy("""
def query(name, tid):
    q = bytes((tid >> 8, tid & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0))
    for p in name.split("."):
        q += bytes((len(p),)) + p.encode()
    return q + b"\\x00\\x00\\x01\\x00\\x01"
def ask(name, tid, limit_ms=3000):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.setblocking(False)
    p = select.poll()
    p.register(u, select.POLLIN)
    u.sendto(query(name, tid), (w.ifconfig()[3], 53))
    t = ms()
    while since(t) < limit_ms:
        for _ in p.ipoll(0):
            a = u.recv(512)
            u.close()
            ip = ".".join(str(x) for x in a[-4:]) if a[7] else None
            return {"id": a[0] << 8 | a[1], "rcode": a[3] & 15, "answers": a[7], "ip": ip, "ms": since(t)}
        time.sleep_ms(50)
    u.close()
    return None
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
out(k="down", e=err(u.sendto, b"x", ("192.168.1.1", 53)))
up()
out(k="dns", dns=w.ifconfig()[3], gw=w.ifconfig()[2])
out(k="localhost", a=ask("localhost", 0x1234))
out(k="nx", a=ask("no-such-host.invalid", 7))
simhw.faults["net"] = [[simclock.now_us(), simclock.now_us() + 10000000, "blackhole"]]
out(k="hole", a=ask("localhost", 9))
"""))
    assert r["down"]["e"] == "EHOSTUNREACH"
    assert r["dns"]["dns"] == r["dns"]["gw"] == "192.168.1.1"
    a = r["localhost"]["a"]
    assert (a["id"], a["rcode"], a["answers"], a["ip"]) == (0x1234, 0, 1, "127.0.0.1") and a["ms"] <= 100
    assert r["nx"]["a"]["rcode"] == 3 and r["nx"]["a"]["answers"] == 0 and r["nx"]["a"]["id"] == 7
    assert r["hole"]["a"] is None


# ---- outages -------------------------------------------------------------------------------------------


def test_assoc_outage_drops_the_station_and_its_connections(server):
    r = _by(_mpy(f"""
up()
s, ev, t = conn({server.port})
s.send(b"before")
b, e, t = read(s, 6, 2000)
out(k="before", b=b.decode(), e=e)
simhw.faults["net"] = [[T0 + 10000000, T0 + 40000000, "assoc"]]
at(12000000)  # the AP is gone; the station has not noticed yet (beacon timeout): a silence
out(k="silent", conn=w.isconnected(), n=s.send(b"lost"), status=w.status())
b, e, t = read(s, 4, 1000)
out(k="nothing", b=b.decode(), e=e)
at(16500000)  # 10 s + 6 s: the station noticed
out(k="noticed", conn=w.isconnected(), status=w.status(), e1=err(s.send, b"x"), e2=err(s.send, b"x"),
    new=err(socket.socket().connect, ("127.0.0.1", {server.port})), ifc=w.ifconfig()[0])
at(30000000)
out(k="rescans", status=w.status())
t = ms()
while not w.isconnected():
    time.sleep_ms(50)
out(k="back", at_ms=time.ticks_diff(ms(), 0) if False else (simclock.now_us() - T0) // 1000)
s2, ev, t = conn({server.port})
s2.send(b"after")
b, e, t = read(s2, 5, 2000)
out(k="after", b=b.decode(), e=e)
s2.close()
out(k="stats", lost=network.stats["links_lost"], dropped=network.stats["dropped"])
"""))
    assert r["before"] == {"k": "before", "b": "before", "e": None}
    assert r["silent"]["conn"] is True and r["silent"]["n"] == 4 and r["silent"]["status"] == 1010
    assert r["nothing"]["b"] == "" and r["nothing"]["e"] is None
    n = r["noticed"]
    assert n["conn"] is False and n["status"] in (1001, 201) and n["ifc"] == "0.0.0.0"
    assert (n["e1"], n["e2"], n["new"]) == ("ECONNRESET", "ENOTCONN", "EHOSTUNREACH")
    assert r["rescans"]["status"] == 201  # NO_AP_FOUND while it rescans
    assert 40000 <= r["back"]["at_ms"] <= 40000 + 1500 + 2000 + 200  # the next scan, then association
    assert r["after"]["b"] == "after"
    assert r["stats"] == {"k": "stats", "lost": 1, "dropped": 1}
    wait_for(lambda: len(server.conns) == 2 and all(c["end"] for c in server.conns), what="both connections to end")
    first, second = server.conns
    # the bytes sent into the dead air never arrived; the broker side of the dead connection was reset
    assert bytes(first["data"]) == b"before" and first["end"] == "reset"
    assert bytes(second["data"]) == b"after" and second["end"] == "eof"


def test_assoc_outage_shorter_than_the_beacon_timeout_is_only_a_silence(server):
    r = _by(_mpy(f"""
up()
s, ev, t = conn({server.port})
simhw.faults["net"] = [[T0 + 5000000, T0 + 9000000, "assoc"]]
at(6000000)
s.send(b"held")
b, e, t = read(s, 4, 2000)
out(k="during", b=b.decode(), conn=w.isconnected())
b, e, t = read(s, 4, 10000)
out(k="after", b=b.decode(), e=e, at_ms=(simclock.now_us() - T0) // 1000, conn=w.isconnected())
"""))
    assert r["during"] == {"k": "during", "b": "", "conn": True}
    assert r["after"]["b"] == "held" and r["after"]["e"] is None and r["after"]["conn"]
    assert 9000 <= r["after"]["at_ms"] <= 11000  # delivered once the AP came back
    assert bytes(server.conns[0]["data"]) == b"held"


@pytest.mark.parametrize("kind,open_err,connect_err", [("reset", "ECONNRESET", "ECONNRESET"),
                                                       ("unreachable", "EHOSTUNREACH", "EHOSTUNREACH"),
                                                       ("refused", "ECONNRESET", "ECONNREFUSED")])
def test_outages_that_break_tcp_but_keep_the_wlan(server, kind, open_err, connect_err):
    r = _by(_mpy(f"""
up()
s, ev, t = conn({server.port})
simhw.faults["net"] = [[T0 + 5000000, T0 + 15000000, "{kind}"]]
at(6000000)
out(k="open", e1=err(s.send, b"x"), e2=err(s.recv, 1), conn=w.isconnected())
s2 = socket.socket()
s2.setblocking(False)
e0 = err(s2.connect, ("127.0.0.1", {server.port}))
p = select.poll()
p.register(s2, select.POLLOUT | select.POLLIN)
ev = [e for _, e in p.ipoll(0)]
out(k="new", e0=e0, ev=ev, e1=err(s2.send, b"x"))
at(15000000)
s3, ev, t = conn({server.port})
s3.send(b"ok")
b, e, t = read(s3, 2, 2000)
out(k="after", b=b.decode(), e=e)
"""))
    assert r["open"] == {"k": "open", "e1": open_err, "e2": "ENOTCONN", "conn": True}
    # a non-blocking connect says EINPROGRESS; the refusal shows in poll (hang-up, error) and the next call
    assert r["new"]["e0"] == "EINPROGRESS" and r["new"]["ev"] and r["new"]["ev"][0] & 24 == 24
    assert r["new"]["e1"] == connect_err
    assert r["after"] == {"k": "after", "b": "ok", "e": None}


def test_blackhole_holds_data_then_delivers_or_times_out(server):
    r = _by(_mpy(f"""
up()
s, ev, t = conn({server.port})
simhw.faults["net"] = [[T0 + 5000000, T0 + 35000000, "blackhole"], [T0 + 60000000, T0 + 400000000, "blackhole"]]
at(5500000)
out(k="send", n=s.send(b"ping"), conn=w.isconnected())
b, e, t = read(s, 4, 40000)
out(k="echo", b=b.decode(), e=e, at_ms=(simclock.now_us() - T0) // 1000)
# a connect into the hole: in progress, nothing comes back
s2 = socket.socket()
s2.setblocking(False)
at(61000000)
e0 = err(s2.connect, ("127.0.0.1", {server.port}))
p = select.poll()
p.register(s2, select.POLLOUT)
t = ms()
while not list(p.ipoll(0)):
    time.sleep_ms(50)
out(k="syn", e0=e0, ms=since(t), e1=err(s2.send, b"x"))
# data into the hole: TCP retransmits, then gives up
s.send(b"gone")
t = ms()
b, e, t2 = read(s, 4, 300000)
out(k="rtx", e=e, ms=t2)
"""))
    assert r["send"] == {"k": "send", "n": 4, "conn": True}
    assert r["echo"]["b"] == "ping" and 35000 <= r["echo"]["at_ms"] <= 37000  # held until the hole closed
    assert r["syn"]["e0"] == "EINPROGRESS" and 29000 <= r["syn"]["ms"] <= 31000 and r["syn"]["e1"] == "ETIMEDOUT"
    assert r["rtx"]["e"] == "ETIMEDOUT" and 119000 <= r["rtx"]["ms"] <= 121000
    wait_for(lambda: len(server.conns) == 1 and server.conns[0]["end"], what="the dead connection's reset")
    assert bytes(server.conns[0]["data"]) == b"ping"  # once, after the hole; "gone" never arrived
    assert server.conns[0]["end"] == "reset"


def test_kinds_are_the_same_on_both_sides():
    r = _by(_mpy('out(k="kinds", kinds=list(network.KINDS))'))
    assert tuple(r["kinds"]["kinds"]) == NET_KINDS


def test_live_outage_through_the_simboard_api(tmp_path):
    """SimBoard.net_outage()/net_restore() while the board runs, and outages scheduled at its start."""
    from roadnode.sim.board import SimBoard, wait_repl

    b = SimBoard(flash_dir=tmp_path / "flash", net_outages=["0:20:assoc"]).start()
    try:
        wait_repl(b.port)

        def run(code: str) -> dict:
            p = subprocess.run([*_mpremote(b.port), "exec", PRE + code], capture_output=True, text=True, timeout=120)
            assert p.returncode == 0, p.stderr
            return _by([json.loads(x[2:]) for x in p.stdout.splitlines() if x.startswith("R ")])

        # scheduled: the AP is away for the first 20 s after each power-on (mpremote's soft reset is one)
        r = run("w.active(True)\nw.connect('depot', 'roadnode')\ntime.sleep(2)\nout(k='a', s=w.status())\n"
                "up()\nout(k='b', t=simclock.now_us() // 1000)")
        assert r["a"]["s"] == 201 and 20000 <= r["b"]["t"] <= 20000 + 1500 + 2000 + 100
        # live: from now until net_restore(), whatever the board's clock says
        b.net_outage("assoc")
        later = "while simclock.now_us() < 21000000:\n    time.sleep_ms(50)\nw.active(True)\nw.connect('depot', 'roadnode')\n"
        r = run(later + "time.sleep(8)\nout(k='a', s=w.status())")
        assert r["a"]["s"] == 201  # the AP stays away while the outage lasts
        b.net_restore()
        r = run(later + "while not w.isconnected():\n    time.sleep_ms(50)\nout(k='b', t=simclock.now_us() // 1000)")
        assert 21000 <= r["b"]["t"] <= 21000 + 2000 + 100
    finally:
        b.stop()


def _mpremote(port: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "mpremote", "connect", port]


# ---- board time and real time --------------------------------------------------------------------------


def test_a_real_round_trip_costs_board_time_of_its_order_not_minutes():
    """A server that answers after 200 ms of real time: the firmware looks once per 50 ms pass. Paced,
    the board's clock shows a few seconds at most (1:1 for the first 20 ms, then at most 20x real);
    without pacing (RNSIM_NET_PACE=0) fast mode spins through minutes of passes meanwhile."""
    srv = Server(delay=0.2)
    quick = Server()
    code = f"""
up()
def trip(port):
    s, ev, t = conn(port)
    r0 = utime.ticks_ms()
    t = ms()
    s.send(b"?")
    b, e, t = read(s, 1, 100000000)
    out(k="trip", board_ms=t, real_ms=utime.ticks_diff(utime.ticks_ms(), r0), b=b.decode())
    s.close()
trip({quick.port})
trip({srv.port})
"""
    try:
        paced = _mpy(code)
        free = _mpy(code, env={"RNSIM_NET_PACE": "0"})
    finally:
        srv.close()
        quick.close()
    for name, rows in (("paced", paced), ("unpaced", free)):
        for r, what in zip(rows, ("immediate answer", "answer after 200 ms")):
            print(f"{name:8} {what:20}: {r['real_ms']:5d} ms real -> {r['board_ms']:7d} ms of board time")
    (q, slow), (_, slow_free) = paced, free
    assert q["b"] == slow["b"] == "?" and slow["real_ms"] >= 200
    for r in (q, slow):  # board time at most 1:1 for 20 ms, then 20x real, plus one 50 ms pass (and one look)
        assert r["board_ms"] <= 20 + 20 * r["real_ms"] + 100, r
    assert slow_free["board_ms"] > 20 * slow_free["real_ms"]  # what the pacing prevents


def test_a_drive_without_network_traffic_is_not_slowed(monkeypatch):
    """The network modules on a console-uplink drive: not one wait, the same packets bit for bit as a
    board without them (charging off: the comparison is exact), and the speed (printed) unchanged."""
    monkeypatch.setenv("RNSIM_CPU_RATIO", "0")
    sc = make_scenario(iso_class="C", length_m=600, speed_kmh=60, seed=5)
    t = time.monotonic()
    a = run_scenario(sc, settings={"heartbeat_s": 10}, net=True)
    ta = time.monotonic() - t
    t = time.monotonic()
    b = run_scenario(sc, settings={"heartbeat_s": 10}, net=False)
    tb = time.monotonic() - t
    d = sc.meta["duration_s"]
    print(f"{d:.0f} s drive: {d / ta:.0f}x real time with the network modules, {d / tb:.0f}x without")
    assert a["net"]["pace_waits"] == 0 and a["net"]["connects"] == 0 and b["net"] is None

    def same(pk):  # (the free heap differs: the heap holds the network modules or not)
        return [{k: v for k, v in p.items() if "free_heap" not in k} for p in pk]

    assert same(a["packets"]) == same(b["packets"]) and len(a["packets"]) > 5


# ---- sim run: power cuts and the CLI -------------------------------------------------------------------


@pytest.fixture(scope="module")
def drive_file(tmp_path_factory):
    from roadnode.scenario.fileformat import save_scenario

    sc = make_scenario(iso_class="C", length_m=1200, speed_kmh=60, seed=21)
    p = tmp_path_factory.mktemp("drive") / "drive.npz"
    save_scenario(sc, p)
    return p, sc


def _drive_time(sc, seg) -> float:
    """The scenario's time at the segment's reported position (nearest point of the true track)."""
    d = (sc.truth_lat - seg["lat"]) ** 2 + ((sc.truth_lon - seg["lon"]) * np.cos(np.radians(seg["lat"]))) ** 2
    return float(sc.truth_t_s[int(np.argmin(d))])


def test_sim_run_power_cuts_reboot_the_node_while_the_drive_goes_on(cli, drive_file):
    path, sc = drive_file
    r = cli("sim", "run", str(path), "--set", "heartbeat_s=10", "--power-cut", "25", "--power-cut", "45", "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    summ, pk = rows[-1], rows[:-1]
    assert summ["boots"] == 3 and [round(t) for t in summ["power_cuts"]] == [25, 45]
    # each boot begins with its boot heartbeat: power-on (a cut is no reset the node chose)
    boots = [i for i, p in enumerate(pk) if p["type"] == "status" and p["uptime_s"] == 0]
    assert len(boots) == 3 and all(pk[i]["reset_reason"] == "power_on" for i in boots)
    parts = [pk[a:b] for a, b in zip(boots, boots[1:] + [len(pk)])]
    segs = [[p for p in part if p["type"] == "segment"] for part in parts]
    print(f"boots {summ['boots']}, cuts at {summ['power_cuts']} s, segments per boot {[len(s) for s in segs]}")
    assert segs[0] and segs[2], [len(s) for s in segs]  # before the cuts, and the drive's later segments
    # where each boot's segments lie on the road (in the scenario's time, which starts with the first
    # boot's first IMU sample, 1-3 s after power-on): the first boot's before its cut, the last boot's
    # after the last cut, up to the end of the drive (the tapes went on while the node was off and booting)
    t_first = [_drive_time(sc, s) for s in segs[0]]
    t_last = [_drive_time(sc, s) for s in segs[2]]
    assert max(t_first) < 25 and min(t_last) > 45 - 3, (t_first, t_last)
    assert t_last[-1] > sc.meta["duration_s"] - 10
    assert "gps_fix" in [p for p in parts[2] if p["type"] == "status"][-1]["flags"]


def test_power_cut_resumes_the_tapes_where_the_drive_is():
    sc = make_scenario(iso_class="C", length_m=700, speed_kmh=60, seed=8)
    r = run_scenario(sc, settings={"heartbeat_s": 10}, power_cuts=[20.0])
    heap = r["heap"]
    total = sc.imu_counts.shape[0]
    odr = sc.meta["imu"]["odr_hz"]
    # the restarted IMU began at the drive's sample of that moment (after the cut and the boot) ...
    t_cut = r["cuts"][0]
    assert (t_cut - 3) * odr < heap["skipped"] < (t_cut + 3) * odr
    # ... and played the tape to its end
    assert heap["skipped"] + heap["produced"] >= total
    hb = [p for p in r["packets"] if p["type"] == "status"]
    assert [h["uptime_s"] for h in hb].count(0) == 2


@pytest.mark.slow
def test_cli_flag_errors(cli, drive_file):
    path, _ = drive_file
    r = cli("sim", "run", str(path), "--uplink", "mqtt")
    assert r.returncode == 2 and "--broker" in r.stderr
    r = cli("sim", "run", str(path), "--net-outage", "10:20:flood")
    assert r.returncode == 2 and "unknown kind 'flood'" in r.stderr
    r = cli("sim", "run", str(path), "--net-outage", "20:10")
    assert r.returncode == 2 and "T0 < T1" in r.stderr
    r = cli("sim", "run", str(path), "--broker", "nohost:99999")
    assert r.returncode == 2 and "HOST:PORT" in r.stderr


@pytest.mark.slow
def test_sim_run_mqtt_through_outages_to_the_real_broker(cli, drive_file, mqtt_broker):
    """`sim run --uplink mqtt --broker` with an assoc outage: the node's packets reach the real broker
    before and after it, over a new connection (a subscriber here sees them)."""
    import paho.mqtt.client as mqtt

    path, _ = drive_file
    got: list[tuple[str, int]] = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-sub")
    c.on_message = lambda cl, u, m: got.append((m.topic, len(m.payload)))
    c.connect("127.0.0.1", mqtt_broker.port)
    c.subscribe("roadnode/#", qos=1)
    c.loop_start()
    try:
        r = cli("sim", "run", str(path), "--set", "device_id=77", "--set", "heartbeat_s=10", "--uplink", "mqtt",
                "--broker", f"127.0.0.1:{mqtt_broker.port}", "--net-outage", "20:45", "--json")
        assert r.returncode == 0, r.stderr
        summ = json.loads(r.stdout.splitlines()[-1])
        net = summ["net"]
        print(f"network: {net}")
        assert net["connects"] >= 2 and net["links_lost"] == 1 and net["assoc"] == 2 and net["bytes_out"] > 0
        wait_for(lambda: any(t == "roadnode/77/up" for t, _ in got), what="the node's packets at the broker")
    finally:
        c.loop_stop()
        c.disconnect()
