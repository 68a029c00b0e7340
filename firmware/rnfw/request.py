"""The console's request handlers (rnfw.console reads the request lines, this answers them): one
function per command, ``handler(console, req, cmd, args)`` with the console as ``self``, in
``table`` by command number.

Loaded for a request and unloaded after it (rnfw.console._handle), as rnfw.manifest is: requests
are rare, and the ~3 KB of their code stay off the heap while the node measures. During a replay,
whose requests come every pass, it stays loaded. Names are ones the firmware already has where it
can (every new name is a qstr on the node's heap).
"""

import sys

from micropython import const

import rnfw
from rnfw.version import VERSION_STR

# the protocol's numbers (rnfw.protocol; tests/firmware/test_firmware_consts.py holds them equal)
_PAYLOAD_MAX = const(160)
_WINDOW = const(256)
_CONFIG_SET = const(4)
_REPLAY_GPS = const(7)
_REPLAY_END = const(9)
_OK = const(0)
_MORE = const(1)
_BAD_VALUE = const(2)
_BAD_STATE = const(3)
_FAILED = const(5)


def who(self, req, cmd, args):
    """Who is there: firmware, board, id, uptime, replaying; why a config fell back or a boot failed."""
    import json

    node = self.node
    e = node.config_error
    d = {"fw": VERSION_STR, "board": node.board_name, "device_id": node.cfg["device_id"],
         "uptime_s": node.up_s, "replay": self.replay}
    if e:
        d["config_error"] = e[:64]
    st = node.vitals.config_status  # a fallback config: why, without "fallback: " (tools show it)
    if st != "ok":
        d["config_status"] = st[10:] if st.startswith("fallback: ") else st
    b = node.boot_text  # safe mode: why (only then)
    if b:
        d["boot_error"] = b
    if self.cap:
        d["capture"] = True
    for k in ("config_status", "boot_error"):  # cut to fit the reply's 160 bytes
        t = json.dumps(d, separators=(",", ":"))
        if k in d and len(t) > _PAYLOAD_MAX:
            d[k] = d[k][: max(0, len(d[k]) - len(t) + _PAYLOAD_MAX)]
    self.reply(req, _OK, json.dumps(d, separators=(",", ":")).encode())


def status(self, req, cmd, args):
    """The vitals now, as a status packet."""
    node = self.node
    self.reply(req, _OK, node.pkt, node.status_packet())


def get(self, req, cmd, args):
    """A piece of the config JSON from the u16 offset (MORE until its end)."""
    import json

    off = args[0] | (args[1] << 8) if len(args) >= 2 else 0
    text = json.dumps(self.node.cfg)  # ASCII (control characters refused): one copy, not two
    piece = text[off : off + _PAYLOAD_MAX].encode()
    self.reply(req, _MORE if off + _PAYLOAD_MAX < len(text) else _OK, piece)


def set(self, req, cmd, args):
    """config_set / config_reset: merged with the running config (or the defaults, identity
    kept) and stored for the next boot, where it is validated before it replaces /config.json
    (refused: config untouched, reason in `ping`). Not parsed here: validating needs rnfw.config
    (~6 KB), kept off the heap while the node measures; config.apply_pending() does it at boot."""
    import json

    node = self.node
    if cmd == _CONFIG_SET:
        try:
            new = json.loads(bytes(args))
        except ValueError:
            new = None
        if not isinstance(new, dict):
            self.reply(req, _BAD_VALUE, b"expected a JSON object of keys and values")
            return
        cfg = dict(node.cfg)
        cfg.update(new)
    else:
        cfg = {"device_id": node.cfg["device_id"]}  # defaults; identity survives
    try:
        rnfw.save(node.config_path + ".pending", json.dumps(cfg))  # a power cut leaves no half file
    except OSError as e:
        self.reply(req, _FAILED, ("cannot write the config: %s" % e).encode())
        return
    self.reply(req, _OK)
    self.after = 1  # applied by a restart: every part of the node starts from the new config


def manifest(self, req, cmd, args):
    """What is installed (rnfw.manifest, loaded for this request only)."""
    import json
    import os

    from rnfw import manifest

    node = self.node
    slot = manifest.active_slot()
    d, n = manifest.installed(slot) if slot else ("", 0)
    m = {"mpy": sys.implementation._mpy, "m": os.uname().machine, "fw": VERSION_STR, "board": node.board_name,
         "id": node.cfg["device_id"], "slot": slot, "d": d, "n": n,
         "cf": 1 if node.vitals.config_fallback else 0}
    try:  # "ik": the identity file holds this id, a flash need not write it (rnfw.config.identity)
        with open(node.config_path[: node.config_path.rfind("/") + 1] + "identity.json") as f:
            if json.load(f)["device_id"] == m["id"]:
                m["ik"] = 1
    except Exception:
        pass
    t = json.dumps(m, separators=(",", ":"))
    if len(t) > _PAYLOAD_MAX:  # the machine name (only informative) shortened: the JSON stays whole
        m["m"] = m["m"][: max(0, len(m["m"]) - len(t) + _PAYLOAD_MAX)]
        t = json.dumps(m, separators=(",", ":"))
    self.reply(req, _OK, t.encode())


def reset(self, req, cmd, args):
    """A deliberate restart, after the reply is out."""
    self.reply(req, _OK)
    self.after = 1


def start(self, req, cmd, args):
    """replay_start: stored for the next boot, which starts the replay from a clean node (as the
    simulated run starts from power-on) with its settings validated before the pipeline exists."""
    import json

    rnfw.save(self.node.config_path + ".replay", bytes(args))
    self.reply(req, _OK, json.dumps({"window": _WINDOW, "cap": len(self.node.samples) // 3}).encode())
    self.after = 1


def feed(self, req, cmd, args):
    """replay_gps / replay_imu / replay_end: the host's batches into the pipeline."""
    if not self.replay:
        self.reply(req, _BAD_STATE, b"not replaying: send replay_start first")
        return
    if cmd == _REPLAY_END:
        self.reply(req, _OK)
        self.after = 1  # measure live again from a clean start
        return
    node = self.node
    t = args[0] | (args[1] << 8) | (args[2] << 16) | (args[3] << 24)
    pipe = node.pipe
    if cmd == _REPLAY_GPS:
        pipe.feed_gps(args[4:], len(args) - 4, t)
    else:
        s = node.samples
        k = (len(args) - 5) // 2
        o = 3 * self.replay_n
        if o + k > len(s):
            self.replay_n = 0
            self.reply(req, _BAD_VALUE, b"IMU batch larger than the node's buffer")
            return
        for i in range(k):
            v = args[5 + 2 * i] | (args[6 + 2 * i] << 8)
            s[o + i] = v - 65536 if v & 0x8000 else v
        self.replay_n += k // 3
        if not args[4]:  # the last part: the whole batch goes in at once, as a drain does
            pipe.feed_imu(s, self.replay_n, t)
            self.replay_n = 0
            node.send_output()
    self.reply(req, _OK)


def capture(self, req, cmd, args):
    """capture (docs/protocol.md): u8 1 = start (a flag file, then a restart: the stream covers
    everything the pipeline sees from the boot), 0 = stop now. While it runs, any byte from the
    host (a newline a second) says it is still there: 10 s without one, the stream stops."""
    a = args[0] if len(args) else 0
    c = self.cap
    if a == 1:
        if self.replay or self.node.safe:
            self.reply(req, _BAD_STATE, b"no capture while replaying or in safe mode")
            return
        rnfw.save(self.node.config_path + ".capture", b"1")
        self.reply(req, _OK)  # (the host knows the lease: docs/protocol.md)
        self.after = 1
    elif a == 0 and c:
        c.stop(2)
        self.reply(req, _OK)
    else:
        self.reply(req, _BAD_STATE, b"not capturing")


# command number -> handler
table = (None, who, status, get, set, set, start, feed, feed, feed, reset, manifest, capture)
