"""The road-condition map as one self-contained HTML file, openable from disk with no server and no
network: Leaflet's JS and CSS (its images as data: URIs), the page's script and the data (roads
GeoJSON, events, device positions, the road network) are inlined. `roadnode demo` writes
out/map.html with it."""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path

from roadnode.fleet.fleet import iso
from roadnode.fleet.store import Store, display_url
from roadnode.web import data

HERE = Path(__file__).parent


def script_json(obj) -> str:
    """JSON safe inside a <script> element (no "</script>", no "<!--")."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")


def map_config(tiles: str | None) -> str:
    """The map page's config (tiles, IRI classes) as a JSON <script> literal."""
    return script_json({"tiles": tiles, "classes": data.classes_json()})


def _leaflet_css() -> str:
    """leaflet.css with its url(images/...) inlined as data: URIs."""
    from roadnode.web.app import leaflet_dir

    d = Path(leaflet_dir())
    css = (d / "leaflet.css").read_text()

    def inline(m):
        """A url(...) in Leaflet's CSS with the image inlined as a data URL (left as is if missing)."""
        p = d / m.group(1)
        if not p.is_file():
            return m.group(0)
        mime = "image/svg+xml" if p.suffix == ".svg" else f"image/{p.suffix.lstrip('.')}"
        return f"url(data:{mime};base64,{base64.b64encode(p.read_bytes()).decode()})"

    return re.sub(r"url\((images/[^)]+)\)", inline, css)


def render_map(store: Store, tiles: str | None = None, since: float | None = None, now: float | None = None) -> str:
    """The static map page as a string."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    from roadnode.web.app import leaflet_dir

    now = time.time() if now is None else now
    fleet = data.fleet(store, now)
    payload = {"roads": data.roads(store, since), "events": data.events(store, since=since),
               "positions": data.positions(fleet), "network": None if tiles else data.network()}
    env = Environment(loader=PackageLoader("roadnode.web", "templates"), autoescape=select_autoescape())
    from roadnode.jsonsafe import json_safe

    return env.get_template("map.html").render(
        inline=True, db=display_url(store.url), written=iso(now), since=iso(since),
        inline_css=(HERE / "static" / "style.css").read_text(), leaflet_css=_leaflet_css(),
        leaflet_js=(Path(leaflet_dir()) / "leaflet.js").read_text(), map_js=(HERE / "static" / "map.js").read_text(),
        config_json=map_config(tiles), data_json=script_json(json_safe(payload)))


def write_map(store: Store, path, tiles: str | None = None, since: float | None = None) -> Path:
    """Write the static map page to ``path`` (atomically; its folder made if need be); the path written."""
    from roadnode.userfiles import atomic_output, output_dir, output_path

    html = render_map(store, tiles, since)
    output_dir(Path(path).parent, "map page's folder")
    target = output_path(path, "map page")
    with atomic_output(target, "map page") as f:
        f.write(html.encode())
    return target


