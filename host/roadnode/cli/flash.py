"""`roadnode flash`: install or update the firmware on one or many boards (see docs/flash.md)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from roadnode.cli.common import err, out, print_json
from roadnode.errors import InputError


@click.command()
@click.option("--port", "ports", multiple=True, help="Serial port of a board (repeat for several boards).")
@click.option("--all", "all_ports", is_flag=True, help="Every ESP32 USB-serial port on this machine.")
@click.option("--board", default=None, help="Board definition (boards/NAME.json); default: detected.")
@click.option("--device-id", type=int, default=None, help="Set the node's device id (one port only).")
@click.option("--micropython", "micropython", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="First erase the board and write this MicroPython image (.bin) with esptool.")
@click.option("--firmware", "firmware", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Firmware folder to install (main.py, boot.py, rnfw/; e.g. a release); default: the checkout's.")
@click.option("--baud", type=click.IntRange(1, 12_000_000), default=115200, show_default=True)
@click.option("--rekey", is_flag=True, help="Give the node a new device key (default: a key is made on the first "
              "flash of a node with a device id and kept after; docs/security.md).")
@click.option("--db", "db_url", metavar="URL", help="Register a new key in this collector database's key store "
              "(without it the key is saved to --key-dir for `roadnode fleet keys add`).")
@click.option("--key-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where a new key is saved (key-<id>.bin, mode 0600) when it is not registered with --db "
              "(default: keys/ in the user's data folder, beside the default fleet.db).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per board, then exit.")
def flash(ports, all_ports, board, device_id, micropython, firmware, baud, rekey, db_url, key_dir, as_json):
    """Put the firmware on boards: only what changed is sent, every file is verified on the board,
    and the switch to the new firmware is atomic (an interrupted flash boots the old one). Several
    boards are flashed in parallel. Exit 3 if a board was unreachable or misbehaved, 2 for bad input,
    1 if a check failed (e.g. a corrupted transfer refused); the gravest outcome decides."""
    from roadnode.usb.flash import check_firmware_dir, flash_boards, list_boards, outcome
    from roadnode.usb.keys import default_key_dir, key_sink
    from roadnode.usb.ports import esp_ports

    if firmware is not None:
        check_firmware_dir(firmware)  # a wrong folder is bad input, before any board is touched
        from roadnode.mpy.build import compiled_firmware

        compiled_firmware("xtensawin", firmware)  # so is a module that does not compile (the ESP32's
        # architecture: the flash finds it cached)
    if board is not None and board not in list_boards():
        raise InputError(f"unknown board {board!r} (known: {', '.join(list_boards())})")
    ports = list(ports)
    if all_ports:
        ports += [p for p in esp_ports() if p not in ports]
        if not ports:
            raise InputError("--all: no ESP32 USB-serial port found (CP210x, CH340/CH9102, FTDI, native USB)")
    if not ports:
        raise InputError("give --port PORT (repeatable) or --all")
    if device_id is not None and len(ports) > 1:
        raise InputError("--device-id names one node: use it with one --port")

    notes: list[str] = []
    kw = dict(board=board, device_id=device_id, baud=baud, wait_heartbeat=30.0, micropython=micropython,
              firmware=firmware, rekey=rekey, key_sink=key_sink(db_url, key_dir or default_key_dir(), notes))
    if as_json or len(ports) == 1 and not err.is_terminal:
        results = flash_boards(ports, **kw)
    else:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        # one line per board, drawn by one renderer: parallel boards never scramble the output
        with Progress(TextColumn("{task.fields[port]:<16}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                      TextColumn("{task.fields[what]}"), TimeElapsedColumn(), console=err) as prog:
            tasks = {p: prog.add_task("", total=1.0, port=p, what="waiting") for p in ports}
            results = flash_boards(ports, lambda p, what, frac: prog.update(tasks[p], completed=frac, what=what), **kw)
            for p, r in results.items():
                prog.update(tasks[p], what="[green]ok" if r.ok else "[red]FAILED")

    for n in notes:  # (where each new key went; never the key)
        err.print(escape(n), highlight=False, soft_wrap=True)
    if as_json:
        for r in results.values():
            print_json(r.as_dict())
    else:
        from rich.table import Table

        t = Table(title="roadnode flash")
        for c in ("port", "result", "board", "firmware", "files sent/copied/kept/deleted", "KB sent", "time"):
            t.add_column(c)
        for r in results.values():
            t.add_row(r.port, "[green]ok" if r.ok else "[red]failed", (r.board or "?") + (" (detected)" if r.detected else ""),
                      f"{r.version or '?'} {r.form or ''}" + ("" if r.changed or not r.ok else " (unchanged)"),
                      f"{r.sent}/{r.copied}/{r.kept}/{r.deleted}", f"{r.bytes_sent / 1024:.1f}", f"{r.seconds:.1f} s")
        out.print(t)
        for r in results.values():
            for w in r.warnings:  # one line each (soft_wrap), the text as it is (escape: no markup)
                err.print(f"[yellow]warning:[/yellow] {escape(r.port)}: {escape(w)}", highlight=False, soft_wrap=True)
            if r.error and len(results) > 1:  # one board: its error is the command's (below)
                err.print(f"[red]error:[/red] {escape(r.error)}", highlight=False, soft_wrap=True)
    e = outcome(results)
    if e is not None:
        raise e
