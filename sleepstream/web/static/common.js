// sleepstream live view: shared drawing and server-push helpers (no libraries).
"use strict";

const SS = (() => {
  const SVG_NS = "http://www.w3.org/2000/svg";
  // Hypnogram rows, top to bottom (clinical convention: wake on top, REM next).
  const ROWS = ["W", "REM", "N1", "N2", "N3"];
  // Model class order (stage_event probabilities): W N1 N2 N3 REM.
  const CLASSES = ["W", "N1", "N2", "N3", "REM"];
  const COLORS = {
    W: "#f4c15d", N1: "#9ad1d4", N2: "#4ea1d3", N3: "#7a6ff0", REM: "#ef6f6c",
    unscored: "#5c6370",
  };
  const EPOCH_S = 30;

  function el(tag, attrs, parent) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
  }

  function clear(svg) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
  }

  function hhmm(date) {
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  }

  // Epoch start time of index i, from one record with a parseable start.
  function clock(items) {
    const ref = items.find((r) => r.start && !isNaN(Date.parse(r.start)));
    if (!ref) return null;
    const t0 = Date.parse(ref.start) - ref.i * EPOCH_S * 1000;
    return (i) => new Date(t0 + i * EPOCH_S * 1000);
  }

  // Draw a hypnogram into an <svg>. items: [{i, stage, causal, flags, start}] sorted by i.
  // opts: {height, axis (bool), minEpochs}. Every epoch is one <rect class="ep">
  // carrying data-epoch and data-stage (data-causal when a revision changed it).
  function drawHypnogram(svg, items, opts) {
    const o = Object.assign({ height: 170, axis: true, minEpochs: 120, labels: true }, opts);
    const width = Math.max(120, svg.clientWidth || svg.parentNode.clientWidth || 300);
    clear(svg);
    svg.setAttribute("viewBox", `0 0 ${width} ${o.height}`);
    svg.setAttribute("height", o.height);
    const left = o.labels ? 40 : 4, right = 6, top = 6;
    const band = 7, bottom = o.axis ? 20 : 4;
    const plotH = o.height - top - bottom - band - 3;
    const rowH = plotH / ROWS.length;
    const first = items.length ? items[0].i : 0;
    const last = items.length ? items[items.length - 1].i + 1 : first + 1;
    const span = Math.max(o.minEpochs, last - first);
    const x = (i) => left + ((i - first) / span) * (width - left - right);
    const y = (stage) => top + ROWS.indexOf(stage) * rowH + rowH / 2;
    ROWS.forEach((s, k) => {
      el("line", { x1: left, x2: width - right, y1: top + (k + 0.5) * rowH,
        y2: top + (k + 0.5) * rowH, class: "grid" }, svg);
      if (o.labels) {
        const t = el("text", { x: left - 6, y: top + (k + 0.5) * rowH + 4, class: "lab",
          "text-anchor": "end" }, svg);
        t.textContent = s;
      }
    });
    // step line behind the blocks
    const pts = [];
    for (const r of items) {
      if (r.stage === "unscored") continue;
      pts.push(`${x(r.i).toFixed(1)},${y(r.stage).toFixed(1)}`,
        `${x(r.i + 1).toFixed(1)},${y(r.stage).toFixed(1)}`);
    }
    if (pts.length) el("polyline", { points: pts.join(" "), class: "step" }, svg);
    const blockH = Math.max(3, rowH * 0.55);
    for (const r of items) {
      const x0 = x(r.i), w = Math.max(0.8, x(r.i + 1) - x0);
      const attrs = { x: x0.toFixed(2), width: w.toFixed(2), class: "ep",
        "data-epoch": r.i, "data-stage": r.stage };
      if (r.stage === "unscored") {
        Object.assign(attrs, { y: top, height: plotH, fill: COLORS.unscored, class: "ep unscored" });
      } else {
        Object.assign(attrs, { y: (y(r.stage) - blockH / 2).toFixed(2), height: blockH.toFixed(2),
          fill: COLORS[r.stage] });
      }
      if (r.causal && r.causal !== r.stage) {
        attrs["data-causal"] = r.causal;
        attrs.class += " revised";
      }
      el("rect", attrs, svg);
      if (r.flags && r.flags.length) {
        const gap = r.flags.includes("gap");
        el("rect", { x: x0.toFixed(2), width: w.toFixed(2), y: top + plotH + 3, height: band,
          class: gap ? "flag gap" : "flag", "data-epoch": r.i,
          "data-flags": r.flags.join(",") }, svg);
      }
    }
    if (o.axis && items.length) drawClock(svg, items, x, first, span, width - right, o.height - 5);
  }

  // Clock ticks under a plot: the smallest step (5 min .. 2 h) that leaves >= 56 px per
  // label, on whole multiples of the step; epoch numbers when no start time is known.
  function drawClock(svg, items, x, first, span, xmax, y) {
    const at = clock(items);
    const pxPerEpoch = (x(first + span) - x(first)) / span;
    const steps = [10, 20, 60, 120, 240, 480]; // epochs: 5, 10, 30 min, 1, 2, 4 h
    const step = steps.find((s) => s * pxPerEpoch >= 56) || steps[steps.length - 1];
    const stepMs = step * EPOCH_S * 1000;
    let i0 = Math.ceil(first / step) * step;
    if (at) {
      const t0 = at(first).getTime();
      i0 = first + (Math.ceil(t0 / stepMs) * stepMs - t0) / (EPOCH_S * 1000);
    }
    for (let i = i0; i <= first + span; i += step) {
      if (x(i) > xmax - 16) break;
      const t = el("text", { x: x(i).toFixed(1), y, class: "tick", "text-anchor": "middle" }, svg);
      t.textContent = at ? hhmm(at(i)) : `#${Math.round(i)}`;
    }
  }

  // Stacked hypnodensity: one <path> per class, epochs as steps.
  function drawHypnodensity(svg, recs, opts) {
    const o = Object.assign({ height: 90, minEpochs: 120 }, opts);
    const width = Math.max(120, svg.clientWidth || svg.parentNode.clientWidth || 300);
    clear(svg);
    svg.setAttribute("viewBox", `0 0 ${width} ${o.height}`);
    svg.setAttribute("height", o.height);
    const left = 40, right = 6, top = 4, h = o.height - 8;
    if (!recs.length) return;
    const first = recs[0].i, span = Math.max(o.minEpochs, recs[recs.length - 1].i + 1 - first);
    const x = (i) => left + ((i - first) / span) * (width - left - right);
    const base = recs.map(() => 0);
    for (const stage of ["N3", "N2", "N1", "REM", "W"]) {
      const k = CLASSES.indexOf(stage);
      const upper = [], lower = [];
      recs.forEach((r, j) => {
        const p = r.probs ? r.probs[k] : 0;
        const y0 = top + h - base[j] * h, y1 = top + h - (base[j] + p) * h;
        lower.push(`${x(r.i).toFixed(1)},${y0.toFixed(1)}`, `${x(r.i + 1).toFixed(1)},${y0.toFixed(1)}`);
        upper.push(`${x(r.i).toFixed(1)},${y1.toFixed(1)}`, `${x(r.i + 1).toFixed(1)},${y1.toFixed(1)}`);
        base[j] += p;
      });
      el("polygon", { points: upper.concat(lower.reverse()).join(" "), fill: COLORS[stage],
        class: "density", "data-stage": stage }, svg);
    }
    const t = el("text", { x: left - 6, y: top + 10, class: "lab", "text-anchor": "end" }, svg);
    t.textContent = "1";
    const b = el("text", { x: left - 6, y: top + h, class: "lab", "text-anchor": "end" }, svg);
    b.textContent = "0";
  }

  // Server-Sent Events with reconnect; handlers: {snapshot, epoch, revision, signal, status}.
  function connect(url, handlers, onState) {
    let source = null;
    const open = () => {
      source = new EventSource(url);
      source.onopen = () => onState && onState("connected");
      source.onerror = () => onState && onState("reconnecting");
      for (const [name, fn] of Object.entries(handlers)) {
        source.addEventListener(name, (ev) => fn(JSON.parse(ev.data)));
      }
    };
    open();
    return () => source && source.close();
  }

  function pct(x) {
    return `${Math.round(100 * x)} %`;
  }

  // "epoch #12 · 23:14:30" for a record; a recording whose file states no time zone
  // (time_zone null: epoch_start has no offset, Date.parse reads it as local time, so
  // the recording's own clock is shown) says so.
  function epochWhen(rec) {
    const t = Date.parse(rec.epoch_start);
    if (isNaN(t)) return `epoch #${rec.epoch_index}`;
    const clockText = new Date(t).toLocaleTimeString([], { hourCycle: "h23" });
    const zone = rec.time_zone === null ? " (recording's clock, zone not stated)" : "";
    return `epoch #${rec.epoch_index} · ${clockText}${zone}`;
  }

  // Redraw at most once per animation frame.
  function throttle(fn) {
    let queued = false;
    return () => {
      if (queued) return;
      queued = true;
      requestAnimationFrame(() => { queued = false; fn(); });
    };
  }

  return { ROWS, CLASSES, COLORS, el, clear, hhmm, drawHypnogram, drawHypnodensity, connect,
    pct, epochWhen, throttle };
})();
