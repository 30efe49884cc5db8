// sleepstream live view: every bed of the run on one screen.
"use strict";

(() => {
  const beds = new Map(); // device -> {status, report_url, current, stages: Map(i -> [stage, flagged])}
  const root = document.getElementById("beds");
  let liveEvents = 0;

  function card(name) {
    let node = document.getElementById(`bed-${name}`);
    if (node) return node;
    node = document.createElement("section");
    node.className = "card bed";
    node.id = `bed-${name}`;
    node.dataset.device = name;
    const head = document.createElement("div");
    head.className = "bed-head";
    const link = document.createElement("a");
    link.href = `/d/${encodeURIComponent(name)}`;
    link.textContent = name;
    link.className = "bed-name";
    const badge = document.createElement("span");
    badge.className = "badge";
    head.append(link, badge);
    const stage = document.createElement("div");
    stage.className = "bed-stage";
    const svg = SS.el("svg", { class: "plot mini", role: "img", "aria-label": `${name} hypnogram` });
    node.append(head, stage, svg);
    root.appendChild(node);
    return node;
  }

  function draw() {
    for (const [name, b] of beds) {
      const node = card(name);
      const badge = node.querySelector(".badge");
      badge.className = `badge ${b.status}`;
      badge.textContent = { waiting: "waiting", live: "live", ended: "ended" }[b.status] || b.status;
      const stage = node.querySelector(".bed-stage");
      const cur = b.current;
      stage.textContent = "";
      if (cur) {
        const shown = cur.revised ? cur.revised.stage : cur.stage;
        const big = document.createElement("span");
        big.className = "stage";
        big.textContent = shown;
        big.style.color = SS.COLORS[shown] || "";
        const meta = document.createElement("span");
        meta.className = "stage-meta";
        const conf = document.createElement("span");
        conf.textContent = shown === "unscored" ? "not scored" : `confidence ${SS.pct(cur.confidence)}`;
        const when = document.createElement("span");
        when.textContent = SS.epochWhen(cur);
        meta.append(conf, when);
        stage.append(big, meta);
      }
      if (b.status === "ended" && b.report_url) {
        const a = document.createElement("a");
        a.href = b.report_url;
        a.className = "report-link";
        a.textContent = "Morning report";
        stage.appendChild(a);
      }
      const items = [...b.stages.entries()].sort((x, y) => x[0] - y[0])
        .map(([i, v]) => ({ i, stage: v[0], flags: v[1] ? ["flag"] : [] }));
      SS.drawHypnogram(node.querySelector("svg"), items, { height: 110, axis: true, labels: true });
    }
    document.body.dataset.liveEvents = liveEvents;
  }
  const redraw = SS.throttle(draw);

  function setBed(s) {
    beds.set(s.device, {
      status: s.status, report_url: s.report_url, current: s.current,
      stages: new Map(s.stages.map(([i, st, f]) => [i, [st, f]])),
    });
  }

  SS.connect("/api/stream", {
    snapshot(s) { beds.clear(); root.textContent = ""; s.devices.forEach(setBed); redraw(); },
    epoch(r) {
      const b = beds.get(r.device);
      if (!b) return;
      b.stages.set(r.epoch_index, [r.stage, r.quality.length > 0]);
      b.current = r;
      b.status = "live";
      liveEvents += 1;
      redraw();
    },
    revision(v) {
      const b = beds.get(v.device);
      if (!b || !b.stages.has(v.epoch_index)) return;
      b.stages.get(v.epoch_index)[0] = v.stage;
      if (b.current && b.current.epoch_index === v.epoch_index) b.current.revised = v;
      redraw();
    },
    status(s) {
      const b = beds.get(s.device);
      if (b) { b.status = s.status; b.report_url = s.report_url; redraw(); }
    },
  }, (state) => {
    document.getElementById("connection").textContent = state === "connected" ? "" : "reconnecting…";
  });

  window.addEventListener("resize", redraw);
})();
