"""A throwaway PostgreSQL server in a temporary folder, for the tests and the benchmark.

The Debian package's binaries (initdb, pg_ctl; on PATH or under /usr/lib/postgresql/<N>/bin) make a
private cluster listening on 127.0.0.1 at a free port, its unix socket in the same folder. PostgreSQL
refuses to run as root: as root the cluster belongs to the user ``nobody`` and the binaries run
through ``runuser``.

    with PgServer() as pg:
        pg.url          # postgresql://roadnode@127.0.0.1:PORT/roadnode
        pg.stop(); pg.start()   # the server going away and coming back (same data, same port)
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from roadnode.errors import RoadnodeError
from roadnode.fleet.broker import free_port


class PgServerError(RoadnodeError):
    """The PostgreSQL server could not be set up or started (exit code 3)."""

    exit_code = 3


def pg_bindir() -> str | None:
    """The folder holding initdb and pg_ctl, or None when PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found:  # (a symlink on PATH: the folder of the real binaries)
        d = Path(found).resolve().parent
        if os.access(d / "pg_ctl", os.X_OK):
            return str(d)
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True):
        if os.access(f"{d}/initdb", os.X_OK) and os.access(f"{d}/pg_ctl", os.X_OK):
            return d
    return None


class PgServer:
    """A private PostgreSQL cluster on 127.0.0.1 at a free port; close() deletes its temporary folder."""

    def __init__(self, port: int = 0, user: str = "roadnode", dbname: str = "roadnode", fsync: bool = True):
        self.bindir = pg_bindir()
        if not self.bindir:
            raise PgServerError("PostgreSQL is not installed (apt-get install postgresql)")
        self.port = port or free_port()
        self.user, self.dbname, self.fsync = user, dbname, fsync
        self._dir: Path | None = None
        self._as: list[str] = []
        atexit.register(self.stop)

    @property
    def url(self) -> str:
        """The postgresql:// URL of its database."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.dbname}"

    @property
    def data(self) -> Path:
        """The cluster's data directory."""
        return self._dir / "data"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run(self._as + list(args), capture_output=True, text=True, timeout=120, cwd="/")
        if check and p.returncode:
            raise PgServerError(f"{Path(args[0]).name} failed ({p.returncode}): {(p.stderr or p.stdout).strip()[-800:]}")
        return p

    def _init(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="roadnode-pg-"))
        if os.geteuid() == 0:  # postgres will not run as root
            import pwd

            pw = pwd.getpwnam("nobody")
            os.chown(self._dir, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", "nobody", "--"]
        self._run(f"{self.bindir}/initdb", "-D", str(self.data), "-U", self.user, "-A", "trust", "-E", "UTF8",
                  "--no-sync")
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                    f"unix_socket_directories = '{self._dir}'\nfsync = {'on' if self.fsync else 'off'}\n"
                    "max_connections = 50\nshared_buffers = 64MB\n")

    def start(self) -> "PgServer":
        """Start the server (creating the cluster and database the first time); returns self."""
        if self._dir is None:
            self._init()
            created = False
        else:
            created = True
        self._run(f"{self.bindir}/pg_ctl", "-D", str(self.data), "-l", str(self._dir / "server.log"), "-w",
                  "-t", "60", "start")
        if not created:  # (through the server: the user is the cluster's owner, allowed by trust)
            self.create_db(self.dbname)
        return self

    def create_db(self, name: str) -> str:
        """A new empty database on this server; its URL."""
        import psycopg

        with psycopg.connect(f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{name}"

    @property
    def running(self) -> bool:
        """Whether pg_ctl reports the server running."""
        if self._dir is None:
            return False
        return self._run(f"{self.bindir}/pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop (-m fast: active sessions are cut, as when the server goes down)."""
        if self._dir is None or not (self.data / "postmaster.pid").exists():
            return
        self._run(f"{self.bindir}/pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)
        end = time.monotonic() + 30
        while (self.data / "postmaster.pid").exists() and time.monotonic() < end:
            time.sleep(0.05)

    def close(self) -> None:
        """Stop the server at once and delete the cluster."""
        self.stop("immediate")  # (thrown away next: no shutdown checkpoint needed)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        atexit.unregister(self.stop)

    def __enter__(self) -> "PgServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
