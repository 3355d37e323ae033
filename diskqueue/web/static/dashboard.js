// The diskqueue dashboard: polls /api/overview and draws tables and SVG charts.
// Every value from a job is set with textContent, never as markup.
"use strict";

const body = document.body;
const CSRF = body.dataset.csrf;
const READ_ONLY = body.dataset.readOnly === "1";
const SERIES = {
  backlog: [["depth", "#1a55c0"], ["scheduled", "#8a5cf6"], ["in_flight", "#0a9a6a"],
            ["dead", "#c0392b"]],
  throughput: [["rate", "#0a9a6a"]],
  latency: [["p50", "#1a55c0"], ["p99", "#c07a1a"]],
};
let samples = [];
let last = null;
let interval = 5;
let jobsCursor = null;
let deadCursor = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  }
  return node;
}

function when(t) { return t ? new Date(t * 1000).toLocaleString() : "-"; }
function num(v) { return v == null ? "-" : String(v); }
function call(job) {
  const parts = (job.args || []).map((a) => JSON.stringify(a));
  for (const [k, v] of Object.entries(job.kwargs || {})) parts.push(k + "=" + JSON.stringify(v));
  return job.task + "(" + parts.join(", ") + ")";
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({credentials: "same-origin"}, options));
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function say(text) { document.getElementById("message").textContent = text; }

// -- overview ----------------------------------------------------------------------
let kind = "tasks";

async function poll() {
  await refresh();
  setTimeout(poll, interval * 1000);
}

async function refresh() {
  try {
    const data = await api("/api/overview" + (last ? "?since=" + last : ""));
    interval = data.interval;
    kind = data.kind;
    samples = samples.concat(data.samples).filter((s) => s.t > data.now - 3600);
    if (samples.length) last = samples[samples.length - 1].t;
    drawQueues(data);
    drawWorkers(data);
    document.getElementById("status").textContent = "updated " + when(last);
  } catch (err) {
    document.getElementById("status").textContent = "not reachable: " + err.message;
  }
}

function drawQueues(data) {
  for (const id of ["dead-section", "workers-section"]) {
    document.getElementById(id).hidden = data.kind !== "tasks";
  }
  const latest = samples.length ? samples[samples.length - 1].queues : {};
  const tbody = document.querySelector("#queues tbody");
  tbody.replaceChildren();
  const select = document.getElementById("browse-queue");
  const chosen = select.value;
  select.replaceChildren();
  const charts = document.getElementById("charts");
  charts.replaceChildren();
  for (const [name, q] of Object.entries(latest)) {
    const row = el("tr", {"data-queue": name}, el("td", {}, name));
    for (const f of ["depth", "scheduled", "in_flight", "dead", "done", "failed", "rate",
                     "p50", "p99"]) {
      row.append(el("td", {class: "n", "data-field": f}, num(q[f])));
    }
    tbody.append(row);
    select.append(el("option", {value: name}, name));
    charts.append(chart(name, "backlog", SERIES.backlog));
    if (data.kind === "tasks") {
      charts.append(chart(name, "runs per second", SERIES.throughput));
      charts.append(chart(name, "latency ms (enqueue to start)", SERIES.latency));
    }
  }
  if (chosen) select.value = chosen;
}

function chart(queue, title, series) {
  const W = 300, H = 90;
  const points = samples.filter((s) => s.queues[queue]);
  const t1 = points.length ? points[points.length - 1].t : 0, t0 = t1 - 3600;
  let top = 1;
  for (const s of points) for (const [f] of series) top = Math.max(top, s.queues[queue][f] || 0);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", W); svg.setAttribute("height", H);
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const frame = document.createElementNS(ns, "rect");
  Object.entries({x: 0, y: 0, width: W, height: H, fill: "#fafbfd"}).forEach(([k, v]) => frame.setAttribute(k, v));
  svg.append(frame);
  for (const [field, color] of series) {
    const xy = points.filter((s) => s.queues[queue][field] != null).map((s) =>
      `${((s.t - t0) / 3600 * W).toFixed(1)},${(H - 4 - s.queues[queue][field] / top * (H - 8)).toFixed(1)}`);
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", xy.join(" "));
    line.setAttribute("fill", "none"); line.setAttribute("stroke", color);
    line.setAttribute("stroke-width", "1.5");
    svg.append(line);
  }
  for (const [x, anchor, label] of [[2, "start", "-60 min"], [W - 2, "end", "now"]]) {
    const text = document.createElementNS(ns, "text");
    Object.entries({x: x, y: H - 3, "text-anchor": anchor, "font-size": 9, fill: "#889"})
      .forEach(([k, v]) => text.setAttribute(k, v));
    text.textContent = label;
    svg.append(text);
  }
  const legend = el("div", {class: "legend"});
  for (const [field, color] of series) {
    const now = points.length ? points[points.length - 1].queues[queue][field] : null;
    const swatch = el("span", {}, "■ " + field.replace("_", "-") + " " + num(now));
    swatch.style.color = color;
    legend.append(swatch);
  }
  return el("div", {class: "chart", "data-chart": queue + ":" + title},
            el("h3", {}, queue + " · " + title + " · last hour, max " + top), svg, legend);
}

function drawWorkers(data) {
  const tbody = document.querySelector("#workers tbody");
  tbody.replaceChildren();
  for (const w of data.workers) {
    const running = (w.running || []).map((r) => r.task + " " + r.id).join(", ") || "idle";
    tbody.append(el("tr", {"data-worker": w.id}, el("td", {}, w.id), el("td", {}, w.host),
      el("td", {class: "n"}, w.pid), el("td", {}, w.pool),
      el("td", {class: "n", "data-field": "concurrency"}, w.concurrency),
      el("td", {}, (w.queues || []).join(", ")), el("td", {"data-field": "running"}, running),
      el("td", {}, when(w.started))));
  }
  if (!data.workers.length) tbody.append(el("tr", {}, el("td", {colspan: 8, class: "muted"}, "no worker alive")));
  const ptbody = document.querySelector("#periodic tbody");
  ptbody.replaceChildren();
  for (const p of data.periodic) {
    ptbody.append(el("tr", {"data-task": p.task}, el("td", {}, p.task), el("td", {}, p.queue),
      el("td", {}, p.schedule), el("td", {"data-field": "next"}, when(p.next))));
  }
  if (!data.periodic.length) ptbody.append(el("tr", {}, el("td", {colspan: 4, class: "muted"}, "none announced by a living worker")));
}

// -- jobs --------------------------------------------------------------------------
function jobLink(id) {
  return el("a", {class: "job-link", "data-job": id, onclick: () => showJob(id)}, id);
}

async function browse(more) {
  const queue = document.getElementById("browse-queue").value;
  const state = document.getElementById("browse-state").value;
  if (!more) { jobsCursor = null; document.querySelector("#jobs tbody").replaceChildren(); }
  const q = new URLSearchParams({queue: queue, state: state});
  if (jobsCursor) q.set("after", jobsCursor);
  if (kind === "plain") return browseItems(queue);
  try {
    const data = await api("/api/jobs?" + q);
    const tbody = document.querySelector("#jobs tbody");
    for (const j of data.jobs) {
      tbody.append(el("tr", {"data-job": j.id}, el("td", {}, jobLink(j.id)), el("td", {}, j.task),
        el("td", {}, j.queue), el("td", {}, j.state), el("td", {class: "n"}, j.attempts),
        el("td", {class: "args"}, call(j)), el("td", {}, when(j.enqueued)), el("td", {}, when(j.eta))));
    }
    jobsCursor = data.next;
    document.getElementById("jobs-next").hidden = !data.next;
  } catch (err) { say(err.message); }
}

async function browseItems(queue) {
  try {
    const data = await api("/api/items?" + new URLSearchParams({queue: queue}));
    const tbody = document.querySelector("#jobs tbody");
    for (const item of data.items) {
      tbody.append(el("tr", {}, el("td", {}, "-"), el("td", {}, "-"), el("td", {}, queue),
        el("td", {}, "waiting"), el("td", {}, "-"), el("td", {class: "args"}, JSON.stringify(item))));
    }
  } catch (err) { say(err.message); }
}

async function showJob(id) {
  try {
    const job = await api("/api/job/" + encodeURIComponent(id));
    document.getElementById("job").hidden = false;
    document.getElementById("job-id").textContent = job.id;
    const dl = document.getElementById("job-fields");
    dl.replaceChildren();
    const fields = [["task", job.task], ["queue", job.queue], ["priority", job.priority],
      ["state", job.state], ["attempts", job.attempts], ["failures", job.failures],
      ["arguments", JSON.stringify(job.args)], ["keyword arguments", JSON.stringify(job.kwargs)],
      ["enqueued", when(job.enqueued)], ["started", when(job.started)],
      ["finished", when(job.finished)], ["due", when(job.eta)],
      ["progress", job.progress == null ? "-" : JSON.stringify(job.progress)],
      ["result", "result" in job ? JSON.stringify(job.result) : "-"]];
    for (const [k, v] of fields) dl.append(el("dt", {}, k), el("dd", {"data-field": k}, v));
    const err = job.error;
    document.getElementById("job-traceback").textContent =
      err ? err.type + ": " + err.message + "\n\n" + (err.traceback || "") : "none";
    document.getElementById("job").scrollIntoView();
  } catch (err) { say(err.message); }
}

// -- dead letters ------------------------------------------------------------------
function deadFilter() {
  return {task: document.getElementById("dead-task").value,
          error: document.getElementById("dead-error").value};
}

async function loadDead(more) {
  if (!more) { deadCursor = null; document.querySelector("#dead tbody").replaceChildren(); }
  const q = new URLSearchParams(deadFilter());
  if (deadCursor) q.set("after", deadCursor);
  try {
    const data = await api("/api/dead?" + q);
    const tbody = document.querySelector("#dead tbody");
    for (const j of data.jobs) {
      const actions = el("td", {class: "action"});
      if (!READ_ONLY) {
        actions.append(el("button", {class: "retry", onclick: () => act("retry", {id: j.id})}, "Retry"),
                       el("button", {class: "purge danger", onclick: () => act("purge", {id: j.id})}, "Purge"));
      }
      tbody.append(el("tr", {"data-job": j.id}, el("td", {}, jobLink(j.id)), el("td", {}, j.task),
        el("td", {}, j.queue), el("td", {class: "args"}, call(j)), el("td", {class: "error"}, j.error),
        el("td", {}, when(j.finished)), actions));
    }
    deadCursor = data.next;
    document.getElementById("dead-next").hidden = !data.next;
  } catch (err) { say(err.message); }
}

async function act(action, what) {
  if (action === "purge" && !window.confirm("Delete " + (what.id || "every matching dead job") + " for good?")) return;
  try {
    const data = await api("/api/dead/" + action, {method: "POST",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": CSRF},
      body: JSON.stringify(what)});
    say((action === "retry" ? "put back " : "purged ") + data[action] + " dead job(s)");
    await Promise.all([loadDead(false), refresh()]);
  } catch (err) { say(err.message); }
}

function on(id, event, fn) {
  const node = document.getElementById(id);
  if (node) node.addEventListener(event, fn);
}

document.addEventListener("DOMContentLoaded", () => {
  on("lookup", "submit", (e) => { e.preventDefault(); showJob(document.getElementById("lookup-id").value.trim()); });
  on("browse", "submit", (e) => { e.preventDefault(); browse(false); });
  on("jobs-next", "click", () => browse(true));
  on("dead-filter", "submit", (e) => { e.preventDefault(); loadDead(false); });
  on("dead-next", "click", () => loadDead(true));
  on("dead-retry-all", "click", () => act("retry", deadFilter()));
  on("dead-purge-all", "click", () => act("purge", deadFilter()));
  poll().then(() => { if (kind === "tasks") loadDead(false); });
});
