"""The dashboard's Flask application: pages (/, /fleet, /devices/<id>), JSON under /api/, and the
offline assets (Leaflet from XStatic-Leaflet, plotly.min.js from plotly) under /assets/.

Flask because the dashboard is a handful of synchronous read-only queries over one database
connection: a WSGI app served by waitress (roadnode.web.server) needs no event loop, and Flask's
test client exercises every route without a socket.
"""

from __future__ import annotations

import functools
import json
import time

from flask import Flask, Response, jsonify, render_template, request, send_from_directory
from werkzeug.exceptions import HTTPException

from roadnode.errors import InputError, RoadnodeError
from roadnode.fleet.store import Store, display_url
from roadnode.jsonsafe import json_safe
from roadnode.web import data

DEVICE_MAX = (1 << 24) - 1


@functools.lru_cache(maxsize=1)
def plotly_js() -> bytes:
    """plotly's own bundled plotly.min.js (no CDN)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode()


def leaflet_dir() -> str:
    """Where the installed Leaflet package keeps its files."""
    import xstatic.pkg.leaflet as xl

    return xl.BASE_DIR


def create_app(store: Store | str, tiles: str | None = None, refresh_s: float = 5.0,
               clock=time.time) -> Flask:
    """The app over ``store`` (a Store, or a database URL to open). ``tiles``: an optional
    background tile layer URL template ({z}/{x}/{y}); ``refresh_s``: how often the fleet page
    refreshes itself; ``clock``: what "now" is for device states (tests fix it)."""
    if isinstance(store, str):
        store = Store(store)
    app = Flask(__name__)
    app.json.sort_keys = False
    app.config.update(store=store, tiles=tiles, refresh_s=refresh_s)
    cache = data.RoadsCache()
    page = {"tiles": tiles, "refresh_ms": int(refresh_s * 1000), "db": display_url(store.url)}

    # ---- errors: JSON under /api/, a short page elsewhere -------------------------------------------
    def _error(status: int, msg: str):
        if request.path.startswith("/api/"):
            return jsonify(error=msg, status=status), status
        return render_template("error.html", status=status, message=msg, **page), status

    @app.errorhandler(data.UnknownDevice)
    def _unknown(e):
        return _error(404, str(e))

    @app.errorhandler(InputError)
    def _bad(e):
        return _error(400, str(e))

    @app.errorhandler(RoadnodeError)
    def _store(e):  # the database refused or is gone (StoreError): try again later
        return _error(503, str(e))

    @app.errorhandler(HTTPException)
    def _http(e):
        return _error(e.code or 500, e.description or e.name)

    @app.errorhandler(Exception)
    def _crash(e):
        app.logger.exception("%s %s", request.method, request.path)
        return _error(500, f"internal error: {type(e).__name__}")

    def _device_id(v: str) -> int:
        if not v.isdigit() or int(v) > DEVICE_MAX:
            raise InputError(f"device {v[:40]!r}: expected a device id 0..{DEVICE_MAX}")
        return int(v)

    def _since_until():
        a = request.args
        now = clock()
        since = data.time_param(a.get("since"), "since", now)
        until = data.time_param(a.get("until"), "until", now)
        data.window(since, until)
        return since, until

    # ---- pages ---------------------------------------------------------------------------------------
    @app.get("/")
    def map_page():
        """The road map."""
        from roadnode.web.static import map_config

        return render_template("map.html", inline=False, config_json=map_config(tiles), **page)

    @app.get("/fleet")
    def fleet_page():
        """The fleet's device list."""
        return render_template("fleet.html", **page)

    @app.get("/devices/<dev>")
    def device_page(dev):
        """One device's page (404 if unknown)."""
        i = _device_id(dev)
        data.check_device(store, i)
        return render_template("device.html", device_id=i, **page)

    # ---- JSON ----------------------------------------------------------------------------------------------
    @app.get("/api/fleet")
    def api_fleet():
        """Every device's state as JSON."""
        return jsonify(json_safe(data.fleet(store, clock())))

    @app.get("/api/roads")
    def api_roads():
        """Road segments coloured by IRI as GeoJSON, in the since/until window (cached)."""
        since, until = _since_until()
        return _geojson(cache.get(store, since, until))

    @app.get("/api/events")
    def api_events():
        """Events (potholes, bumps) as GeoJSON points, filtered by window and device."""
        since, until = _since_until()
        dev = request.args.get("device")
        dev = _device_id(dev) if dev else None
        limit = data.int_param(request.args.get("limit"), "limit", 1, 100_000, 5000)
        return _geojson(data.events(store, dev, since, until, limit))

    @app.get("/api/positions")
    def api_positions():
        """Devices' last known positions as GeoJSON."""
        return _geojson(data.positions(data.fleet(store, clock())))

    @app.get("/api/network")
    def api_network():
        """The road network's lines as GeoJSON."""
        return _geojson(data.network())

    @app.get("/api/devices/<dev>")
    def api_device(dev):
        """One device's status row, vitals over time and last position as JSON."""
        i = _device_id(dev)
        since = data.time_param(request.args.get("since"), "since", clock())
        limit = data.int_param(request.args.get("limit"), "limit", 1, 100_000, 2000)
        return jsonify(json_safe(data.device(store, i, clock(), since, limit)))

    @app.get("/api/segments")
    def api_segments():
        """Recent segments as JSON, filtered by device and since."""
        a = request.args
        dev = _device_id(a["device"]) if a.get("device") else None
        since = data.time_param(a.get("since"), "since", clock())
        limit = data.int_param(a.get("limit"), "limit", 1, 100_000, 500)
        return jsonify(json_safe(data.segments(store, dev, since, limit)))

    @app.get("/api/")
    def api_index():
        """The API's endpoints, for discovery."""
        return jsonify(endpoints=["/api/fleet", "/api/roads?since=&until=", "/api/events?since=&until=&device=",
                                  "/api/positions", "/api/network", "/api/devices/<id>?since=&limit=",
                                  "/api/segments?device=&since=&limit="])

    # ---- offline assets -------------------------------------------------------------------------------
    @app.get("/assets/leaflet/<path:name>")
    def leaflet(name):
        """Leaflet's files, served locally (no CDN)."""
        return send_from_directory(leaflet_dir(), name, max_age=86400)

    @app.get("/assets/plotly.min.js")
    def plotly():
        """plotly.js, served locally (no CDN)."""
        return Response(plotly_js(), mimetype="text/javascript", headers={"Cache-Control": "max-age=86400"})

    return app


def _geojson(fc: dict) -> Response:
    return Response(json.dumps(json_safe(fc), separators=(",", ":")), mimetype="application/geo+json")
