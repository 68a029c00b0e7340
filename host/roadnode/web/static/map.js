/* roadnode road-condition map (Leaflet). Live: data from /api/roads, /api/events, /api/positions,
   /api/network, re-queried by the date filter. Static page (roadnode.web.static): the same data is
   inlined in #rn-data and the filter is absent. */
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("rn-config").textContent);
  var inlineEl = document.getElementById("rn-data");
  var inlined = inlineEl ? JSON.parse(inlineEl.textContent) : null;
  var classes = cfg.classes;
  var colour = {};
  classes.forEach(function (c) { colour[c.name] = c.color; });

  function esc(v) {
    return String(v === null || v === undefined ? "" : v).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
    });
  }
  function num(v, d) { return v === null || v === undefined ? "n/a" : Number(v).toFixed(d); }
  function showError(msg) { document.getElementById("rn-error").textContent = msg || ""; }

  var map = L.map("map", {zoomSnap: 0.25});
  if (cfg.tiles) {
    L.tileLayer(cfg.tiles, {maxZoom: 19, attribution: cfg.tiles_attribution || ""}).addTo(map);
  }
  map.createPane("rnNetwork").style.zIndex = 350;  // under the stretches (overlayPane: 400)
  var network = L.layerGroup().addTo(map);
  var stretches = L.featureGroup().addTo(map);
  var events = L.layerGroup().addTo(map);
  var devices = L.layerGroup().addTo(map);
  L.control.layers(null, {
    "Road condition": stretches, "Potholes and bumps": events, "Devices (last position)": devices,
    "Road network": network
  }, {collapsed: false, position: "topright"}).addTo(map);
  L.control.scale({imperial: false}).addTo(map);

  var legend = L.control({position: "bottomright"});
  legend.onAdd = function () {
    var d = L.DomUtil.create("div", "rn-legend");
    var h = "<b>IRI m/km</b> (median)<br>";
    classes.forEach(function (c) {
      var range = c.max === null ? "&ge; " + c.min : c.min + "&ndash;" + c.max;
      h += '<i style="background:' + c.color + '"></i>' + esc(c.name) + " " + range + "<br>";
    });
    h += '<i style="background:#888;height:2px;border-top:2px dashed #888;background:none"></i>under 3 passes<br>';
    h += '<i class="dot" style="background:#d7301f"></i>pothole <i class="dot" style="background:#fdae61"></i>bump<br>';
    h += '<i class="dot" style="background:#2c7fb8;border-color:#fff"></i>device';
    d.innerHTML = h;
    return d;
  };
  legend.addTo(map);

  // Two directions of one road share a line: draw each a few metres to the right of its travel.
  function offsetRight(coords, headingDeg, metres) {
    var h = (headingDeg + 90) * Math.PI / 180;
    return coords.map(function (c) {
      var lat = c[1], lon = c[0];
      var dn = Math.cos(h) * metres, de = Math.sin(h) * metres;
      return [lat + dn / 111320, lon + de / (111320 * Math.cos(lat * Math.PI / 180))];
    });
  }

  function stretchPopup(p) {
    var rows = [
      ["IRI median", num(p.median_iri_m_per_km, 2) + " m/km (" + esc(p.iri_class) + ")"],
      ["p25 &ndash; p75", num(p.p25, 2) + " &ndash; " + num(p.p75, 2) + " m/km"],
      ["passes", p.n_passes], ["vehicles", p.n_vehicles], ["segments", p.n_segments],
      ["last pass", esc(p.last_pass)], ["confidence", esc(p.confidence)],
      ["direction", esc(p.direction) + " (" + num(p.heading_deg, 0) + "&deg;)"], ["H3 cell", esc(p.cell)]
    ];
    return '<table class="rn-popup">' + rows.map(function (r) {
      return "<tr><th>" + r[0] + "</th><td>" + r[1] + "</td></tr>";
    }).join("") + "</table>";
  }

  function drawNetwork(fc) {
    network.clearLayers();
    (fc.features || []).forEach(function (f) {
      if (!f.geometry || f.geometry.type !== "LineString") return;
      L.polyline(f.geometry.coordinates.map(function (c) { return [c[1], c[0]]; }), {
        color: "#9aa3ad", weight: 7, opacity: 0.35, interactive: false, className: "rn-network", pane: "rnNetwork"
      }).addTo(network);
    });
  }

  function drawRoads(fc) {
    stretches.clearLayers();
    fc.features.forEach(function (f) {
      var p = f.properties;
      var few = p.confidence === "none";
      L.polyline(offsetRight(f.geometry.coordinates, p.heading_deg || 0, 4), {
        color: colour[p.iri_class] || "#555", weight: 6, opacity: few ? 0.65 : 0.95,
        dashArray: few ? "6 6" : null, lineCap: "butt",
        className: "rn-stretch rn-" + (p.iri_class || "none")
      }).bindPopup(stretchPopup(p)).addTo(stretches);
    });
    var lo = fc.left_out || {};
    var left = (lo.flagged || 0) + (lo.no_iri || 0) + (lo.no_position || 0) + (lo.no_heading || 0);
    document.getElementById("rn-summary").textContent = fc.features.length + " stretches from " +
      (fc.segments || 0) + " segments (" + left + " left out: " + (lo.flagged || 0) + " flagged)";
  }

  function drawEvents(fc) {
    events.clearLayers();
    fc.features.forEach(function (f) {
      var p = f.properties, c = f.geometry.coordinates;
      L.circleMarker([c[1], c[0]], {
        radius: 6, weight: 2, color: "#222", fillOpacity: 0.9,
        fillColor: p.kind === "pothole" ? "#d7301f" : "#fdae61", className: "rn-event rn-" + esc(p.kind)
      }).bindPopup("<b>" + esc(p.kind) + "</b><br>peak " + num(p.peak_g, 1) + " g at " + esc(p.speed_kmh) +
        " km/h<br>device " + esc(p.device_id) + "<br>" + esc(p.time)).addTo(events);
    });
  }

  function drawDevices(fc) {
    devices.clearLayers();
    fc.features.forEach(function (f) {
      var p = f.properties, c = f.geometry.coordinates;
      var link = inlined ? "device " + esc(p.device_id) : '<a href="/devices/' + esc(p.device_id) + '">device ' +
        esc(p.device_id) + "</a>";
      L.circleMarker([c[1], c[0]], {
        radius: 8, weight: 3, color: "#fff", fillColor: p.state === "online" ? "#2c7fb8" : "#777",
        fillOpacity: 1, className: "rn-device"
      }).bindPopup(link + " (" + esc(p.state) + ")<br>last position " + esc(p.time) +
        (p.problems && p.problems.length ? "<br>problems: " + esc(p.problems.join(", ")) : "")).addTo(devices);
    });
  }

  var fitted = false;
  function fit() {
    if (fitted) return;
    var b = stretches.getBounds();
    network.eachLayer(function (l) { b = b.isValid() ? b.extend(l.getBounds()) : l.getBounds(); });
    if (b.isValid()) { map.fitBounds(b, {padding: [20, 20]}); fitted = true; }
    else { map.setView([0, 0], 2); }
  }

  function getJSON(url) {
    return fetch(url, {headers: {"Accept": "application/json"}}).then(function (r) {
      return r.json().then(function (j) {
        if (!r.ok) throw new Error(j.error || (url + ": HTTP " + r.status));
        return j;
      });
    });
  }

  function query() {
    var q = [], s = document.getElementById("rn-since").value, u = document.getElementById("rn-until").value;
    if (s) q.push("since=" + encodeURIComponent(s));
    if (u) {  // the whole "until" day, UTC
      var d = new Date(u + "T00:00:00Z");
      d.setUTCDate(d.getUTCDate() + 1);
      q.push("until=" + encodeURIComponent(d.toISOString()));
    }
    return q.length ? "?" + q.join("&") : "";
  }

  var haveNetwork = !!cfg.tiles;  // with a tile layer the tiles are the background
  function load() {
    document.body.dataset.state = "loading";
    showError("");
    var q = query();
    return Promise.all([getJSON("/api/roads" + q), getJSON("/api/events" + q), getJSON("/api/positions"),
                        haveNetwork ? Promise.resolve(null) : getJSON("/api/network")])
      .then(function (r) {
        if (r[3]) { drawNetwork(r[3]); haveNetwork = true; }
        drawRoads(r[0]); drawEvents(r[1]); drawDevices(r[2]); fit();
        document.body.dataset.state = "ready";
      })
      .catch(function (e) {
        showError(e.message);
        document.body.dataset.state = "error";
      });
  }

  if (inlined) {
    if (inlined.network) drawNetwork(inlined.network);
    drawRoads(inlined.roads); drawEvents(inlined.events); drawDevices(inlined.positions); fit();
    document.body.dataset.state = "ready";
  } else {
    document.getElementById("rn-filter").addEventListener("submit", function (ev) { ev.preventDefault(); load(); });
    document.getElementById("rn-clear").addEventListener("click", function () {
      document.getElementById("rn-since").value = ""; document.getElementById("rn-until").value = ""; load();
    });
    load();
  }
}());
