// wulf's web interface: reads JSON from the server's API, draws tables and SVG, acts through the API.
// Everything shown goes in as text nodes (textContent), never as HTML: a job's name is text, whatever it says.
"use strict";

const main = document.getElementById("main");
let me = null;          // who is signed in: GET /api/v1/web/session
let refresh = null;     // the current page's "read again" (called on every change the server reports)
let busy = false, again = false, lastRead = 0;

// ------------------------------------------------------------------ building the page

// el("td", {class: "num"}, "text", child, ...): an element; strings become text nodes
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined) continue;
    e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return e;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...kids) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const kid of kids.flat(Infinity)) if (kid) e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  return e;
}

function table(heads, rows) {
  return el("table", {}, el("tr", {}, heads.map((h) => el("th", {class: h.num ? "num" : null}, h.label || h))), rows);
}

function num(x, digits = 1) { return x === null || x === undefined ? "" : Number(x).toFixed(digits); }
function mb(x) { return x === null || x === undefined ? "" : x >= 10240 ? (x / 1024).toFixed(1) + " GB" : Math.round(x) + " MB"; }
function when(t) { return t ? new Date(t * 1000).toLocaleString([], {dateStyle: "short", timeStyle: "medium"}) : ""; }
function link(href, text) { return el("a", {href}, text); }
function jobLink(id) { return link("/jobs/" + encodeURIComponent(id), String(id)); }
function nodeLink(name) { return name ? link("/nodes/" + encodeURIComponent(name), name) : ""; }
function show(...kids) { main.replaceChildren(...kids); }

function showError(message) {
  const p = document.getElementById("error");
  p.textContent = message || "";
  p.hidden = !message;
}

// ------------------------------------------------------------------ talking to the server

async function api(path) {
  const r = await fetch(path, {headers: {accept: "application/json"}, credentials: "same-origin"});
  return answer(r);
}

// a change, as the signed-in user: the session's CSRF token goes with it (the server refuses it without)
async function act(path, body) {
  const r = await fetch(path, {method: "POST", credentials: "same-origin",
    headers: {"content-type": "application/json", "x-wulf-csrf": me.csrf}, body: JSON.stringify(body)});
  return answer(r);
}

async function answer(r) {
  if (r.status === 401) { location.href = "/login"; throw new Error("signed out"); }
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error ? body.error.message : "the server answered " + r.status);
  return body;
}

// read the page again: one read at a time, and one more if a change came meanwhile
async function reload() {
  if (!refresh || editing()) return;  // (not under the hands of someone typing: the next change reads again)
  if (busy) { again = true; return; }
  busy = true;
  try { await refresh(); showError(""); } catch (e) { showError(e.message); }
  busy = false;
  lastRead = Date.now();
  if (again) { again = false; reload(); }
}

function editing() {
  const a = document.activeElement;
  return a && main.contains(a) && ["INPUT", "TEXTAREA"].includes(a.tagName);
}

function live() {
  const badge = document.getElementById("live");
  const events = new EventSource("/api/v1/events");
  events.addEventListener("change", reload);
  events.onopen = () => badge.classList.remove("off");
  events.onerror = () => badge.classList.add("off");
  // and should a change not be heard of (the stream broken, a proxy that holds it back), read again anyway
  setInterval(() => { if (Date.now() - lastRead > 5000) reload(); }, 5000);
}

// ------------------------------------------------------------------ plots (hand-written SVG)

// a bar: wulf's jobs' use, outside use, allocated to wulf but unused, free; of total
function bar(total, wulf, outside, alloc, label) {
  const w = 220, h = 16, x = (v) => total > 0 ? Math.max(0, Math.min(w, (v / total) * w)) : 0;
  const used = x(wulf), out = x(outside), kept = Math.max(0, x(alloc) - used);
  const title = `${label}: wulf jobs ${num(wulf, 2)}, outside ${num(outside, 2)}, allocated ${num(alloc, 2)} of ${num(total, 2)}`;
  return svg("svg", {width: w + 2, height: h, role: "img", "aria-label": title},
    svg("title", {}, title),
    svg("rect", {class: "free", x: 0, y: 0, width: w, height: h}),
    svg("rect", {class: "wulf", x: 0, y: 0, width: used, height: h}),
    svg("rect", {class: "alloc", x: used, y: 0, width: Math.min(kept, w - used), height: h}),
    svg("rect", {class: "outside", x: Math.min(w, used + kept), y: 0, width: Math.min(out, Math.max(0, w - used - kept)), height: h}));
}

function legend() {
  return el("p", {class: "legend"}, [["wulf", "wulf's jobs"], ["alloc", "allocated, unused"],
    ["outside", "outside load (not started by wulf)"], ["free", "free"]].map(([c, t]) => el("span", {}, el("i", {class: c}), t)));
}

function cpuBar(n) { return bar(n.cpus, n.cpu_wulf, n.cpu_outside, n.cpu_alloc, "cpu"); }
function memBar(n) { return bar(n.mem_total_mb, n.mem_wulf_mb, n.mem_outside_mb, n.mem_alloc_mb, "memory (MB)"); }

// load over the last hour or day (GET /api/v1/web/history): wulf's jobs and outside load, two lines;
// points are [time, cpu_wulf, cpu_outside, mem_wulf_mb, mem_outside_mb, cpus, mem_total_mb]
let span = "hour";
const histories = {};  // node ("" for the cluster) -> {span, at, points}

async function loadHistory(node) {
  const had = histories[node];
  if (had && had.span === span && Date.now() - had.at < 15000) return had.points;
  const h = await api(`/api/v1/web/history?span=${span}&node=${encodeURIComponent(node)}`);
  histories[node] = {span, at: Date.now(), points: h.points};
  return h.points;
}

function plot(points, wulf, outside, cap, label, unit) {
  const w = 520, h = 140, pad = 44, n = points.length;
  const top = Math.max(1, ...points.map((p) => Math.max(p[cap], p[wulf] + p[outside])));
  const t0 = n ? points[0][0] : 0, t1 = n ? points[n - 1][0] : 1;
  const X = (t) => pad + ((t - t0) / (t1 - t0 || 1)) * (w - pad - 6), Y = (v) => h - 18 - (v / top) * (h - 28);
  const line = (f) => points.map((p, i) => (i ? "L" : "M") + X(p[0]).toFixed(1) + "," + Y(f(p)).toFixed(1)).join(" ");
  const time = (t) => new Date(t * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
  return svg("svg", {width: w, height: h, role: "img", "aria-label": label, class: "plot"},
    svg("title", {}, label),
    svg("line", {class: "axis", x1: pad, y1: h - 18, x2: w - 4, y2: h - 18}),
    svg("line", {class: "axis", x1: pad, y1: 8, x2: pad, y2: h - 18}),
    svg("text", {x: 2, y: 14}, num(top, top < 10 ? 1 : 0) + unit), svg("text", {x: 2, y: h - 18}, "0"),
    n ? svg("text", {x: pad, y: h - 3}, time(t0)) : svg("text", {x: pad + 8, y: h / 2}, "no points yet"),
    n ? svg("text", {x: w - 6, y: h - 3, "text-anchor": "end"}, time(t1)) : null,
    n > 1 ? svg("path", {class: "line-cap", d: line((p) => p[cap])}) : null,
    n > 1 ? svg("path", {class: "line-wulf", d: line((p) => p[wulf])}) : null,
    n > 1 && points.some((p) => p[outside] > 0) ? svg("path", {class: "line-outside", d: line((p) => p[wulf] + p[outside])}) : null);
}

async function plots(node) {
  const points = await loadHistory(node);
  const pick = el("select", {id: "span", onchange: (ev) => { span = ev.target.value; reload(); }},
    ["hour", "day"].map((s) => el("option", {value: s, selected: s === span}, "last " + s)));
  return el("div", {class: "plots"},
    el("h2", {}, "Load over the ", pick, el("span", {class: "muted"}, " (blue: wulf's jobs; orange: with outside load on top; grey: capacity)")),
    plot(points, 1, 2, 5, "cpus in use", " cpu"), plot(points.map((p) => p.map((v, i) => i > 0 ? v / 1024 : v)), 3, 4, 6, "memory in use", " GB"));
}

// ------------------------------------------------------------------ pages

async function overview() {
  const o = await api("/api/v1/web/overview");
  const cpus = o.nodes.filter((n) => n.state === "up").reduce((s, n) => s + n.cpus, 0);
  const free = o.nodes.filter((n) => n.state === "up").reduce((s, n) => s + Math.max(0, n.cpu_free), 0);
  const held = o.users.reduce((s, u) => s + u.cpus, 0);
  show(el("h1", {}, "Cluster"),
    el("div", {class: "summary"},
      el("div", {}, el("b", {}, `${o.up} / ${o.nodes.length}`), "nodes up"),
      el("div", {}, el("b", {}, num(free, 1) + " / " + num(cpus, 0)), "cpus free"),
      el("div", {}, el("b", {id: "running"}, o.running), "jobs running"),
      el("div", {}, el("b", {id: "waiting"}, o.waiting), "jobs waiting"),
      el("div", {}, el("b", {}, o.outside), "outside process clusters")),
    await plots(""),
    el("h2", {}, "Load now"), legend(),
    table(["node", "state", "cpu", "memory", {label: "load", num: true}, {label: "jobs", num: true}],
      o.nodes.map((n) => el("tr", {}, el("td", {}, nodeLink(n.name)), el("td", {class: n.state}, nodeState(n)),
        el("td", {}, cpuBar(n)), el("td", {}, memBar(n)), el("td", {class: "num"}, num(n.load, 2)),
        el("td", {class: "num"}, n.jobs)))),
    el("h2", {}, "Users"),
    table(["user", {label: "share", num: true}, {label: "running", num: true}, {label: "cpus", num: true},
      {label: "of wulf's cpus", num: true}, {label: "queued", num: true}, {label: "held", num: true},
      {label: "outside clusters", num: true}, {label: "outside cpu", num: true}],
      o.users.map((u) => el("tr", {}, el("td", {}, link("/jobs?user=" + encodeURIComponent(u.user), u.user)),
        el("td", {class: "num"}, num(u.share, 1)), el("td", {class: "num"}, u.running), el("td", {class: "num"}, num(u.cpus, 1)),
        el("td", {class: "num"}, held > 0 ? Math.round((100 * u.cpus) / held) + "%" : ""),
        el("td", {class: "num"}, u.queued), el("td", {class: "num"}, u.held),
        el("td", {class: "num"}, u.outside), el("td", {class: "num"}, num(u.outside_cpu, 2))))),
    el("h2", {}, "Queues"),
    table(["queue", {label: "priority", num: true}, "runs", {label: "queued", num: true}, {label: "running", num: true}, "waiting because", ""],
      o.queues.map((q) => el("tr", {"data-queue": `${q.user}:${q.name}`}, el("td", {}, `${q.user}:${q.name}`), el("td", {class: "num"}, q.priority),
        el("td", {}, q.stopped ? "stopped" : q.window), el("td", {class: "num"}, q.queued),
        el("td", {class: "num"}, q.running), el("td", {}, q.reason),
        el("td", {}, mayAct(q.user) ? el("button", {class: "queue", onclick: () => doAct("/api/v1/queues",
          {queue: `${q.user}:${q.name}`, stopped: !q.stopped})}, q.stopped ? "Start" : "Stop") : "")))));
}

// a workstation whose owner is back takes no new batch jobs (as jstat --nodes says it)
function nodeState(n) {
  return n.owner_back ? `${n.state} (owner)` : n.state;
}

async function nodes() {
  const o = await api("/api/v1/web/overview");
  show(el("h1", {}, "Nodes"), legend(),
    table(["node", "state", {label: "cpus", num: true}, {label: "load", num: true}, "cpu", "memory",
      {label: "free MB", num: true}, {label: "jobs", num: true}, "features"],
    o.nodes.map((n) => el("tr", {}, el("td", {}, nodeLink(n.name)), el("td", {class: n.state}, nodeState(n)),
      el("td", {class: "num"}, num(n.cpus, 0)), el("td", {class: "num"}, num(n.load, 2)), el("td", {}, cpuBar(n)),
      el("td", {}, memBar(n)), el("td", {class: "num"}, Math.round(n.mem_free_mb)), el("td", {class: "num"}, n.jobs),
      el("td", {}, n.features.join(" "))))));
}

async function nodePage(name) {
  const d = await api("/api/v1/web/nodes/" + encodeURIComponent(name));
  const n = d.node;
  const fields = [["state", nodeState(n)], ["host", n.hostname], ["cpus", n.cpus], ["memory", mb(n.mem_total_mb)],
    ["load (1, 5, 15 min)", [n.load, n.load5, n.load15].map((x) => num(x, 2)).join(", ")],
    ["cpu: wulf's jobs / outside / allocated", `${num(n.cpu_wulf, 2)} / ${num(n.cpu_outside, 2)} / ${num(n.cpu_alloc, 2)}`],
    ["memory: wulf's jobs / outside / allocated", `${mb(n.mem_wulf_mb)} / ${mb(n.mem_outside_mb)} / ${mb(n.mem_alloc_mb)}`],
    ["free for wulf", `${num(n.cpu_free, 2)} cpus, ${mb(n.mem_free_mb)}`], ["available memory", mb(n.mem_available_mb)],
    ["swap free", mb(n.swap_free_mb)], ["scratch free", mb(n.scratch_free_mb)], ["processes", n.nprocs],
    ["system", `${n.os} ${n.kernel} ${n.arch}`], ["features", n.features.join(" ")], ["last report", when(n.last_seen)]];
  const drain = me.admin && !me.read_only && n.state !== "down"
    ? el("button", {id: "drain", onclick: () => doAct(`/api/v1/admin/nodes/${encodeURIComponent(n.name)}/${n.drained ? "resume" : "drain"}`, {})},
      n.drained ? "Resume (take jobs again)" : "Drain (no new jobs)") : "";
  show(el("h1", {}, "Node ", n.name), drain, legend(),
    el("p", {}, "cpu ", cpuBar(n), "  memory ", memBar(n)),
    await plots(n.name),
    el("dl", {class: "fields"}, fields.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
    el("h2", {}, "Running here (wulf's jobs and outside process clusters)"),
    table(["id", "user", "origin", {label: "cpu", num: true}, {label: "cpu used", num: true}, {label: "MB used", num: true}, "command"],
      d.jobs.map((j) => el("tr", {}, el("td", {}, jobLink(j.id)), el("td", {}, j.user), el("td", {}, j.origin),
        el("td", {class: "num"}, num(j.cpu, 2)), el("td", {class: "num"}, num(j.cpu_used, 2)),
        el("td", {class: "num"}, Math.round(j.mem_used_mb)), el("td", {class: "cmd"}, j.name || j.command)))));
}

const JOB_FILTERS = ["user", "state", "queue", "node", "name", "origin"];
const ORIGINS = [["wulf", "wulf's jobs"], ["external", "outside work"], ["all", "both"]];
async function jobs() {
  const q = new URLSearchParams(location.search);
  const params = new URLSearchParams();
  for (const k of [...JOB_FILTERS, "sort", "desc", "offset"]) if (q.get(k)) params.set(k, q.get(k));
  if (!q.get("origin")) params.set("origin", "wulf");  // outside work only when asked for
  params.set("limit", "50");
  const page = await api("/api/v1/web/jobs?" + params);
  const go = (changes) => {
    for (const [k, v] of Object.entries(changes)) if (v === "" || v === null) q.delete(k); else q.set(k, v);
    history_replace(q); reload();
  };
  const choice = (k, options) => el("select", {name: k},
    options.map(([v, label]) => el("option", {value: v, selected: (q.get(k) || options[0][0]) === v}, label)));
  const states = ["", "active", "waiting", "running", "queued", "held", "ended", "done", "failed", "cancelled"];
  const input = (k) => el("label", {}, el("span", {}, k),
    k === "state" ? choice(k, states.map((s) => [s, s || "any"])) : k === "origin" ? choice(k, ORIGINS)
      : el("input", {name: k, value: q.get(k) || "", size: 12}));
  const filters = el("form", {class: "filters", onsubmit: (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    go(Object.fromEntries([...JOB_FILTERS.map((k) => [k, f.get(k)]), ["offset", ""]]));
  }}, JOB_FILTERS.map(input), el("button", {}, "Filter"));
  const sortBy = (key) => () => go({sort: key, desc: q.get("sort") === key && q.get("desc") !== "1" ? "1" : "", offset: ""});
  const head = (label, key, isNum) => el("th", {class: (key ? "sort " : "") + (isNum ? "num" : ""), onclick: key ? sortBy(key) : null},
    label, q.get("sort") === key ? (q.get("desc") === "1" ? " ▼" : " ▲") : "");
  const offset = page.offset, shown = page.jobs.length;
  show(el("h1", {}, "Jobs"), filters,
    el("table", {id: "jobs"}, el("tr", {}, head("id", "id"), head("name", "name"), head("user", "user"), head("state", "state"),
      head("queue", "queue"), head("node", "node"), head("cpu", "cpu", true), head("MB", "mem", true), head("submitted", "submitted"),
      el("th", {}, "why it waits"), el("th", {}, "")),
    page.jobs.map((j) => el("tr", {"data-id": j.id}, el("td", {}, jobLink(j.id)), el("td", {class: "cmd"}, j.name || j.command),
      el("td", {}, j.user), el("td", {class: j.state}, j.state), el("td", {}, j.queue), el("td", {}, nodeLink(j.node)),
      el("td", {class: "num"}, num(j.cpu, 2)), el("td", {class: "num"}, Math.round(j.mem_mb)), el("td", {}, when(j.submitted)),
      el("td", {}, j.reason || ""), el("td", {}, mayCancel(j) ? el("button", {class: "danger cancel", onclick: () => cancel(j.id)}, "Cancel") : "")))),
    el("div", {class: "pager"},
      el("button", {disabled: offset === 0, onclick: () => go({offset: Math.max(0, offset - 50) || ""})}, "← newer"),
      el("span", {id: "count"}, page.total ? `${offset + 1}–${offset + shown} of ${page.total}` : "no jobs"),
      el("button", {disabled: offset + shown >= page.total, onclick: () => go({offset: offset + 50})}, "older →")));
}

function history_replace(q) { window.history.replaceState(null, "", location.pathname + (q.toString() ? "?" + q : "")); }

function mayAct(user) { return !me.read_only && (user === me.user || me.admin); }

function mayCancel(j) {
  return mayAct(j.user) && ["queued", "held", "running"].includes(j.state) && j.origin !== "external";
}

async function cancel(id) {
  try { await act("/api/v1/jobs/cancel", {ids: [id]}); reload(); } catch (e) { showError(e.message); }
}

const output = {id: null, next: -65536, done: false, decoder: null, timer: null};
async function jobPage(id) {
  const j = await api("/api/v1/web/jobs/" + encodeURIComponent(id));
  const skip = new Set(["may", "array", "waiting_reason", "command"]);
  const fields = Object.entries(j).filter(([k, v]) => !skip.has(k) && v !== null && v !== "").map(([k, v]) =>
    [el("dt", {}, k), el("dd", {}, ["submitted", "started", "ended"].includes(k) ? when(v) : v === null ? "" : typeof v === "object" ? JSON.stringify(v) : String(v))]);
  const buttons = [];
  if (j.may.cancel) buttons.push(el("button", {class: "danger", id: "cancel", onclick: () => doAct("/api/v1/jobs/cancel", {ids: [j.id]})}, "Cancel"));
  if (j.may.hold) buttons.push(el("button", {id: "hold", onclick: () => doAct("/api/v1/jobs/hold", {ids: [j.id]})}, "Hold"));
  if (j.may.release) buttons.push(el("button", {id: "release", onclick: () => doAct("/api/v1/jobs/release", {ids: [j.id]})}, "Release"));
  if (mayAct(j.user) && ["done", "failed", "cancelled"].includes(j.state) && j.origin === "batch") {
    buttons.push(link("/submit?from=" + encodeURIComponent(j.id), "Submit again"));
  }
  if (j.may.renice) {
    const nice = el("input", {type: "number", min: -20, max: 19, value: j.nice, size: 4, id: "nice"});
    buttons.push(nice, el("button", {onclick: () => doAct("/api/v1/jobs/nice", {ids: [j.id], nice: Number(nice.value)})}, "Renice"));
  }
  const change = j.may.modify ? modifyForm(j) : "";
  if (output.id !== j.id) {
    Object.assign(output, {id: j.id, next: -65536, done: false, decoder: new TextDecoder(), pre: el("pre", {class: "output", id: "output"})});
  }
  const pre = output.pre, atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4, was = pre.scrollTop;
  show(el("h1", {}, `Job ${j.id}`, j.name ? ": " : "", el("span", {id: "job-name"}, j.name)),
    el("p", {}, "state ", el("b", {class: j.state, id: "state"}, j.state), j.node ? [" on ", nodeLink(j.node)] : "",
      j.exit_code !== null ? ` (exit ${j.exit_code})` : ""),
    j.waiting_reason ? el("p", {class: "why", id: "why"}, "Waits: ", j.waiting_reason) : "",
    buttons.length ? el("div", {class: "actions"}, buttons) : "",
    change,
    el("h2", {}, "Command"), el("pre", {class: "cmd", id: "command"}, j.command),
    j.started ? await jobPlots(j) : "",
    el("h2", {}, "Output"), j.may.output ? output.pre : el("p", {class: "muted"}, "Only its owner (and administrators) may read its output."),
    el("h2", {}, "Everything wulf knows of it"), el("dl", {class: "fields"}, fields));
  pre.scrollTop = atEnd ? pre.scrollHeight : was;  // (put back in the page, it lost where it was scrolled to)
  if (j.may.output) follow(j);
}

// a job's cpu and memory in use over the last hour of its run (a point every 15 s), against what it holds
async function jobPlots(j) {
  const h = await api(`/api/v1/web/history?job=${j.id}`);
  const points = h.points.map(([t, cpu, mem]) => [t, cpu, 0, mem / 1024, 0, j.cpu, j.mem_mb / 1024]);
  return el("div", {class: "plots"}, el("h2", {}, "In use over the last hour of its run ",
    el("span", {class: "muted"}, "(grey: what it holds)")),
    plot(points, 1, 2, 5, "cpus in use", " cpu"), plot(points, 3, 4, 6, "memory in use", " GB"));
}

// jmod from the page: a waiting job's request, name, queue, dependencies and time limit; a running job's
// time limit (and an array's throttle). Only the fields changed are sent; the server checks them all.
function modifyForm(j) {
  const waiting = ["queued", "held"].includes(j.state);
  const now = {name: j.name, cpu: j.cpu_req, mem_mb: j.mem_req_mb, queue: j.queue, depend: j.depend || "",
    time_limit: j.time_limit ? j.time_limit + "s" : "", throttle: j.array ? j.array.throttle || "" : ""};
  const field = (label, name, attrs = {}) => [el("label", {for: "mod-" + name}, label),
    el("input", {id: "mod-" + name, name, value: now[name] === null || now[name] === undefined ? "" : now[name], ...attrs})];
  const kids = waiting ? [...field("name", "name"), ...field("cpus", "cpu", {type: "number", step: "0.1", min: "0.1"}),
    ...field("memory (MB)", "mem_mb", {type: "number", min: "1"}), ...field("queue", "queue"),
    ...field("after (dependencies)", "depend", {placeholder: "e.g. afterok:12:13; empty: none"})] : [];
  kids.push(...field("time limit", "time_limit", {placeholder: "e.g. 90s, 30m, 2h, 1:30:00"}));
  if (j.array) kids.push(...field("array: at most running", "throttle", {type: "number", min: "0", placeholder: "no limit"}));
  return el("details", {class: "modify", open: true}, el("summary", {}, "Change"),
    el("form", {class: "submit", id: "modify-form", onsubmit: (ev) => modifyJob(ev, j, now)}, ...kids,
      el("span"), el("button", {id: "modify"}, "Change")));
}

async function modifyJob(ev, j, now) {
  ev.preventDefault();
  const f = new FormData(ev.target), body = {ids: [j.id]};
  try {
    for (const [name, value] of f.entries()) {
      if (String(value) === String(now[name])) continue;
      if (name === "time_limit") {
        const limit = seconds(value);
        if (limit !== null) body.time_limit = limit;  // (a limit is changed, not taken away)
      } else if (["cpu", "mem_mb", "throttle"].includes(name)) body[name] = Number(value || 0);
      else body[name] = value;
    }
    if (Object.keys(body).length === 1) { showError("nothing to change: change a field first"); return; }
    await act("/api/v1/jobs/modify", body);
    document.activeElement.blur();  // (the page is read again only when no field is being typed in)
    showError("");
    reload();
  } catch (e) { showError(e.message); }
}

async function doAct(path, body) {
  try { await act(path, body); reload(); } catch (e) { showError(e.message); }
}

// the job's output, followed while it runs (read through its node's agent, as jtail does)
async function follow(job) {
  if (output.done || output.timer || job.state === "queued" || job.state === "held") return;
  output.timer = true;
  try {
    for (;;) {
      const o = await api(`/api/v1/jobs/${job.id}/output?offset=${output.next}`);
      const bytes = Uint8Array.from(atob(o.data), (c) => c.charCodeAt(0));
      if (bytes.length) {
        const pre = output.pre, atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        pre.append(document.createTextNode(output.decoder.decode(bytes, {stream: true})));
        if (atEnd) pre.scrollTop = pre.scrollHeight;  // follow the end, as tail -f does, unless scrolled up
      }
      output.next = o.next;
      if (o.ended) { output.done = true; break; }
      if (!bytes.length) await new Promise((r) => setTimeout(r, 1000));
    }
  } catch (e) {
    output.pre.append(document.createTextNode(`\n[${e.message}]`));
    output.done = true;
  } finally { output.timer = null; }
}

async function submitPage() {
  if (me.read_only) { show(el("p", {}, "This session is read-only: it cannot submit jobs.")); return; }
  // "Submit again" from an ended job's page: its settings filled in (not its environment: the page has none)
  const from = new URLSearchParams(location.search).get("from");
  const j = from ? await api("/api/v1/web/jobs/" + encodeURIComponent(from)) : {};
  const field = (label, name, attrs = {}) => [el("label", {for: name}, label), el("input", {id: name, name, ...attrs})];
  const form = el("form", {class: "submit", id: "submit-form", onsubmit: submitJob},
    el("label", {for: "command"}, "command"), el("textarea", {id: "command", name: "command", required: true}, j.command || ""),
    el("span"), el("label", {}, el("input", {type: "checkbox", id: "script", name: "script"}), " a script (run by its #! line)"),
    field("directory", "cwd", {value: j.cwd || me.home, required: true}),
    field("name", "name", {value: j.name || ""}), field("queue", "queue", {value: j.queue || "default"}),
    field("cpus", "cpu", {type: "number", step: "0.1", min: "0.1", placeholder: "default", value: j.cpu_req || ""}),
    field("memory (MB)", "mem_mb", {type: "number", min: "1", placeholder: "default", value: j.mem_req_mb || ""}),
    field("time limit", "time_limit", {placeholder: "e.g. 90s, 30m, 2h, 1:30:00", value: j.time_limit ? j.time_limit + "s" : ""}),
    field("array", "array", {placeholder: "e.g. 1-100%5"}),
    field("after (dependencies)", "depend", {placeholder: "e.g. afterok:12:13"}),
    el("span"), el("button", {id: "submit"}, "Submit"));
  show(el("h1", {}, from ? `Submit job ${from} again` : "Submit a job"), form);
}

function seconds(text) {
  const t = text.trim();
  if (!t) return null;
  if (t.includes(":")) return t.split(":").reduce((s, p) => s * 60 + Number(p), 0);
  const m = /^(\d+(?:\.\d+)?)\s*([smhd]?)$/.exec(t);
  if (!m) throw new Error(`time limit: ${t} is not a duration (90s, 30m, 2h, 1:30:00)`);
  return Number(m[1]) * {"": 1, s: 1, m: 60, h: 3600, d: 86400}[m[2]];
}

async function submitJob(ev) {
  ev.preventDefault();
  const f = new FormData(ev.target);
  try {
    const spec = {cwd: f.get("cwd"), name: f.get("name"), queue: f.get("queue") || "default",
      array: f.get("array"), depend: f.get("depend")};
    if (f.get("script")) spec.script = f.get("command"); else spec.command = f.get("command");
    if (f.get("cpu")) spec.cpu = Number(f.get("cpu"));
    if (f.get("mem_mb")) spec.mem_mb = Number(f.get("mem_mb"));
    const limit = seconds(f.get("time_limit"));
    if (limit !== null) spec.time_limit = limit;
    const made = await act("/api/v1/jobs", {jobs: [spec]});
    location.href = "/jobs/" + made.jobs[0];
  } catch (e) { showError(e.message); }
}

// ------------------------------------------------------------------ start

function route() {
  const parts = location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "nodes" && parts[1]) return () => nodePage(parts[1]);
  if (parts[0] === "nodes") return nodes;
  if (parts[0] === "jobs" && parts[1]) return () => jobPage(parts[1]);
  if (parts[0] === "jobs") return jobs;
  if (parts[0] === "submit") return async () => { if (!main.querySelector("form")) submitPage(); };
  return overview;
}

async function start() {
  try { me = await api("/api/v1/web/session"); } catch (e) { showError(e.message); return; }
  document.getElementById("who").textContent = me.user + (me.read_only ? " (read-only)" : "") + (me.admin ? " (admin)" : "");
  document.getElementById("nav-submit").hidden = me.read_only;
  refresh = route();
  await reload();
  live();
}

start();
