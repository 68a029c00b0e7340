"""``roadnode.usb.base_image``: checking a MicroPython image and writing it with esptool.

Only esptool's API functions are faked (detect_chip, run_stub, attach_flash, erase_flash,
write_flash, reset_chip); the fakes record the calls so order, offsets and port closing show.
"""

from __future__ import annotations

import pytest
from esp_pylib.logger import EspLog
from esptool import cmds
from esptool.logger import log
from esptool.util import FatalError

from roadnode.usb.base_image import FLASH_OFFSET, inspect_image, write_base_image
from roadnode.errors import DeviceError, InputError

CHIP_ID = {"ESP32": 0, "ESP32-S2": 2, "ESP32-C3": 5, "ESP32-S3": 9, "ESP32-C6": 13}


def make_image(tmp_path, chip="ESP32", size=4096, name=None, magic=0xE9):
    """A file shaped like an ESP image: magic, common header, extended header with chip id."""
    head = bytearray(24)
    head[0] = magic
    head[1] = 3  # segments
    head[12:14] = CHIP_ID[chip].to_bytes(2, "little")
    body = bytes((i * 7) & 0xFF for i in range(size - len(head)))
    p = tmp_path / (name or f"micropython-{chip.lower()}.bin")
    p.write_bytes(bytes(head) + body)
    return p


class FakeESP:
    def __init__(self, chip, calls):
        self.CHIP_NAME = chip
        self.calls = calls

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.calls.append(("close",))

    def change_baud(self, baud):
        self.calls.append(("change_baud", baud))


@pytest.fixture
def board(monkeypatch):
    """Fake esptool boundary; set ``board.chip`` and optional ``board.fail`` / ``board.write``."""

    class Board:
        chip = "ESP32"
        calls: list = []
        fail: dict = {}
        write = None  # optional extra behaviour inside write_flash (e.g. progress)

    b = Board()
    b.calls = []
    b.fail = {}

    def step(name, *rec):
        b.calls.append((name, *rec))
        if name in b.fail:
            raise b.fail[name]

    def detect_chip(port, baud=115200, **kw):
        step("detect_chip", port, baud)
        return FakeESP(b.chip, b.calls)

    def run_stub(esp, plugins=None):
        step("run_stub")
        return esp

    def attach_flash(esp, spi_connection=None, flash_type="nor"):
        step("attach_flash")

    def erase_flash(esp, force=False, flash_type="nor"):
        step("erase_flash")

    def write_flash(esp, addr_data, flash_freq="keep", flash_mode="keep", flash_size="keep", **kw):
        (addr, data), = addr_data
        step("write_flash", addr, bytes(data), kw)
        if b.write:
            b.write(len(data))

    def reset_chip(esp, reset_mode="hard-reset"):
        step("reset_chip", reset_mode)

    for name, fn in [("detect_chip", detect_chip), ("run_stub", run_stub), ("attach_flash", attach_flash),
                     ("erase_flash", erase_flash), ("write_flash", write_flash), ("reset_chip", reset_chip)]:
        monkeypatch.setattr(cmds, name, fn)
    return b


def names(calls):
    return [c[0] for c in calls]


# --- inspect_image ---------------------------------------------------------------------------


@pytest.mark.parametrize("chip", sorted(CHIP_ID))
def test_inspect_reads_chip_from_header(tmp_path, chip):
    p = make_image(tmp_path, chip, size=1000)
    assert inspect_image(p) == {"path": str(p), "size": 1000, "chip": chip}


def test_flash_offsets_per_chip():
    assert FLASH_OFFSET == {"ESP32": 0x1000, "ESP32-S2": 0x1000, "ESP32-S3": 0x0,
                            "ESP32-C3": 0x0, "ESP32-C6": 0x0}


@pytest.mark.parametrize("name, content, message", [
    ("nope.bin", None, "nope.bin.*no such file"),
    ("empty.bin", b"", "empty.bin.*empty"),
    ("notes.txt", b"hello, this is not firmware\n" * 10, r"notes.txt.*not an ESP firmware image"),
    ("short.bin", b"\xe9\x03\x02\x20", "short.bin.*truncated"),
])
def test_bad_image_file_is_input_error_naming_it(tmp_path, name, content, message):
    p = tmp_path / name
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(InputError, match=message):
        inspect_image(p)


def test_unknown_chip_id_is_input_error(tmp_path):
    p = make_image(tmp_path, "ESP32")
    raw = bytearray(p.read_bytes())
    raw[12:14] = (77).to_bytes(2, "little")
    p.write_bytes(bytes(raw))
    with pytest.raises(InputError, match=f"{p.name}.*chip id 77"):
        inspect_image(p)


def test_directory_is_input_error(tmp_path):
    with pytest.raises(InputError, match="not a file"):
        inspect_image(tmp_path)


# --- write_base_image ------------------------------------------------------------------------


@pytest.mark.parametrize("chip, offset", [("ESP32", 0x1000), ("ESP32-S3", 0x0)])
def test_erases_then_writes_at_chip_offset_and_closes(tmp_path, board, chip, offset):
    board.chip = chip
    img = make_image(tmp_path, chip, size=5000)
    out = write_base_image("/dev/ttyFAKE0", img, baud=460800)

    assert out == {"port": "/dev/ttyFAKE0", "chip": chip, "image": str(img), "bytes": 5000, "offset": offset}
    assert names(board.calls) == ["detect_chip", "run_stub", "change_baud", "attach_flash",
                                  "erase_flash", "write_flash", "reset_chip", "close"]
    assert board.calls[0] == ("detect_chip", "/dev/ttyFAKE0", 115200)
    assert ("change_baud", 460800) in board.calls
    _, addr, data, kw = board.calls[names(board.calls).index("write_flash")]
    assert addr == offset
    assert data == img.read_bytes()
    assert kw.get("compress") is True
    assert ("reset_chip", "hard-reset") in board.calls


def test_slow_baud_connects_at_that_rate_without_switching(tmp_path, board):
    write_base_image("/dev/ttyFAKE0", make_image(tmp_path, "ESP32"), baud=115200)
    assert board.calls[0] == ("detect_chip", "/dev/ttyFAKE0", 115200)
    assert "change_baud" not in names(board.calls)


def test_wrong_chip_refused_before_erase(tmp_path, board):
    board.chip = "ESP32-S3"
    img = make_image(tmp_path, "ESP32")
    with pytest.raises(DeviceError) as ei:
        write_base_image("/dev/ttyFAKE0", img)
    msg = str(ei.value)
    assert "ESP32-S3" in msg and "for ESP32" in msg and img.name in msg
    assert "erase_flash" not in names(board.calls)
    assert "write_flash" not in names(board.calls)
    assert names(board.calls)[-1] == "close"


def test_bad_image_never_opens_port(tmp_path, board):
    p = tmp_path / "firmware.bin"
    p.write_bytes(b"PK\x03\x04 a zip, not an image" * 4)
    with pytest.raises(InputError, match="firmware.bin"):
        write_base_image("/dev/ttyFAKE0", p)
    with pytest.raises(InputError, match="missing.bin"):
        write_base_image("/dev/ttyFAKE0", tmp_path / "missing.bin")
    assert board.calls == []


def test_fatal_error_during_write_is_device_error(tmp_path, board):
    board.fail["write_flash"] = FatalError("MD5 of file does not match data in flash!")
    with pytest.raises(DeviceError) as ei:
        write_base_image("/dev/ttyFAKE7", make_image(tmp_path, "ESP32"))
    msg = str(ei.value)
    assert "/dev/ttyFAKE7" in msg and "write the image" in msg and "MD5" in msg
    assert "reset_chip" not in names(board.calls)
    assert names(board.calls)[-1] == "close"


def test_serial_error_on_connect_is_device_error(tmp_path, board):
    import serial

    board.fail["detect_chip"] = serial.SerialException("could not open port /dev/ttyGONE")
    with pytest.raises(DeviceError, match=r"/dev/ttyGONE: could not open the port"):
        write_base_image("/dev/ttyGONE", make_image(tmp_path, "ESP32"))


def test_progress_follows_esptool_bar_and_reaches_total(tmp_path, board):
    """esptool reports through its logger's progress bar (compressed bytes); scaled to image bytes."""

    def esptool_like_write(n):
        compressed = 1000
        with log.progress(total=compressed, unit="B") as bar:
            for _ in range(4):
                bar.update(advance=250)

    board.write = esptool_like_write
    seen = []
    img = make_image(tmp_path, "ESP32", size=8000)
    logger_before = EspLog.instance
    write_base_image("/dev/ttyFAKE0", img, progress=lambda d, t: seen.append((d, t)))

    assert seen == [(0, 8000), (2000, 8000), (4000, 8000), (6000, 8000), (8000, 8000)]
    # esptool's own logger is back in place afterwards
    assert EspLog.instance is logger_before


def test_progress_start_and_end_when_esptool_reports_nothing(tmp_path, board):
    board.chip = "ESP32-S3"
    seen = []
    write_base_image("/dev/ttyFAKE0", make_image(tmp_path, "ESP32-S3", size=3000),
                     progress=lambda d, t: seen.append((d, t)))
    assert seen == [(0, 3000), (3000, 3000)]


def test_logger_restored_after_failed_write(tmp_path, board):
    before = EspLog.instance
    board.fail["write_flash"] = FatalError("boom")
    with pytest.raises(DeviceError):
        write_base_image("/dev/ttyFAKE0", make_image(tmp_path, "ESP32"), progress=lambda d, t: None)
    assert EspLog.instance is before



def test_parallel_writes_each_see_their_own_progress_and_the_logger_comes_back(tmp_path, board):
    """`flash --all --micropython` writes boards in threads: esptool's logger is process-wide, so
    each write's progress must reach its own callback only, and esptool's logger be back after both
    (however they interleave: here both are inside write_flash at once)."""
    import threading

    both_writing = threading.Barrier(2, timeout=10)

    def esptool_like_write(n):
        both_writing.wait()  # the two writes overlap: both forwarding at the same time
        compressed = n // 4
        with log.progress(total=compressed, unit="B") as bar:
            for _ in range(4):
                bar.update(advance=compressed // 4)
                both_writing.wait()  # interleaved step by step

    board.write = esptool_like_write
    before = EspLog.instance
    seen = {4000: [], 8000: []}
    errors = []

    def run(size, port):
        try:
            img = make_image(tmp_path, "ESP32", size=size, name=f"img{size}.bin")
            write_base_image(port, img, progress=lambda d, t: seen[size].append((d, t)))
        except Exception as e:  # noqa: BLE001 - reported by the assert below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(s, f"/dev/ttyFAKE{i}")) for i, s in enumerate(seen)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors
    for size, got in seen.items():
        assert got == [(size * k // 4, size) for k in range(5)], (size, got)
    assert EspLog.instance is before
