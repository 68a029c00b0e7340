"""Drive scenarios: a road, a vehicle, a speed profile and the sensors' raw output, with the truth."""

from roadnode.scenario.build import make_scenario  # noqa: F401
from roadnode.scenario.fileformat import Scenario, load_scenario, save_scenario  # noqa: F401
from roadnode.scenario.report import summarize  # noqa: F401
