// sleepstream live view: one device (hypnogram, hypnodensity, stage, flags, signal).
"use strict";

(() => {
  const device = decodeURIComponent(location.pathname.split("/")[2] || "");
  const $ = (id) => document.getElementById(id);
  const epochs = new Map(); // epoch_index -> record (see sleepstream/web/state.py)
  let signal = null;
  let status = "waiting";
  let reportUrl = null;
  let liveEvents = 0;

  document.title = `${device} · sleepstream`;
  $("device-name").textContent = device;

  const shown = (r) => r.revised || r; // the revised verdict wins where there is one

  function items() {
    return [...epochs.values()].sort((a, b) => a.epoch_index - b.epoch_index).map((r) => ({
      i: r.epoch_index, stage: shown(r).stage, causal: r.stage, start: r.epoch_start,
      flags: r.quality, probs: shown(r).probabilities,
    }));
  }

  function drawCurrent() {
    const recs = [...epochs.values()];
    const cur = recs.reduce((a, r) => (!a || r.epoch_index > a.epoch_index ? r : a), null);
    const box = $("current");
    box.dataset.status = status;
    $("status").textContent = { waiting: "waiting for the first epoch", live: "live",
      ended: "night ended" }[status] || status;
    $("status").className = `badge ${status}`;
    const link = $("report");
    link.hidden = !(status === "ended" && reportUrl);
    if (reportUrl) link.href = reportUrl;
    if (!cur) return;
    const st = $("current-stage");
    st.textContent = cur.stage;
    st.dataset.stage = cur.stage;
    st.style.color = SS.COLORS[cur.stage] || "";
    $("current-confidence").textContent = cur.stage === "unscored"
      ? (cur.reasons || []).join(", ") : `confidence ${SS.pct(cur.confidence)}`;
    $("current-epoch").textContent = SS.epochWhen(cur);
    const flags = $("current-flags");
    SS.clear(flags);
    for (const f of cur.quality) {
      const chip = document.createElement("span");
      chip.className = f === "gap" ? "chip gap" : "chip";
      chip.textContent = f === "gap" ? `gap ${SS.pct(cur.gap_fraction)}` : f;
      flags.appendChild(chip);
    }
    const all = recs.length, flagged = recs.filter((r) => r.quality.length).length;
    const gaps = recs.filter((r) => r.quality.includes("gap")).length;
    const changed = recs.filter((r) => r.revised && r.revised.stage !== r.stage).length;
    $("flag-summary").textContent =
      `${all} epochs · ${flagged} with quality flags · ${gaps} with gaps · ` +
      `${changed} changed by a revision (drawn revised)`;
  }

  function drawSignal() {
    const svg = $("signal");
    const width = Math.max(120, svg.clientWidth || 300), height = 120;
    SS.clear(svg);
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    if (!signal || !signal.uv.length) return;
    const uv = signal.uv, n = uv.length;
    let peak = 50;
    for (const v of uv) peak = Math.max(peak, Math.abs(v));
    const scale = Math.ceil(peak / 50) * 50; // µV, half height
    const left = 40, mid = height / 2, half = height / 2 - 6;
    SS.el("line", { x1: left, x2: width, y1: mid, y2: mid, class: "grid" }, svg);
    const pts = [];
    for (let k = 0; k < n; k++) {
      pts.push(`${(left + (k / (n - 1)) * (width - left)).toFixed(1)},` +
        `${(mid - (uv[k] / scale) * half).toFixed(1)}`);
    }
    SS.el("polyline", { points: pts.join(" "), class: "trace", "data-samples": n }, svg);
    const top = SS.el("text", { x: left - 4, y: 14, class: "lab", "text-anchor": "end" }, svg);
    top.textContent = `+${scale}`;
    const bot = SS.el("text", { x: left - 4, y: height - 4, class: "lab", "text-anchor": "end" }, svg);
    bot.textContent = `−${scale}`;
    $("signal-caption").textContent =
      `epoch #${signal.epoch_index}: last 30 s, filtered, µV (${signal.fs} Hz)`;
  }

  const redraw = SS.throttle(() => {
    const it = items();
    SS.drawHypnogram($("hypnogram"), it, { height: window.innerWidth < 600 ? 140 : 180 });
    SS.drawHypnodensity($("hypnodensity"), it.map((r) => ({ i: r.i, probs: r.probs })));
    drawCurrent();
    drawSignal();
    document.body.dataset.epochs = epochs.size;
  });

  SS.connect(`/api/d/${encodeURIComponent(device)}/stream`, {
    snapshot(s) {
      epochs.clear();
      for (const r of s.epochs) epochs.set(r.epoch_index, r);
      signal = s.signal;
      status = s.status;
      reportUrl = s.report_url;
      redraw();
    },
    epoch(r) {
      epochs.set(r.epoch_index, r);
      liveEvents += 1;
      document.body.dataset.liveEvents = liveEvents;
      redraw();
    },
    revision(v) {
      const r = epochs.get(v.epoch_index);
      if (r) { r.revised = v; redraw(); }
    },
    signal(s) { signal = s; redraw(); },
    status(s) { status = s.status; reportUrl = s.report_url; redraw(); },
  }, (state) => { $("connection").textContent = state === "connected" ? "" : "reconnecting…"; });

  window.addEventListener("resize", redraw);
})();
