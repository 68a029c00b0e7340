"""Users' files: the one place every command reads input files and writes output files through.

Reading: only regular files are read (a FIFO would block, /dev/zero never ends), with a size cap.

Writing:
- The target is checked before any work is done: a name, not a directory, not a device, FIFO or
  socket (writing "a file" onto /dev/full or a pipe must neither replace nor block on it), in a
  folder that exists.
- A symlink is written through: the file it points to gets the new content, the link stays.
- New content goes to a temporary file in the target's folder and is renamed over the target, so a
  failed write (disk full, no permission, interrupted) leaves the old file as it was and no half file.

Every problem becomes one :class:`~roadnode.errors.InputError` naming the file.
"""

from __future__ import annotations

import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path

from roadnode.errors import InputError

# matplotlib writes these without extra packages; anything else is refused before computing
IMAGE_TYPES = ("png", "pdf", "svg")


def _why(e: OSError) -> str:
    return e.strerror or type(e).__name__


MAX_INPUT_BYTES = 2 << 30  # 2 GiB: far beyond any profile, capture or scenario this tool makes


def input_path(path, what: str = "file", max_bytes: int = MAX_INPUT_BYTES) -> Path:
    """``path`` if it is a readable regular file of at most ``max_bytes``; InputError otherwise."""
    name = os.fspath(path) if path is not None else ""
    if not str(name).strip():
        raise InputError(f"{what}: empty file name")
    if "\x00" in str(name):
        raise InputError(f"{what} {name!r}: file name contains a NUL byte")
    try:
        st = os.stat(name)
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except OSError as e:
        raise InputError(f"{name}: cannot read {what} ({_why(e)})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{name}: is a directory, not a {what}")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{name}: not a regular file (a device, FIFO or socket)")
    if st.st_size > max_bytes:
        raise InputError(f"{name}: {st.st_size:,} bytes is too large for a {what} (limit {max_bytes:,})")
    return Path(name)


def read_input(path, what: str = "file", max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """A user's input file's bytes, checked (exists, not too big); InputError saying why not."""
    p = input_path(path, what, max_bytes)
    try:
        return p.read_bytes()
    except OSError as e:
        raise InputError(f"{p}: cannot read {what} ({_why(e)})") from None


def output_path(path, what: str = "output") -> Path:
    """The regular file to write for ``path`` (symlinks followed); InputError if it cannot be one."""
    name = os.fspath(path) if path is not None else ""
    if not str(name).strip():
        raise InputError(f"{what}: empty file name")
    if "\x00" in str(name):
        raise InputError(f"{what} {name!r}: file name contains a NUL byte")
    real = Path(os.path.realpath(name))  # a dangling link: its target is created
    try:
        st = os.stat(real)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise InputError(f"{what} {name}: {_why(e)}") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{what} {name}: is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{what} {name}: not a regular file (a device, FIFO or socket); refusing to replace it")
    if not real.parent.is_dir():
        raise InputError(f"{what} {name}: folder {real.parent} does not exist")
    if not os.access(real.parent, os.W_OK | os.X_OK):
        raise InputError(f"{what} {name}: folder {real.parent} is not writable")
    return real


def image_path(path, what: str = "plot") -> Path:
    """``output_path`` for a plot, whose type the extension names (png, pdf or svg)."""
    ext = Path(os.fspath(path or "")).suffix.lower().lstrip(".")
    if ext not in IMAGE_TYPES:
        shown = f"'.{ext}'" if ext else "no extension"
        raise InputError(f"{what} {path}: unknown image type ({shown}); use .png, .pdf or .svg")
    return output_path(path, what)


def output_dir(path, what: str = "output folder", create: bool = True) -> Path:
    """Create (if needed) and return a folder to write into; ``create=False`` only checks that it
    exists as a writable folder or could be created (nothing is left behind by a refused run)."""
    name = os.fspath(path) if path is not None else ""
    if not str(name).strip():
        raise InputError(f"{what}: empty folder name")
    p = Path(name)
    if not create:
        q = Path(os.path.abspath(name))
        while not q.exists() and q != q.parent:
            q = q.parent
        if not q.is_dir():
            raise InputError(f"{what} {name}: {q} exists and is not a folder")
        try:  # a real probe: os.access says yes to root even on a read-only file system
            os.rmdir(tempfile.mkdtemp(dir=q, prefix=".roadnode-probe-"))
        except OSError as e:
            raise InputError(f"{what} {name}: cannot create anything in {q} ({_why(e)})") from None
        return p
    try:
        p.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(f"{what} {name}: exists and is not a folder") from None
    except OSError as e:
        raise InputError(f"{what} {name}: cannot create ({_why(e)})") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise InputError(f"{what} {name}: not writable")
    return p


def _new_file_mode(target: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(target).st_mode)  # replacing a file keeps its permissions
    except FileNotFoundError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


@contextmanager
def atomic_output(path, what: str = "output"):
    """``with atomic_output(p) as f: f.write(...)``: binary file object whose content replaces ``p``
    only when the block finishes; on any failure ``p`` is untouched and the temporary is removed."""
    target = output_path(path, what)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _new_file_mode(target))
        os.replace(tmp, target)
        tmp = None
    except OSError as e:
        raise InputError(f"cannot write {what} {path}: {_why(e)}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def write_bytes(path, data: bytes, what: str = "output") -> None:
    """Write an output file atomically: complete or not at all."""
    with atomic_output(path, what) as f:
        f.write(data)


def save_figure(fig, path, what: str = "plot", **kw) -> None:
    """Write a matplotlib figure atomically; the type comes from the extension (see image_path)."""
    image_path(path, what)
    fmt = Path(os.fspath(path)).suffix.lower().lstrip(".")
    with atomic_output(path, what) as f:
        fig.savefig(f, format=fmt, **kw)


def open_append(path, what: str = "recording"):
    """A binary file opened for appending (a recording grows as data arrives; not atomic by nature)."""
    target = output_path(path, what)
    try:
        return open(target, "ab")
    except OSError as e:
        raise InputError(f"cannot open {what} {path}: {_why(e)}") from None
