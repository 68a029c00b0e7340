"""JSON for tools and browsers: NaN and infinities become null (JSON has neither), numpy scalars
plain numbers. One rule for the CLI's --json output and the dashboard's API."""

from __future__ import annotations

import math


def json_safe(o):
    """``o`` with NaN/inf as None, tuples as lists and numpy scalars as Python ones, so json.dumps writes valid
    JSON."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [json_safe(v) for v in o]
    if hasattr(o, "item") and callable(o.item) and not isinstance(o, (str, bytes)):  # numpy scalars
        return json_safe(o.item())
    return o
