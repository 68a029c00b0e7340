"""Drive scenarios: a road, a vehicle, a speed profile and the sensors' raw output, with the truth.

The names below load their module on first use, so that reading a recorded drive (estimate,
replay, capture, scenario show) imports none of the builder's sensor models, whose filters need
scipy (~1 s of CPU per command)."""

from __future__ import annotations

import importlib

_HOME = {"make_scenario": "build", "Scenario": "fileformat", "load_scenario": "fileformat",
         "save_scenario": "fileformat", "summarize": "report"}
__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module 'roadnode.scenario' has no attribute {name!r}")
    return getattr(importlib.import_module(f"roadnode.scenario.{_HOME[name]}"), name)
