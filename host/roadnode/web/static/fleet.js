/* roadnode fleet table: /api/fleet (problems first, as `roadnode fleet status` sorts), refreshed
   every cfg.refresh_ms; each row links to the device's page. */
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("rn-config").textContent);
  var body = document.querySelector("#rn-fleet tbody");

  function esc(v) {
    return String(v === null || v === undefined ? "" : v).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
    });
  }
  function opt(v) { return v === null || v === undefined ? "" : esc(v); }
  function ago(iso) {
    if (!iso) return "never";
    var s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    var t = s < 90 ? Math.round(s) + " s" : s < 5400 ? Math.round(s / 60) + " min" : s < 172800 ?
      Math.round(s / 3600) + " h" : Math.round(s / 86400) + " d";
    return '<span title="' + esc(iso) + '">' + t + " ago</span>";
  }
  function duration(s) {
    if (s === null || s === undefined) return "";
    return s < 3600 ? Math.round(s / 60) + " min" : (s / 3600).toFixed(1) + " h";
  }

  function row(r) {
    var id = esc(r.device_id);
    var probs = r.problems.map(function (p) { return '<span class="rn-problem">' + esc(p) + "</span>"; }).join("");
    var q = r.queue_depth === null ? "" : esc(r.queue_depth) + (r.queue_growing ? " &uarr;" : "");
    return '<tr class="rn-row' + (r.problems.length ? " has-problems" : "") + '" data-device="' + id +
      '" data-state="' + esc(r.state) + '">' +
      '<td><a href="/devices/' + id + '">' + id + "</a></td>" +
      '<td><span class="rn-badge ' + esc(r.state) + '">' + esc(r.state) + "</span></td>" +
      "<td>" + probs + "</td><td>" + ago(r.last_seen) + "</td><td>" + opt(r.fw_version) + "</td>" +
      '<td class="num">' + duration(r.uptime_s) + "</td><td>" + opt(r.reset_reason) + "</td>" +
      '<td class="num">' + opt(r.unexpected_reboots) + '</td><td class="num">' + opt(r.min_free_heap) + "</td>" +
      '<td class="num">' + q + "</td><td>" + (r.gps_fix === null ? "" : r.gps_fix ? "yes" : "no") + "</td>" +
      "<td>" + (r.imu_fault ? "FAULT" : "ok") + '</td><td class="num">' + esc(r.segments_total) + "</td>" +
      "<td>" + (r.last_segment_at ? ago(r.last_segment_at) : "") + "</td></tr>";
  }

  function refresh() {
    return fetch("/api/fleet").then(function (r) {
      return r.json().then(function (j) { if (!r.ok) throw new Error(j.error || "HTTP " + r.status); return j; });
    }).then(function (j) {
      body.innerHTML = j.devices.map(row).join("") ||
        '<tr><td colspan="14" class="rn-muted">no devices in the database yet</td></tr>';
      document.getElementById("rn-updated").textContent = j.devices.length + " devices · updated " +
        new Date().toLocaleTimeString();
      document.getElementById("rn-error").textContent = "";
      document.body.dataset.state = "ready";
      document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
    }).catch(function (e) {
      document.getElementById("rn-error").textContent = "could not refresh: " + e.message;
    });
  }

  refresh();
  setInterval(refresh, cfg.refresh_ms);
}());
