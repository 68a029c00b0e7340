"""Host side of the node's configuration: text from the command line to typed, validated values,
with the firmware's own schema (rnfw.config) — the node itself only ever receives typed JSON."""

from __future__ import annotations

from roadnode.errors import InputError
from roadnode.mpy.fwimport import fw


def parse_value(key: str, text: str):
    """A ``KEY=VALUE`` value as the schema's type, checked; InputError names the key and reason."""
    C = fw("config")
    spec = C._spec(key)
    if spec is None:
        raise InputError(f"{key}: unknown key (known: {', '.join(sorted(C.keys()))})")
    typ, _, _, hi, _ = spec
    try:
        if typ == "int" or (typ == "choice" and isinstance(hi[0], int)):
            v = int(text)
        elif typ == "float":
            v = float(text)
            if v != v or v in (float("inf"), float("-inf")):  # the schema's range test passes NaN
                raise InputError(f"{key}: {text!r} is not a finite number")
        else:
            v = text
    except ValueError:
        kind = "number" if typ == "float" else "whole number"
        raise InputError(f"{key}: {text!r} is not a {kind}") from None
    try:
        return C.check(key, v)
    except C.ConfigError as e:
        raise InputError(str(e)) from None


def parse_settings(pairs) -> dict:
    """Repeated ``--set KEY=VALUE`` options -> {key: typed value}."""
    d = {}
    for p in pairs:
        k, eq, v = p.partition("=")
        if not eq:
            raise InputError(f"{p!r}: expected KEY=VALUE")
        d[k.strip()] = parse_value(k.strip(), v.strip())
    return d
