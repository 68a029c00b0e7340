"""One command per port: an exclusive advisory lock on a board's serial port.

Two programs talking to one node at once interleave their bytes: replies go to the wrong reader,
a replay is aborted, a request the node applied is reported unanswered. So every roadnode command
that opens a port (usb.stream.open_port, and esptool's writes in usb.base_image) first takes:

* a lock file per device in LOCK_DIR (flock on it, so a crashed holder frees it at once and a
  dead process's file is simply taken over), holding who has it: pid, command, start time, so
  the second command can say "PORT is busy: roadnode replay (pid 1234, since 12:03:04)";
* then pyserial's ``exclusive=True`` (flock on the device itself), which other well-behaved
  tools (pyserial users, picocom) take and respect too.

A UUCP lock (/var/lock/LCK..ttyUSB0, minicom and friends) of a live process is respected as well.
Tools that open the port without any lock (mpremote, screen, cat) cannot be detected; see
docs/protocol.md "One command per port".

Within one process the lock is re-entrant per thread: `roadnode flash` holds it for the whole
flash while it opens the port several times (probe, raw REPL, wait for the restart), so no
other command slips in between. The lock file is never deleted (deleting it would let two
processes lock two different files of the same name); an empty file is a free lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sys
import threading
import time

from roadnode.errors import DeviceError

# shared by every user of the machine (a per-user $XDG_RUNTIME_DIR would hide one user's lock from
# another on the same port); ROADNODE_LOCK_DIR overrides it
LOCK_DIR = "/tmp/roadnode-locks"
UUCP_DIRS = ("/var/lock", "/run/lock")
# how long a lock without its holder's name (acquire), or a device's flock held by another
# (stream.open_port), is asked again before the port is called busy
CHANGING_S = 0.5


class PortBusy(DeviceError):
    """Another command holds the port (exit code 3, like every device problem)."""


def lock_dir() -> str:
    """Where port locks live (ROADNODE_LOCK_DIR overrides: tests, several users)."""
    return os.environ.get("ROADNODE_LOCK_DIR") or LOCK_DIR


def lock_path(port: str) -> str:
    """The lock file of a port: by the device it resolves to, so /dev/serial/by-id/... and
    /dev/ttyUSB0 share one lock."""
    dev = os.path.realpath(port)
    return os.path.join(lock_dir(), dev.strip("/").replace("/", "_") + ".lock")


def _command() -> str:
    """What this process is, as a user would recognise it: "roadnode replay"."""
    try:
        import click

        ctx = click.get_current_context(silent=True)
        if ctx is not None:
            return ctx.command_path
    except ImportError:
        pass
    words = [os.path.basename(sys.argv[0] if sys.argv and sys.argv[0] else sys.executable)] + sys.argv[1:3]
    return " ".join(words)[:80]


def _describe(info: dict) -> str:
    since = info.get("since")
    when = ""
    if isinstance(since, (int, float)):
        fmt = "%H:%M:%S" if time.time() - since < 86400 else "%Y-%m-%d %H:%M:%S"
        when = f", since {time.strftime(fmt, time.localtime(since))}"
    return f"{info.get('cmd') or 'a roadnode command'} (pid {info.get('pid', '?')}{when})"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def _busy(port: str, holder: str) -> PortBusy:
    return PortBusy(f"{port} is busy: {holder}; wait for it or stop it")


def _uucp_holder(port: str) -> str | None:
    """A live process's UUCP lock on the device (LCK..ttyUSB0, or LCK..pts_3 for /dev/pts/3)."""
    dev = os.path.realpath(port)
    rel = dev[5:] if dev.startswith("/dev/") else os.path.basename(dev)
    for d in UUCP_DIRS:
        p = os.path.join(d, "LCK.." + rel.replace("/", "_"))
        try:
            with open(p, "rb") as f:
                text = f.read(64)
        except OSError:
            continue
        try:  # ASCII (10 characters) or binary (4 bytes) pid, both in use
            pid = int(text.decode("ascii").strip()) if text.strip().isdigit() else int.from_bytes(text[:4], "little")
        except (ValueError, UnicodeDecodeError):
            continue
        if pid > 0 and pid != os.getpid() and _alive(pid):
            return f"pid {pid} ({_proc_name(pid)}, UUCP lock {p})"
    return None


def _proc_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        return " ".join(os.path.basename(a.decode(errors="replace")) if i == 0 else a.decode(errors="replace")
                        for i, a in enumerate(argv[:3]) if a)[:60] or "?"
    except OSError:
        return "?"


def device_holders(port: str) -> str:
    """Who has the device open (another program's flock refused us): from /proc, best effort."""
    dev = os.path.realpath(port)
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == dev:
                    found.append(f"already open in this command (pid {pid})" if int(pid) == os.getpid()
                                 else f"{_proc_name(int(pid))} (pid {pid})")
                    break
            except OSError:
                continue
    return ", ".join(found[:3]) if found else "another program (it holds an exclusive lock on it)"


class _Held:
    def __init__(self, key: str, path: str, fd: int):
        self.key, self.path, self.fd = key, path, fd
        self.owner = threading.get_ident()
        self.count = 1


_held: dict[str, _Held] = {}
_mutex = threading.Lock()


class PortLock:
    """A held lock; release() once per acquire()."""

    def __init__(self, held: _Held):
        self._h = held

    def release(self) -> None:
        """Give the port back (idempotent)."""
        h, self._h = self._h, None
        if h is None:
            return
        with _mutex:
            h.count -= 1
            if h.count:
                return
            _held.pop(h.key, None)
        try:
            os.ftruncate(h.fd, 0)  # free: an empty file (never deleted, see the module's docstring)
        except OSError:
            pass
        os.close(h.fd)  # closing drops the flock

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.release()


def acquire(port: str) -> PortLock:
    """Take the port's lock or raise PortBusy naming the holder. Nothing is sent to the port."""
    path = lock_path(port)
    with _mutex:
        h = _held.get(path)
        if h is not None:
            if h.owner != threading.get_ident():
                raise _busy(port, f"this {_command()} (pid {os.getpid()}), in another of its tasks")
            h.count += 1
            return PortLock(h)
        d = lock_dir()
        try:
            if not os.path.isdir(d):
                os.makedirs(d, exist_ok=True)
                os.chmod(d, 0o1777)  # every user's commands lock here (sticky, like /tmp)
        except OSError:
            pass  # made by someone else meanwhile, or not ours to chmod
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            writable = True
        except PermissionError:  # another user's lock file in the sticky folder: lockable read-only
            fd, writable = os.open(path, os.O_RDONLY | os.O_CLOEXEC), False
        except OSError as e:
            raise DeviceError(f"cannot lock {port}: {path}: {e.strerror or e}") from None
        try:
            info = _take(fd, fcntl.LOCK_EX)
        except OSError as e:
            os.close(fd)
            raise DeviceError(f"cannot lock {port}: {path}: {e.strerror or e}") from None
        if info is not None:
            os.close(fd)
            raise _busy(port, _describe(info))
        uucp = _uucp_holder(port)
        if uucp:
            os.close(fd)
            raise _busy(port, uucp)
        if writable:
            try:  # whatever a dead holder left is overwritten
                info = {"pid": os.getpid(), "cmd": _command(), "since": round(time.time(), 1), "port": port}
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(info).encode(), 0)
            except OSError:
                pass  # the flock is what counts; only the holder's name is missing
        h = _Held(path, path, fd)
        _held[path] = h
        return PortLock(h)


@contextlib.contextmanager
def hold(port: str):
    """``with hold(port):`` the port is this thread's for the block (opens inside re-enter)."""
    lk = acquire(port)
    try:
        yield lk
    finally:
        lk.release()


def holder(port: str) -> dict | None:
    """What a port's lock file says, if the lock is held (for tests and messages); {} for a
    holder that stays nameless (see _take)."""
    try:
        fd = os.open(lock_path(port), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _take(fd, fcntl.LOCK_SH)  # (a shared lock taken: free; it goes with the descriptor)
    except OSError:
        return _record(fd)
    finally:
        os.close(fd)


def _take(fd: int, op: int) -> dict | None:
    """flock(fd, op) without blocking: None once taken, else the holder's record. A lock held by a
    nameless holder is changing hands: its holder is between taking it and writing its name, or
    releasing it (an empty file), or it went to a child this process forks (the flock stays with
    that child until its exec closes it). Asked again for CHANGING_S, then {}. An error other
    than "held" raises OSError."""
    end = time.monotonic() + CHANGING_S
    while True:
        try:
            fcntl.flock(fd, op | fcntl.LOCK_NB)
            return None
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
        info = _record(fd)
        if info or time.monotonic() >= end:
            return info
        time.sleep(0.01)


def _record(fd: int) -> dict:
    """The lock file's holder record ({} when empty or unreadable)."""
    try:
        info = json.loads(os.pread(fd, 4096, 0))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}
