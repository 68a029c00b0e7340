"""The collector's database: SQLite or PostgreSQL behind one interface, one schema.

``Store(url)`` opens ``sqlite:///PATH`` (or a plain file path; WAL, one writer, synchronous=FULL so an
acknowledged batch survives a power cut) or ``postgresql://...`` (psycopg 3). The schema is versioned
(table ``schema_version``) and brought up to date on opening by the ordered MIGRATIONS below, under a
lock so two collectors starting together migrate once.

Writes come in as many messages per transaction (`ingest`): packets are inserted by
(device_id, epoch, seq) ignoring those already there, so a batch sent again is harmless, and per
device and epoch the store keeps the highest seq up to which it holds everything (`progress`): that
is what may be acknowledged once the transaction has committed. Rows are written in key order and
progress rows locked first, so concurrent collectors on PostgreSQL never deadlock and never
acknowledge a seq that is not committed.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

from roadnode.errors import InputError, RoadnodeError
from roadnode.fleet.messages import Reject, Status, Up

SEG_FLAGS = ("below_min_speed", "stopped", "gps_lost", "fifo_overflow", "clipping", "partial", "body_mount", "imu_fault")


class StoreError(RoadnodeError):
    """The database cannot be reached or refused a write (exit code 3)."""

    exit_code = 3


def _mask(flags: list[str]) -> int:
    return sum(1 << SEG_FLAGS.index(f) for f in flags if f in SEG_FLAGS)


def flag_names(mask: int) -> list[str]:
    """The names of the segment flags set in ``mask``."""
    return [n for i, n in enumerate(SEG_FLAGS) if mask & (1 << i)]


# (version, what, statements). {BLOB} {REAL} {BIG} are the dialect's types. Never edit a released
# migration: append a new one.
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "packets, decoded segments/events/heartbeats, progress, devices, rejects, quarantine", [
        """CREATE TABLE IF NOT EXISTS packets (
            device_id {BIG} NOT NULL, epoch {BIG} NOT NULL, seq {BIG} NOT NULL,
            type TEXT NOT NULL, data {BLOB} NOT NULL, received_at {REAL} NOT NULL,
            PRIMARY KEY (device_id, epoch, seq))""",
        """CREATE TABLE segments (
            device_id {BIG} NOT NULL, epoch {BIG} NOT NULL, seq {BIG} NOT NULL,
            seg_index INTEGER NOT NULL, segment_length_m INTEGER NOT NULL, start_m {REAL} NOT NULL,
            end_m {REAL} NOT NULL, lat {REAL}, lon {REAL}, iri_m_per_km {REAL}, rms_g {REAL} NOT NULL,
            peak_g {REAL} NOT NULL, speed_kmh INTEGER NOT NULL, flags INTEGER NOT NULL,
            received_at {REAL} NOT NULL, PRIMARY KEY (device_id, epoch, seq))""",
        "CREATE INDEX segments_received ON segments (received_at)",
        """CREATE TABLE events (
            device_id {BIG} NOT NULL, epoch {BIG} NOT NULL, seq {BIG} NOT NULL, kind TEXT NOT NULL,
            peak_g {REAL} NOT NULL, lat {REAL}, lon {REAL}, dist_m {BIG} NOT NULL, speed_kmh INTEGER NOT NULL,
            tod_s INTEGER NOT NULL, received_at {REAL} NOT NULL, PRIMARY KEY (device_id, epoch, seq))""",
        """CREATE TABLE heartbeats (
            device_id {BIG} NOT NULL, epoch {BIG} NOT NULL, seq {BIG} NOT NULL, uptime_s {BIG} NOT NULL,
            reset_reason TEXT NOT NULL, unexpected_reboots INTEGER NOT NULL, queue_depth {BIG},
            received_at {REAL} NOT NULL, PRIMARY KEY (device_id, epoch, seq))""",
        """CREATE TABLE IF NOT EXISTS progress (
            device_id {BIG} NOT NULL, epoch {BIG} NOT NULL, acked_upto {BIG} NOT NULL,
            PRIMARY KEY (device_id, epoch))""",
        "ALTER TABLE progress ADD COLUMN max_seq {BIG} NOT NULL DEFAULT -1",
        # (a database of the first collector core, issue 12: what it holds beyond its acknowledgements)
        """UPDATE progress SET max_seq = COALESCE((SELECT MAX(seq) FROM packets p WHERE p.device_id = progress.device_id
            AND p.epoch = progress.epoch), -1)""",
        """CREATE TABLE quarantine (
            device_id {BIG} NOT NULL, epoch {BIG} NOT NULL, seq {BIG} NOT NULL, reason TEXT NOT NULL,
            data {BLOB} NOT NULL, received_at {REAL} NOT NULL, PRIMARY KEY (device_id, epoch, seq))""",
        """CREATE TABLE devices (
            device_id {BIG} PRIMARY KEY, last_seen {REAL}, online INTEGER, online_at {REAL},
            status {BLOB}, status_at {REAL}, queue_depth {BIG}, prev_queue_depth {BIG})""",
        """CREATE TABLE rejects (
            source TEXT NOT NULL, topic TEXT NOT NULL, reason TEXT NOT NULL, count {BIG} NOT NULL,
            last_at {REAL} NOT NULL, PRIMARY KEY (source, topic, reason))""",
    ]),
    (2, "device keys (docs/security.md)", [
        """CREATE TABLE device_keys (
            device_id {BIG} PRIMARY KEY, key {BLOB} NOT NULL, state TEXT NOT NULL, created_at {REAL} NOT NULL,
            revoked_at {REAL}, last_counter {BIG} NOT NULL DEFAULT -1)""",
    ]),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]
# the data tables' columns, in order, with their PostgreSQL types (its bulk path sends columns as arrays)
COLUMNS = {
    "packets": "bigint bigint bigint text bytea float8".split(),
    "segments": "bigint bigint bigint int int float8 float8 float8 float8 float8 float8 float8 int int float8".split(),
    "events": "bigint bigint bigint text float8 float8 float8 bigint int int float8".split(),
    "heartbeats": "bigint bigint bigint bigint text int bigint float8".split(),
    "quarantine": "bigint bigint bigint text bytea float8".split(),
    "devices": "bigint float8 int float8 bytea float8 bigint bigint".split(),
}

def _newer(at: str, col: str, value: str | None = None) -> str:
    """``col`` takes the incoming ``value`` (default: its own) when the incoming ``at`` time is at
    least the stored one: a message that arrives late never overwrites a newer state."""
    return (f"  {col} = CASE WHEN excluded.{at} IS NOT NULL AND (devices.{at} IS NULL OR excluded.{at} >= devices.{at})\n"
            f"    THEN {value or 'excluded.' + col} ELSE devices.{col} END")


_DEVICE_UPSERT = """
INSERT INTO devices (device_id, last_seen, online, online_at, status, status_at, queue_depth, prev_queue_depth)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (device_id) DO UPDATE SET
  last_seen = CASE WHEN devices.last_seen IS NULL OR excluded.last_seen > devices.last_seen
                   THEN COALESCE(excluded.last_seen, devices.last_seen) ELSE devices.last_seen END,
""" + ",\n".join([_newer("online_at", "online"), _newer("online_at", "online_at"),
                   _newer("status_at", "prev_queue_depth", "COALESCE(excluded.prev_queue_depth, devices.queue_depth)"),
                   _newer("status_at", "queue_depth"), _newer("status_at", "status"),
                   _newer("status_at", "status_at")]) + "\n"


def default_db_url() -> str:
    """$ROADNODE_DB, else fleet.db in the user's data folder."""
    env = os.environ.get("ROADNODE_DB", "").strip()
    if env:
        return env
    from platformdirs import user_data_dir

    return "sqlite:///" + str(Path(user_data_dir("roadnode", appauthor=False)) / "fleet.db")


def parse_db_url(url: str) -> tuple[str, str]:
    """("sqlite", path) or ("postgresql", url). ``sqlite:///rel.db``, ``sqlite:////abs/path.db`` (as
    SQLAlchemy writes them) or a bare path; ``postgresql://`` / ``postgres://``."""
    if "://" not in url:
        if not url:
            raise InputError("--db: empty")
        return "sqlite", url
    scheme = url.split("://", 1)[0].lower()
    if scheme == "sqlite":
        rest = url.split("://", 1)[1]
        if not rest.startswith("/") or rest == "/":
            raise InputError(f"--db {url!r}: expected sqlite:///PATH")
        return "sqlite", rest[1:]
    if scheme in ("postgresql", "postgres"):
        if not urlparse(url).hostname and "host=" not in url:
            raise InputError(f"--db {url!r}: expected postgresql://USER@HOST[:PORT]/DBNAME")
        return "postgresql", url
    raise InputError(f"--db {url!r}: expected sqlite:///PATH or postgresql://...")


def display_url(url: str) -> str:
    """The URL as printed: an absolute SQLite path; a PostgreSQL password hidden."""
    kind, where = parse_db_url(url)
    if kind == "sqlite":
        return "sqlite:///" + str(Path(where).expanduser().resolve())
    u = urlparse(where)
    if u.password:
        where = where.replace(f":{u.password}@", ":***@", 1)
    return where


class Store:
    """One connection and a lock: the collector's writer thread and readers in the same process
    share it. ``Store(url)`` returns the SQLite or the PostgreSQL store."""

    dialect = ""
    _types: dict = {}

    def __new__(cls, url: str = "", *a, **kw):
        if cls is Store:
            cls = PgStore if parse_db_url(url)[0] == "postgresql" else SqliteStore
        return super().__new__(cls)

    def __init__(self, url: str):
        self.url = url
        self._lock = threading.RLock()
        self._db = None
        with self._lock:
            self._connect()
            self._migrate()

    # ---- dialect ----------------------------------------------------------------------------------
    def _connect(self) -> None:
        raise NotImplementedError

    def _sql(self, q: str) -> str:
        return q.format(**self._types)

    def _x(self, q: str, args=()):
        return self._db.execute(self._sql(q), args)

    def _xmany(self, q: str, rows) -> None:
        if rows:
            self._db.executemany(self._sql(q), rows)

    def _lock_schema(self) -> None:
        pass

    # ---- transactions -------------------------------------------------------------------------------
    def _begin(self, write: bool = True) -> None:
        self._db.execute("BEGIN")

    def _tx(self, fn, write: bool = True):
        """fn() inside one transaction; any database failure -> StoreError, rolled back. ``write``
        False: a reader's transaction, which on SQLite does not take the one writer's lock (a
        dashboard polling the store must not hold up the collector's commits)."""
        with self._lock:
            try:
                if self._db is None:
                    self._connect()
                self._begin(write)
            except Exception as e:
                self._broken()
                raise StoreError(f"database {display_url(self.url)}: {_one_line(e)}") from e
            try:
                r = fn()
                self._db.execute("COMMIT")
                return r
            except BaseException as e:
                try:
                    self._db.execute("ROLLBACK")
                except Exception:
                    self._broken()
                if isinstance(e, Exception) and not isinstance(e, RoadnodeError):
                    raise StoreError(f"database {display_url(self.url)}: {_one_line(e)}") from e
                raise

    def _broken(self) -> None:
        """Forget a connection that failed: the next transaction connects again."""
        try:
            if self._db is not None:
                self._db.close()
        except Exception:
            pass
        self._db = None

    def _migrate(self) -> None:
        def run():
            """Apply the migrations this database lacks, under the schema lock."""
            self._lock_schema()
            self._x("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at {REAL} NOT NULL)")
            have = self._x("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
            if have > SCHEMA_VERSION:
                raise StoreError(f"database {display_url(self.url)} has schema version {have}, newer than this "
                                 f"roadnode's ({SCHEMA_VERSION}): update roadnode")
            for v, _, stmts in MIGRATIONS:
                if v <= have:
                    continue
                for s in stmts:
                    if v == 1 and s.startswith("ALTER TABLE progress") and self._has_column("progress", "max_seq"):
                        continue
                    self._x(s)
                self._x("INSERT INTO schema_version VALUES (?, ?)", (v, time.time()))

        self._tx(run)

    def _has_column(self, table: str, column: str) -> bool:
        raise NotImplementedError

    @property
    def schema_version(self) -> int:
        """The schema version the database is at."""
        return self._tx(lambda: self._x("SELECT MAX(version) FROM schema_version").fetchone()[0], write=False)

    def query(self, q: str, args=()) -> list[tuple]:
        """Rows of one read-only SQL statement (``?`` placeholders and the {REAL}/{BLOB}/{BIG} types
        work on both databases), in a reader's transaction."""
        return self._tx(lambda: self._x(q, tuple(args)).fetchall(), write=False)

    # ---- writing --------------------------------------------------------------------------------------
    def ingest(self, ups: list[Up] = (), statuses: list[Status] = (), rejects: dict | None = None,
               counters: dict | None = None) -> dict:
        """Store many messages in one transaction; {(device_id, epoch): (acknowledge-up-to, new, duplicate)}
        for the batches (acknowledge-up-to -1: nothing yet). ``counters``: {device_id: the highest
        message counter accepted} (roadnode.fleet.keys), kept with the data. Raises StoreError
        (rolled back, nothing stored) when the database refuses."""
        def run():
            """Store the batch and persist the accepted message counters in one transaction."""
            out = self._ingest(list(ups), list(statuses), rejects or {})
            if counters:
                self._xmany("UPDATE device_keys SET last_counter = {MAX}(last_counter, ?) WHERE device_id = ?",
                            sorted((c, d) for d, c in counters.items()))
            return out

        return self._tx(run)

    # ---- keys (roadnode.fleet.keys, docs/security.md) -----------------------------------------------
    def add_key(self, device_id: int, key: bytes, replace: bool = False) -> None:
        """Register a device's key. A device that has one (active or revoked) is refused unless
        ``replace`` (a re-key: the old key is no longer accepted, the counters start afresh)."""
        def run():
            """Replace or insert the device's key as active, refusing to re-key unless ``replace``."""
            have = self._x("SELECT state FROM device_keys WHERE device_id = ?", (device_id,)).fetchone()
            if have and not replace:
                raise InputError(f"device {device_id} already has a key ({have[0]}): use --replace to re-key it")
            self._x("DELETE FROM device_keys WHERE device_id = ?", (device_id,))
            self._x("INSERT INTO device_keys (device_id, key, state, created_at, revoked_at, last_counter) "
                    "VALUES (?, ?, 'active', ?, NULL, -1)", (device_id, bytes(key), time.time()))

        self._tx(run)

    def revoke_key(self, device_id: int) -> bool:
        """Revoke a device's key (its messages are refused from the next one on); False: it had none."""
        def run():
            """Revoke the active key; True if the device has a key (revoked now or before)."""
            n = self._x("UPDATE device_keys SET state = 'revoked', revoked_at = ? WHERE device_id = ? "
                        "AND state = 'active'", (time.time(), device_id)).rowcount
            if not n:
                return self._x("SELECT 1 FROM device_keys WHERE device_id = ?", (device_id,)).fetchone() is not None
            return True

        return self._tx(run)

    def list_keys(self) -> list[dict]:
        """The key store without the keys themselves."""
        rows = self._tx(lambda: self._x("SELECT device_id, state, created_at, revoked_at, last_counter FROM device_keys "
                                        "ORDER BY device_id").fetchall(), write=False)
        return [dict(zip(("device_id", "state", "created_at", "revoked_at", "last_counter"), r)) for r in rows]

    def get_key(self, device_id: int) -> bytes | None:
        """The device's key, whatever its state (None: it has none)."""
        r = self._tx(lambda: self._x("SELECT key FROM device_keys WHERE device_id = ?", (device_id,)).fetchone(),
                     write=False)
        return bytes(r[0]) if r else None

    def load_keys(self) -> dict:
        """{device_id: (key, state, last_counter)}."""
        rows = self._tx(lambda: self._x("SELECT device_id, key, state, last_counter FROM device_keys").fetchall(),
                        write=False)
        return {d: (bytes(k), s, c) for d, k, s, c in rows}

    def _ingest(self, ups: list[Up], statuses: list[Status], rejects: dict) -> dict:
        raw, segs, evs, hbs, quar = [], [], [], [], []
        for u in ups:
            for seq, d, data in u.rows:
                k = (u.device_id, u.epoch, seq)
                raw.append((*k, d["type"], data, u.received_at))
                if d["type"] == "segment":
                    segs.append((*k, d["seg_index"], d["segment_length_m"], d["start_m"], d["end_m"], d["lat"],
                                 d["lon"], d["iri_m_per_km"], d["rms_g"], d["peak_g"], d["speed_kmh"],
                                 _mask(d["flags"]), u.received_at))
                elif d["type"] == "event":
                    evs.append((*k, d["kind"], d["peak_g"], d["lat"], d["lon"], d["dist_m"], d["speed_kmh"],
                                d["tod_s"], u.received_at))
                else:
                    hbs.append((*k, d["uptime_s"], d["reset_reason"], d["unexpected_reboots"], d["queue_depth"],
                                u.received_at))
            for seq, reason, data in u.quarantined:
                quar.append((u.device_id, u.epoch, seq, reason, data, u.received_at))
        new = self._insert_new(sorted({r[:3]: r for r in raw}.values(), key=lambda r: r[:3]))
        self._insert("segments", _unique(segs))
        self._insert("events", _unique(evs))
        self._insert("heartbeats", _unique(hbs))
        self._insert("quarantine", _unique(quar))
        acks = self._progress(ups, new)
        self._devices(ups, statuses)
        if rejects:
            now = time.time()
            self._xmany("INSERT INTO rejects VALUES (?, ?, ?, ?, ?) ON CONFLICT (source, topic, reason) DO UPDATE "
                        "SET count = rejects.count + excluded.count, last_at = excluded.last_at",
                        sorted((s, t, r, n, now) for (s, t, r), n in rejects.items()))
        return acks

    def _insert_new(self, rows: list) -> set:
        """Insert packets not stored yet; the keys that were new."""
        raise NotImplementedError

    def _insert(self, table: str, rows: list) -> None:
        """Rows not there yet (by primary key)."""
        self._xmany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(COLUMNS[table]))}) ON CONFLICT DO NOTHING", rows)

    def _ensure_progress(self, keys: list) -> None:
        self._xmany("INSERT INTO progress (device_id, epoch, acked_upto, max_seq) VALUES (?, ?, -1, -1) "
                    "ON CONFLICT DO NOTHING", keys)

    def _update_progress(self, rows: list) -> None:
        """rows: (acked_upto, max_seq, device_id, epoch); both only ever grow."""
        self._xmany("UPDATE progress SET acked_upto = {MAX}(acked_upto, ?), max_seq = {MAX}(max_seq, ?) "
                    "WHERE device_id = ? AND epoch = ?", rows)

    def _upsert_devices(self, rows: list) -> None:
        self._xmany(_DEVICE_UPSERT, rows)

    def _progress(self, ups: list[Up], new: set) -> dict:
        per: dict = {}
        for u in ups:
            p = per.setdefault((u.device_id, u.epoch), {"base": 0, "seqs": set(), "n": 0, "new": 0})
            p["base"] = max(p["base"], u.base)
            p["seqs"].update(s for s, _, _ in u.rows)
            p["seqs"].update(s for s, _, _ in u.quarantined)
            p["n"] += len(u.rows)
        if not per:
            return {}
        for d, e, _ in new:
            per[(d, e)]["new"] += 1
        keys = sorted(per)
        self._ensure_progress(keys)
        have = self._progress_rows(keys)
        out, upd = {}, []
        for k in keys:
            p = per[k]
            acked, max_seq = have.get(k, (-1, -1))
            upto = max(acked, p["base"] - 1)
            seqs = sorted(s for s in p["seqs"] if s > upto)
            if max_seq > upto:  # stored earlier beyond what is acknowledged: those count too
                seqs = sorted(set(seqs) | self._held_after(k, upto))
            for s in seqs:
                if s != upto + 1:
                    break
                upto = s
            top = max([max_seq, *p["seqs"]])
            upd.append((upto, top, *k))
            out[k] = (upto, p["new"], p["n"] - p["new"])
        self._update_progress(upd)
        return out

    def _progress_rows(self, keys: list) -> dict:
        devs = sorted({d for d, _ in keys})
        want = set(keys)
        rows = self._x(f"SELECT device_id, epoch, acked_upto, max_seq FROM progress WHERE device_id IN "
                       f"({', '.join('?' * len(devs))}) ORDER BY device_id, epoch{self._for_update}", devs).fetchall()
        return {(d, e): (a, m) for d, e, a, m in rows if (d, e) in want}

    _for_update = ""

    def _held_after(self, key, upto) -> set:
        q = "SELECT seq FROM {t} WHERE device_id = ? AND epoch = ? AND seq > ?"
        return {r[0] for t in ("packets", "quarantine") for r in self._x(q.replace("{t}", t), (*key, upto)).fetchall()}

    def _devices(self, ups: list[Up], statuses: list[Status]) -> None:
        dev: dict = {}

        def get(i):
            """The device's record, created empty on first use."""
            return dev.setdefault(i, {"seen": None, "on": None, "on_at": None, "st": None, "st_at": None, "q": None,
                                      "prev": None})

        for u in ups:  # a node that publishes is connected
            d = get(u.device_id)
            d["seen"] = max(d["seen"] or 0, u.received_at)
            if d["on_at"] is None or u.received_at >= d["on_at"]:
                d["on"], d["on_at"] = 1, u.received_at
        for s in statuses:
            d = get(s.device_id)
            t = 0.0 if s.retained else s.received_at  # a retained message is of unknown age: oldest
            if not s.retained and s.data is not None:
                d["seen"] = max(d["seen"] or 0, t)
            if s.data is not None and (d["st_at"] is None or t >= d["st_at"]):
                if d["st"] is not None:  # an earlier heartbeat in this same transaction
                    d["prev"] = d["q"]
                d["st"], d["st_at"], d["q"] = s.data, t, s.decoded.get("queue_depth")
            if (s.data is None or not s.retained) and (d["on_at"] is None or t >= d["on_at"]):
                d["on"], d["on_at"] = (0 if s.data is None else 1), t
        self._upsert_devices([(i, d["seen"], d["on"], d["on_at"], d["st"], d["st_at"], d["q"], d["prev"])
                                     for i, d in sorted(dev.items())])

    # ---- the old core's API (tests, bench/uplink_drive.py) -----------------------------------------
    def add_batch(self, device_id: int, epoch: int, base: int, first: int, packets: list[bytes]) -> tuple[int, int]:
        """Store one batch; (new packets stored, acknowledge-up-to seq)."""
        from roadnode.fleet.messages import Parser
        from roadnode.mpy.fwimport import fw

        h = bytearray(14)
        fw("batch").put_header(h, epoch, base, first, len(packets))
        payload = bytes(h) + b"".join(bytes([len(p)]) + bytes(p) for p in packets)
        up, _ = Parser().parse(f"roadnode/{device_id}/up", payload, time.time())
        upto, new, _ = self.ingest([up])[(device_id, epoch)]
        return new, upto

    # ---- reading ------------------------------------------------------------------------------------------
    def packets(self, device_id: int | None = None) -> list[tuple]:
        """(device_id, epoch, seq, type, data) in order."""
        q = "SELECT device_id, epoch, seq, type, data FROM packets"
        a: tuple = ()
        if device_id is not None:
            q, a = q + " WHERE device_id = ?", (device_id,)
        return [(*r[:4], bytes(r[4])) for r in self._tx(lambda: self._x(q + " ORDER BY device_id, epoch, seq", a).fetchall(), write=False)]

    def count(self, table: str) -> int:
        """Rows in one of the store's tables (ValueError for any other name)."""
        if table not in ("packets", "segments", "events", "heartbeats", "quarantine", "devices", "rejects"):
            raise ValueError(table)
        return self._tx(lambda: self._x(f"SELECT COUNT(*) FROM {table}").fetchone()[0], write=False)

    def settled(self, device_id: int, timeout: float = 20.0, poll: float = 0.5) -> list[tuple]:
        """packets(device_id) once no more arrive for ``poll`` s (a node that stopped may still have
        batches on their way through the broker), waiting ``timeout`` s at the most."""
        end = time.monotonic() + timeout
        rows = self.packets(device_id)
        n = -1
        while time.monotonic() < end and n != len(rows):
            n = len(rows)
            time.sleep(poll)
            rows = self.packets(device_id)
        return rows

    def segments(self, device_id: int | None = None, since: float | None = None) -> list[dict]:
        """Stored segments in (device, epoch, seq) order, as dicts (flags as names)."""
        q = ("SELECT device_id, epoch, seq, seg_index, segment_length_m, start_m, end_m, lat, lon, iri_m_per_km, "
             "rms_g, peak_g, speed_kmh, flags, received_at FROM segments")
        cond, a = [], []
        if device_id is not None:
            cond.append("device_id = ?")
            a.append(device_id)
        if since is not None:
            cond.append("received_at >= ?")
            a.append(since)
        if cond:
            q += " WHERE " + " AND ".join(cond)
        rows = self._tx(lambda: self._x(q + " ORDER BY device_id, epoch, seq", a).fetchall(), write=False)
        keys = ("device_id", "epoch", "seq", "seg_index", "segment_length_m", "start_m", "end_m", "lat", "lon",
                "iri_m_per_km", "rms_g", "peak_g", "speed_kmh", "flags", "received_at")
        out = []
        for r in rows:
            d = dict(zip(keys, r))
            d["flags"] = flag_names(d["flags"])
            out.append(d)
        return out

    def devices(self) -> list[dict]:
        """Per device: the devices row, its newest queued heartbeat (packet bytes), its segment count
        and newest segment time, and how many of its messages were rejected."""
        def run():
            """Every device's row joined with its segment totals, latest heartbeat and reject count."""
            devs = {r[0]: dict(zip(("device_id", "last_seen", "online", "online_at", "status", "status_at",
                                    "queue_depth", "prev_queue_depth"), r))
                    for r in self._x("SELECT device_id, last_seen, online, online_at, status, status_at, "
                                     "queue_depth, prev_queue_depth FROM devices").fetchall()}
            for d in devs.values():
                d.update(segments_total=0, last_segment_at=None, heartbeat=None, rejected=0)
            for i, n, t in self._x("SELECT device_id, COUNT(*), MAX(received_at) FROM segments GROUP BY device_id"):
                devs.setdefault(i, {"device_id": i}).update(segments_total=n, last_segment_at=t)
            # the newest queued heartbeat of each device (its latest epoch's highest seq)
            for i, data in self._x(
                    "SELECT p.device_id, p.data FROM packets p JOIN (SELECT h.device_id, MAX(h.epoch * 1073741824 + h.seq) "
                    "AS k FROM heartbeats h JOIN (SELECT device_id, MAX(received_at) AS t FROM heartbeats GROUP BY "
                    "device_id) l ON l.device_id = h.device_id AND h.received_at = l.t GROUP BY h.device_id) m "
                    "ON m.device_id = p.device_id AND p.epoch * 1073741824 + p.seq = m.k").fetchall():
                devs.setdefault(i, {"device_id": i})["heartbeat"] = bytes(data)
            for src, reason, n in self._x("SELECT source, reason, SUM(count) FROM rejects GROUP BY source, reason").fetchall():
                if src.isdigit() and int(src) in devs:
                    d = devs[int(src)]
                    d["rejected"] = d.get("rejected", 0) + int(n)
                    k = {"replay": "replays", "rate_limited": "rate_limited"}.get(
                        reason, "auth_failures" if reason in ("unknown_key", "revoked", "bad_tag", "unsealed") else "")
                    if k:
                        d[k] = d.get(k, 0) + int(n)
            return devs

        devs = self._tx(run, write=False)
        for d in devs.values():
            if d.get("status") is not None:
                d["status"] = bytes(d["status"])
        return [devs[k] for k in sorted(devs)]

    def rejects(self) -> list[dict]:
        """The reject counters, one dict per (source, topic, reason)."""
        rows = self._tx(lambda: self._x("SELECT source, topic, reason, count, last_at FROM rejects "
                                        "ORDER BY source, topic, reason").fetchall(), write=False)
        return [dict(zip(("source", "topic", "reason", "count", "last_at"), r)) for r in rows]

    def close(self) -> None:
        """Close the database connection (a later call would open a new one)."""
        with self._lock:
            self._broken()


class SqliteStore(Store):
    """The store in an SQLite file (WAL, synchronous=FULL): one machine, one writer."""

    dialect = "sqlite"
    _types = {"BLOB": "BLOB", "REAL": "REAL", "BIG": "INTEGER", "MAX": "max"}

    def _connect(self) -> None:
        import sqlite3

        path = Path(parse_db_url(self.url)[1]).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # (one writer: a lock held elsewhere for 5 s is a database refusing the write, retried later)
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=5)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # an acknowledged batch survives a power cut
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"database {display_url(self.url)}: {_one_line(e)}") from e
        self._db = db

    def _begin(self, write: bool = True) -> None:
        # one writer: its lock taken now, not at the first write; readers read a snapshot (WAL)
        self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    def _has_column(self, table: str, column: str) -> bool:
        return any(r[1] == column for r in self._db.execute(f"PRAGMA table_info({table})"))

    def _insert_new(self, rows: list) -> set:
        if not rows:
            return set()
        before = self._db.total_changes
        keys = set()
        cur = self._db.cursor()
        for r in rows:  # (per row: which ones were new; SQLite does this in-process, fast)
            cur.execute("INSERT INTO packets VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", r)
            if cur.rowcount == 1:
                keys.add(r[:3])
        assert self._db.total_changes - before == len(keys)
        return keys


class PgStore(Store):
    """The store in PostgreSQL: several collectors may write at once."""

    dialect = "postgresql"
    _types = {"BLOB": "BYTEA", "REAL": "DOUBLE PRECISION", "BIG": "BIGINT", "MAX": "GREATEST"}
    _for_update = " FOR UPDATE"

    def _connect(self) -> None:
        import psycopg

        try:
            self._db = psycopg.connect(parse_db_url(self.url)[1], autocommit=True, connect_timeout=10)
        except psycopg.Error as e:
            raise StoreError(f"database {display_url(self.url)}: {_one_line(e)}") from e

    def _sql(self, q: str) -> str:
        return q.format(**self._types).replace("?", "%s")

    def _x(self, q: str, args=()):
        return self._db.execute(self._sql(q), args, prepare=False)

    def _xmany(self, q: str, rows) -> None:
        if rows:
            with self._db.cursor() as c:
                c.executemany(self._sql(q), rows)

    def _lock_schema(self) -> None:
        self._db.execute("SELECT pg_advisory_xact_lock(7215061)")  # two collectors starting: one migrates

    def _has_column(self, table: str, column: str) -> bool:
        return self._db.execute("SELECT 1 FROM information_schema.columns WHERE table_name = %s AND column_name = %s",
                                (table, column)).fetchone() is not None

    def _progress_rows(self, keys: list) -> dict:
        devs = sorted({d for d, _ in keys})
        want = set(keys)
        rows = self._db.execute("SELECT device_id, epoch, acked_upto, max_seq FROM progress WHERE device_id = ANY(%s) "
                                "ORDER BY device_id, epoch FOR UPDATE", (devs,)).fetchall()
        return {(d, e): (a, m) for d, e, a, m in rows if (d, e) in want}

    # Many rows in one statement: each column as one array parameter, unnest()ed by the server (one
    # round trip per table and transaction instead of one per row)
    @staticmethod
    def _arrays(types: list[str], rows: list) -> tuple[str, list]:
        return ", ".join(f"%s::{t}[]" for t in types), [list(c) for c in zip(*rows)]

    def _insert(self, table: str, rows: list) -> None:
        if rows:
            ph, args = self._arrays(COLUMNS[table], rows)
            self._db.execute(f"INSERT INTO {table} SELECT * FROM unnest({ph}) ON CONFLICT DO NOTHING", args, binary=True)

    def _insert_new(self, rows: list) -> set:
        if not rows:
            return set()
        ph, args = self._arrays(COLUMNS["packets"], rows)
        cur = self._db.execute(f"INSERT INTO packets SELECT * FROM unnest({ph}) ON CONFLICT DO NOTHING "
                               "RETURNING device_id, epoch, seq", args)
        return {tuple(r) for r in cur.fetchall()}

    def _ensure_progress(self, keys: list) -> None:
        ph, args = self._arrays(["bigint", "bigint"], keys)
        self._db.execute(f"INSERT INTO progress (device_id, epoch, acked_upto, max_seq) SELECT d, e, -1, -1 "
                         f"FROM unnest({ph}) AS u(d, e) ORDER BY d, e ON CONFLICT DO NOTHING", args)

    def _update_progress(self, rows: list) -> None:
        if rows:
            ph, args = self._arrays(["bigint"] * 4, rows)
            self._db.execute(f"UPDATE progress p SET acked_upto = GREATEST(p.acked_upto, u.a), max_seq = "
                             f"GREATEST(p.max_seq, u.m) FROM unnest({ph}) AS u(a, m, d, e) "
                             "WHERE p.device_id = u.d AND p.epoch = u.e", args)

    def _upsert_devices(self, rows: list) -> None:
        if rows:
            ph, args = self._arrays(COLUMNS["devices"], rows)
            q = _DEVICE_UPSERT.replace("VALUES (?, ?, ?, ?, ?, ?, ?, ?)", f"SELECT * FROM unnest({ph})")
            self._db.execute(q, args)


def _unique(rows: list) -> list:
    """Rows by key (device_id, epoch, seq), once each, in key order (the lock order)."""
    return sorted({r[:3]: r for r in rows}.values(), key=lambda r: r[:3])


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split()) or type(e).__name__
