/* roadnode device page: its `fleet status` row, its vitals over time as plotly charts (plotly's own
   bundled plotly.min.js), its recent segments. */
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("rn-config").textContent);
  var id = cfg.device_id;

  function esc(v) {
    return String(v === null || v === undefined ? "" : v).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
    });
  }
  function getJSON(url) {
    return fetch(url).then(function (r) {
      return r.json().then(function (j) { if (!r.ok) throw new Error(j.error || "HTTP " + r.status); return j; });
    });
  }
  function col(vs, k) { return vs.map(function (v) { return v[k]; }); }

  function status(s) {
    var badge = document.getElementById("rn-state");
    if (!s) { badge.textContent = "no status"; return; }
    badge.textContent = s.state;
    badge.className = "rn-badge " + s.state;
    var items = [["last seen", s.last_seen || "never"], ["firmware", s.fw_version], ["uptime s", s.uptime_s],
      ["reset reason", s.reset_reason], ["unexpected reboots", s.unexpected_reboots],
      ["min free heap B", s.min_free_heap], ["queue depth", s.queue_depth], ["GPS fix", s.gps_fix],
      ["IMU", s.imu_fault ? "FAULT" : "ok"], ["segments", s.segments_total], ["last segment", s.last_segment_at],
      ["problems", (s.problems || []).join(", ") || "none"]];
    document.getElementById("rn-status").innerHTML = items.map(function (kv) {
      return "<div><dt>" + esc(kv[0]) + "</dt><dd>" + esc(kv[1] === null || kv[1] === undefined ? "" : kv[1]) +
        "</dd></div>";
    }).join("");
  }

  var layout = function (title, ytitle, extra) {
    var l = {title: {text: title, font: {size: 14}}, margin: {l: 60, r: 50, t: 36, b: 40},
      xaxis: {type: "date"}, yaxis: {title: {text: ytitle}, rangemode: "tozero"}, showlegend: true,
      legend: {orientation: "h", y: -0.2}, font: {family: "system-ui, sans-serif"}};
    for (var k in extra) l[k] = extra[k];
    return l;
  };
  var opts = {displaylogo: false, responsive: true};

  function charts(vs) {
    var t = col(vs, "time");
    var line = {mode: "lines+markers", marker: {size: 4}};
    function tr(y, name, more) {
      var o = {x: t, y: y, name: name, type: "scatter"};
      for (var k in line) o[k] = line[k];
      for (k in (more || {})) o[k] = more[k];
      return o;
    }
    var ups = col(vs, "uptime_s").filter(function (s) { return s !== null; });
    var hours = ups.length && Math.max.apply(null, ups) > 7200;
    var sats = Math.max.apply(null, [1].concat(col(vs, "gps_sats").filter(function (s) { return s !== null; })));
    return Promise.all([
      Plotly.newPlot("chart-heap", [tr(col(vs, "min_free_heap"), "min free heap"),
        tr(col(vs, "free_heap"), "free heap", {line: {dash: "dot"}})], layout("Heap", "bytes"), opts),
      Plotly.newPlot("chart-reboots", [tr(col(vs, "unexpected_reboots"), "unexpected reboots", {line: {shape: "hv"}}),
        tr(col(vs, "uptime_s").map(function (s) { return s === null ? null : s / (hours ? 3600 : 60); }),
          hours ? "uptime h" : "uptime min", {yaxis: "y2", line: {dash: "dot"}})],
        layout("Reboots", "unexpected reboots", {yaxis2: {title: {text: hours ? "uptime h" : "uptime min"},
          overlaying: "y", side: "right", rangemode: "tozero"}}), opts),
      Plotly.newPlot("chart-queue", [tr(col(vs, "queue_depth"), "queue depth", {line: {shape: "hv"}}),
        tr(col(vs, "queue_dropped"), "dropped", {line: {shape: "hv", dash: "dot"}})],
        layout("Queue", "packets"), opts),
      Plotly.newPlot("chart-gps", [tr(col(vs, "gps_fix"), "fix (1 = yes)", {line: {shape: "hv"}}),
        tr(col(vs, "gps_sats"), "satellites", {yaxis: "y2", line: {dash: "dot"}})],
        layout("GPS", "fix", {yaxis: {title: {text: "fix"}, range: [-0.1, 1.1], dtick: 1},
          yaxis2: {title: {text: "satellites"}, overlaying: "y", side: "right", range: [0, sats + 1]}}), opts)
    ]);
  }

  function segments(j) {
    var rows = j.segments.slice().reverse();  // newest first
    document.getElementById("rn-seg-count").textContent = "(newest " + rows.length + ")";
    document.querySelector("#rn-segments tbody").innerHTML = rows.map(function (s) {
      return '<tr class="rn-seg"><td class="num">' + esc(s.seq) + "</td><td>" + esc(s.time) + '</td><td class="num">' +
        esc(s.start_m) + '</td><td class="num">' + esc(s.end_m) + '</td><td class="num">' +
        (s.iri_m_per_km === null ? "n/a" : s.iri_m_per_km.toFixed(2)) + '</td><td class="num">' + esc(s.speed_kmh) +
        '</td><td class="num">' + (s.lat === null ? "" : s.lat.toFixed(5)) + '</td><td class="num">' +
        (s.lon === null ? "" : s.lon.toFixed(5)) + "</td><td>" + esc(s.flags.join(", ")) + "</td></tr>";
    }).join("") || '<tr><td colspan="9" class="rn-muted">no segments</td></tr>';
  }

  document.body.dataset.state = "loading";
  Promise.all([getJSON("/api/devices/" + id), getJSON("/api/segments?device=" + id + "&limit=100")])
    .then(function (r) {
      status(r[0].status);
      segments(r[1]);
      return charts(r[0].vitals);
    })
    .then(function () { document.body.dataset.state = "ready"; })
    .catch(function (e) {
      document.getElementById("rn-error").textContent = e.message;
      document.body.dataset.state = "error";
    });
}());
