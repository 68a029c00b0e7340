"""The road network vehicles drive: roads with a roughness each (GeoJSON, docs/roads.md), and the
fleet's trips over them as drive scenarios."""

from roadnode.roads.network import RoadNetwork, load_network  # noqa: F401
from roadnode.roads.trips import fleet_route, network_scenario  # noqa: F401
