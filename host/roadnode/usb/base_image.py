"""Write the MicroPython base image to a blank ESP32 board with esptool's Python API (v5).

Checks the image before touching the port, and the board's chip before erasing anything, so a
wrong file or a wrong board costs nothing. Errors come out as ``InputError`` (the file) or
``DeviceError`` (the board), each naming the file or the port and the step that failed.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path

from roadnode.errors import DeviceError, InputError

ESP_IMAGE_MAGIC = 0xE9
# 8-byte common header, then the 16-byte extended header whose bytes 4-5 are the chip id
_HEADER_LEN = 24
_CHIP_ID_AT = 12

# Extended-header chip ids as esptool's targets define them (IMAGE_CHIP_ID -> CHIP_NAME).
CHIP_IDS = {0: "ESP32", 2: "ESP32-S2", 5: "ESP32-C3", 9: "ESP32-S3", 13: "ESP32-C6"}

# Where the merged firmware.bin starts: the second-stage bootloader's place in flash.
FLASH_OFFSET = {
    "ESP32": 0x1000,
    "ESP32-S2": 0x1000,
    "ESP32-S3": 0x0,
    "ESP32-C3": 0x0,
    "ESP32-C6": 0x0,
}


def inspect_image(path) -> dict:
    """Check that ``path`` is an ESP firmware image and say which chip it is for.

    Reads only the header, so it is cheap enough to run before opening any port.
    Returns ``{"path", "size", "chip"}``; raises ``InputError`` naming the file otherwise.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file" if not p.exists() else f"{p}: not a file")
    try:
        size = p.stat().st_size
        with p.open("rb") as f:
            head = f.read(_HEADER_LEN)
    except OSError as e:
        raise InputError(f"{p}: cannot read: {e.strerror or e}") from e
    if size == 0:
        raise InputError(f"{p}: file is empty, not a firmware image")
    if head[0] != ESP_IMAGE_MAGIC:
        raise InputError(
            f"{p}: not an ESP firmware image (first byte {head[0]:#04x}, expected {ESP_IMAGE_MAGIC:#04x})"
        )
    if len(head) < _HEADER_LEN:
        raise InputError(f"{p}: truncated firmware image ({size} bytes, header needs {_HEADER_LEN})")
    chip_id = int.from_bytes(head[_CHIP_ID_AT : _CHIP_ID_AT + 2], "little")
    chip = CHIP_IDS.get(chip_id)
    if chip is None:
        known = ", ".join(f"{i}={n}" for i, n in sorted(CHIP_IDS.items()))
        raise InputError(f"{p}: image is for unsupported chip id {chip_id} (supported: {known})")
    return {"path": str(p), "size": size, "chip": chip}


class _Progress(threading.local):
    """This thread's progress callback (None: none): boards written in parallel threads (`flash
    --all --micropython`) each get their own bar through the one logger installed."""

    fn = None


_progress = _Progress()
_install_lock = threading.Lock()
_installed = {"count": 0, "previous": None}  # writes under way with a callback; esptool's own logger


def _forwarding_logger(inner):
    """An esptool logger that passes everything to ``inner`` and its progress bars to the calling
    thread's callback as well."""
    from esp_pylib.logger import EspLogBase

    class _Forward(EspLogBase):
        def __init__(self, inner):
            self._inner = inner

        def __getattr__(self, name):  # esptool also calls warning/error and other extras
            return getattr(self._inner, name)

        def print(self, *a, **k):
            """Passed to esptool's own logger."""
            self._inner.print(*a, **k)

        def err(self, *a, suggestion=None):
            """Passed to esptool's own logger."""
            self._inner.err(*a, suggestion=suggestion)

        def warn(self, *a, suggestion=None):
            """Passed to esptool's own logger."""
            self._inner.warn(*a, suggestion=suggestion)

        def note(self, *a):
            """Passed to esptool's own logger."""
            self._inner.note(*a)

        def hint(self, *a):
            """Passed to esptool's own logger."""
            self._inner.hint(*a)

        def debug(self, *a):
            """Passed to esptool's own logger."""
            self._inner.debug(*a)

        def stage(self, finish=False):
            """Passed to esptool's own logger."""
            self._inner.stage(finish=finish)

        def set_verbosity(self, mode):
            """Passed to esptool's own logger."""
            self._inner.set_verbosity(mode)

        def set_info_stream(self, stream):
            """Passed to esptool's own logger."""
            self._inner.set_info_stream(stream)

        def counter_line(self, prefix, suffix, *, final=False):
            """Passed to esptool's own logger."""
            self._inner.counter_line(prefix, suffix, final=final)

        def progress_bar(self, cur_iter, total_iters, prefix="", suffix="", bar_length=30):
            """The one call that carries write progress: told to this thread's callback, then drawn as usual."""
            fn = _progress.fn
            if fn is not None and total_iters > 0:
                fn(cur_iter, total_iters)
            self._inner.progress_bar(cur_iter, total_iters, prefix=prefix, suffix=suffix, bar_length=bar_length)

    return _Forward(inner)


@contextmanager
def _report_write_progress(progress, total: int):
    """Forward esptool's write progress bar to ``progress(done, total)`` while writing.

    esptool's API reports progress only through its process-wide logger (``log.progress`` ->
    ``progress_bar``): one forwarding logger is installed while any write with a callback runs (a
    count under a lock: parallel writes neither restore each other's swap nor see each other's
    progress; each thread's callback is its own) and esptool's logger restored after the last.
    esptool counts compressed bytes; they are scaled to image bytes. ``(0, total)`` is sent first
    and ``(total, total)`` last, whatever esptool reports.
    """
    if progress is None:
        yield
        return
    from esp_pylib.logger import EspLog

    last = [None]

    def report(done: int):
        """Send ``done`` (clamped to 0..total) to the callback, only when it changed."""
        done = max(0, min(done, total))
        if done != last[0]:
            last[0] = done
            progress(done, total)

    with _install_lock:
        if _installed["count"] == 0:
            _installed["previous"] = EspLog.instance
            EspLog.instance = _forwarding_logger(EspLog.instance if EspLog.instance is not None else EspLog())
        _installed["count"] += 1
    _progress.fn = lambda cur, n: report(round(cur * total / n))
    try:
        report(0)
        yield
        report(total)
    finally:
        _progress.fn = None
        with _install_lock:
            _installed["count"] -= 1
            if _installed["count"] == 0:
                EspLog.instance = _installed["previous"]


def write_base_image(port: str, image_path, baud: int = 460800, progress=None) -> dict:
    """Erase a board's whole flash and write the MicroPython image at its chip's offset.

    The full erase clears any filesystem or settings left by earlier firmware, so the node boots
    a clean MicroPython. The image is checked first and the board's chip is compared with the
    image's before anything is erased. esptool compresses the transfer and verifies the
    written data by MD5; the chip is hard-reset so MicroPython starts, and the port is closed.
    ``progress(done_bytes, total_bytes)`` is called as bytes are written (see
    ``_report_write_progress``). Returns ``{"port", "chip", "image", "bytes", "offset"}``.
    """
    info = inspect_image(image_path)
    try:
        data = Path(info["path"]).read_bytes()
    except OSError as e:
        raise InputError(f"{info['path']}: cannot read: {e.strerror or e}") from e
    offset = FLASH_OFFSET[info["chip"]]

    from esptool import cmds
    from esptool.loader import ESPLoader
    from esptool.util import FatalError, NotImplementedInROMError

    # the ROM bootloader syncs at 115200; faster rates are switched to once the stub runs
    rom_baud = ESPLoader.ESP_ROM_BAUD
    from roadnode.usb.portlock import acquire

    # esptool opens the port itself, without a lock: ours is held around it (usb.portlock), so
    # no other roadnode command talks to a board while its flash is erased and written
    lock = acquire(port)
    step = "open the port and detect the chip"
    try:
        esp = cmds.detect_chip(port, baud=min(baud, rom_baud))
        with esp:  # closes the serial port however this block is left
            board_chip = esp.CHIP_NAME
            if board_chip != info["chip"]:
                raise DeviceError(
                    f"{port}: board is an {board_chip} but {info['path']} is an image for "
                    f"{info['chip']}; nothing was written"
                )
            step = "load the flasher stub"
            esp = cmds.run_stub(esp)
            if baud > rom_baud:
                step = f"switch to {baud} baud"
                try:
                    esp.change_baud(baud)
                except NotImplementedInROMError:
                    pass  # no stub (e.g. secure download mode): keep the ROM rate
            step = "attach the flash"
            cmds.attach_flash(esp)
            step = "erase the flash"
            cmds.erase_flash(esp)
            step = f"write the image at {offset:#x}"
            with _report_write_progress(progress, len(data)):
                cmds.write_flash(esp, [(offset, data)], compress=True)
            step = "reset the chip"
            cmds.reset_chip(esp, "hard-reset")
            step = "close the port"
    except (FatalError, OSError) as e:  # serial.SerialException is an OSError
        raise DeviceError(f"{port}: could not {step}: {e}") from e
    finally:
        lock.release()
    return {"port": port, "chip": board_chip, "image": info["path"], "bytes": len(data), "offset": offset}
