"""`roadnode serve`: the road-condition map and the fleet dashboard in the browser (docs/dashboard.md).

`create_app` (Flask) over the collector's database; `serve` runs it with waitress; `write_map`
writes the map as one self-contained HTML file. Everything works offline: Leaflet comes from
XStatic-Leaflet, the charts' plotly.min.js from plotly, both installed packages.
"""

from roadnode.web.app import create_app  # noqa: F401
from roadnode.web.static import write_map  # noqa: F401
