"""What a board should hold: the firmware image built from a firmware folder and a board definition.

Which files of the folder go on a board is the folder's deploy list (firmware/deploy.toml); the
slot's modules go compiled for the board's .mpy architecture when mpy-cross here makes its .mpy
version, else as sources. Reads files and compiles; talks to no board (usb.flash does).
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from roadnode.errors import InputError
from roadnode.paths import BOARDS_DIR, FIRMWARE_DIR

# sys.implementation._mpy >> 10 -> mpy-cross -march
ARCHES = [None, "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp", "xtensa",
          "xtensawin", "rv32imc", "rv64imc"]
MPY_CROSS_VERSION = (6, 3)  # what the mpy-cross we depend on emits (mpy-cross --version)
DEPLOY_FILE = "deploy.toml"


def sha(data: bytes) -> str:
    """SHA-256 hex of ``data``: the hash the board computes of its files (scripts/sha.py)."""
    return hashlib.sha256(data).hexdigest()


def list_boards() -> dict[str, dict]:
    """The board definitions (boards/NAME.json) by name."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(BOARDS_DIR.glob("*.json"))}


@dataclass
class Image:
    """What a board should hold: slot files (path in the slot -> bytes) and root files."""
    slot: dict[str, bytes]
    root: dict[str, bytes]
    form: str  # "mpy-<arch>" or "py"
    version: str
    warnings: list[str] = field(default_factory=list)

    def digest(self, with_root: bool = True) -> str:
        """rnfw.manifest's digest of these files, as the board computes it of what it holds."""
        from roadnode.mpy.fwimport import fw

        M = fw("manifest")
        pairs = [(p, sha(b)) for p, b in self.slot.items()]
        if with_root:
            pairs += [("/" + n, sha(self.root[n])) for n in M.ROOT_FILES]
        return M.digest(pairs)

    def manifest(self) -> dict:
        """Version, form and the SHA-256 of every file (the key file left out, nor its hash)."""
        return {"version": self.version, "form": self.form,
                "slot": {p: sha(b) for p, b in sorted(self.slot.items())},
                "root": {p: sha(b) for p, b in sorted(self.root.items()) if p != "key.bin"}}


def firmware_version(src: Path) -> str:
    """VERSION_STR of a firmware folder's rnfw/version.py (a literal tuple: read, not imported)."""
    import ast

    text = (src / "rnfw" / "version.py").read_text()
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "VERSION":
            return "%d.%d.%d" % tuple(ast.literal_eval(node.value))
    raise InputError(f"{src}: rnfw/version.py has no VERSION")


def check_firmware_dir(src: Path) -> Path:
    """``src`` if it is a firmware folder (loader and rnfw package), else InputError naming what lacks."""
    src = Path(src)
    missing = [n for n in ("main.py", "boot.py", "rnfw/version.py", "rnfw/app.py") if not (src / n).is_file()]
    if missing:
        raise InputError(f"{src}: not a firmware folder (missing {', '.join(missing)})")
    return src


def deploy_list(src: Path = FIRMWARE_DIR) -> dict[str, list[str]]:
    """The folder's deploy list: {"root": [...], "slot": [...], "host_only": [...], "unlisted": [...]}
    (paths in the folder). A folder without one (a release made before it existed) deploys every
    rnfw module but the checkout's host-only ones. A module of rnfw/ in neither list goes in the
    slot and is named in "unlisted" (the image warns): a node that cannot import a module it
    needs is worse than one module too many (tests/firmware/test_firmware_compiles.py fails for it)."""
    src = Path(src)
    f = src / DEPLOY_FILE
    if f.is_file():
        try:
            d = tomllib.loads(f.read_text())
            out = {k: list(d[k]) for k in ("root", "slot", "host_only")}
        except (tomllib.TOMLDecodeError, KeyError, TypeError) as e:
            raise InputError(f"{f}: not a deploy list ({e})") from None
    else:
        host_only = deploy_list(FIRMWARE_DIR)["host_only"]
        out = {"root": ["boot.py", "main.py"], "host_only": host_only,
               "slot": [p for p in _modules(src) if p not in host_only]}
    out["unlisted"] = [p for p in _modules(src) if p not in out["slot"] and p not in out["host_only"]]
    out["slot"] = sorted(out["slot"] + out["unlisted"])
    missing = [p for p in out["root"] + out["slot"] if not (src / p).is_file()]
    if missing:
        raise InputError(f"{f}: lists {', '.join(missing)}, not in {src}")
    return out


def _modules(src: Path) -> list[str]:
    return sorted(p.relative_to(src).as_posix() for p in (src / "rnfw").rglob("*.py"))


def build_image(info: dict, board: str, config: dict, firmware: Path | None = None) -> Image:
    """The image for this board (``info``: the probe's "mpy" and "machine"), from the checkout's
    firmware/ or the folder ``firmware``."""
    from roadnode.mpy.build import compiled_firmware

    src = check_firmware_dir(firmware) if firmware is not None else FIRMWARE_DIR
    deploy = deploy_list(src)
    mpy = info["mpy"]
    ver, sub, arch_i = mpy & 0xFF, (mpy >> 8) & 3, mpy >> 10
    arch = ARCHES[arch_i] if arch_i < len(ARCHES) else None
    warnings = [f"{p} is not in {src / DEPLOY_FILE}: deployed; list it under 'slot' or 'host_only'"
                for p in deploy["unlisted"]]
    slot = {}
    if (ver, sub) == MPY_CROSS_VERSION and arch:
        d = compiled_firmware(arch, src)
        for p in deploy["slot"]:
            m = Path(p).with_suffix(".mpy").as_posix()
            slot[m] = (d / m).read_bytes()
        form = f"mpy-{arch}"
    else:
        warnings.append(f"the board's MicroPython takes .mpy v{ver}.{sub} (arch {arch}); mpy-cross here makes "
                        f"v{MPY_CROSS_VERSION[0]}.{MPY_CROSS_VERSION[1]}: sending .py sources (slower imports, more heap)")
        for p in deploy["slot"]:
            slot[p] = (src / p).read_bytes()
        form = "py"
    bd = (BOARDS_DIR / f"{board}.json").read_bytes()
    root = {n: (src / n).read_bytes() for n in deploy["root"]}
    root.update({"board.json": bd, "config.json": json.dumps(config, sort_keys=True).encode()})
    version = firmware_version(src)
    # the slot says what it is (for anyone reading the board later); the per-file SHA-256s are in
    # the flash result (--json) and are checked on the board, not stored (64 hex digits a file cost
    # more over 115200 baud than they tell)
    img = Image(dict(sorted(slot.items())), root, form, version, warnings)
    img.slot["manifest.json"] = json.dumps({"version": version, "form": form, "board": board,
                                            "digest": img.digest(with_root=False)}, sort_keys=True).encode()
    return img
