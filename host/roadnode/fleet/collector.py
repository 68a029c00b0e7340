"""The collector's core under its first names (tests, bench/uplink_drive.py): `Store` (store.py)
and `Collector` (service.py). `roadnode collect` (cli/collect.py) runs them as a service."""

from roadnode.fleet.service import Collector, broker_address
from roadnode.fleet.store import Store, StoreError

__all__ = ["Collector", "Store", "StoreError", "broker_address"]
