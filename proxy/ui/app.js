// The rfaas dashboard. No framework and no build step: this file is served as written.
//
// Rules that keep it safe: every string from the platform (function names, documents, log
// lines) reaches the page through textContent, never as HTML; the token lives in this tab's
// sessionStorage and goes out only as an Authorization header; every action uses the admin API
// the CLI uses.
"use strict";

const POLL_MS = 2000;
const LOG_POLL_MS = 3000;
const PAGE = 20;
const TOKEN_KEY = "rfaas.token";

const state = {
  view: "functions",
  functions: [],
  load: new Map(),
  activity: null,
  selected: null,
  table: null,
  next: null,
  timer: null,
  logTimer: null,
  rendered: false,
};

const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

// ANSI escape sequences (colours, cursor moves) dropped from log lines; the rest stays text.
const ANSI = /\u001b\[[0-9;?]*[ -\/]*[@-~]|\u001b\][^\u0007\u001b]*(\u0007|\u001b\\)|\u001b[@-_]/g;
function stripAnsi(s) {
  return String(s).replace(ANSI, "").replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, "");
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

class HttpError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

// An admin request with the token; JSON answers are parsed, problem+json becomes an HttpError
// carrying its detail.
async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {}, {
    Authorization: "Bearer " + (options.token || token() || ""),
  });
  const res = await fetch(path, Object.assign({}, options, { headers, cache: "no-store" }));
  const text = await res.text();
  const json = (() => {
    try { return text ? JSON.parse(text) : null; } catch (_) { return null; }
  })();
  if (!res.ok) {
    const detail = (json && (json.detail || json.title)) || text || res.statusText;
    throw new HttpError(res.status, detail);
  }
  return json;
}

// ---- sign-in -------------------------------------------------------------------------------

function showSignin(message) {
  stopPolling();
  $("signin").hidden = false;
  $("nav").hidden = true;
  $("conn").hidden = true;
  for (const v of document.querySelectorAll(".view")) v.hidden = true;
  $("signin-error").textContent = message || "";
  $("token").value = "";
  $("token").focus();
}

async function signIn(candidate) {
  try {
    await api("/system/functions", { token: candidate });
  } catch (e) {
    if (e.status === 401) {
      showSignin("That is not this platform's admin token. Copy it from ~/.config/rfaas/token " +
        "(or the instance's token file) and try again.");
    } else {
      showSignin("The gateway did not answer (" + e.message + "). Is the platform running?");
    }
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, candidate);
  $("signin").hidden = true;
  $("nav").hidden = false;
  show(state.view);
  startPolling();
}

// ---- polling -------------------------------------------------------------------------------

function startPolling() {
  stopPolling();
  const tick = async () => {
    await refresh();
    state.timer = setTimeout(tick, POLL_MS);
  };
  tick();
}

function stopPolling() {
  if (state.timer) clearTimeout(state.timer);
  if (state.logTimer) clearTimeout(state.logTimer);
  state.timer = null;
  state.logTimer = null;
}

function connection(ok, why) {
  const c = $("conn");
  c.hidden = false;
  c.className = ok ? "conn ok" : "conn down";
  c.textContent = ok ? "live" : "gateway not answering, retrying… (" + why + ")";
}

async function refresh() {
  try {
    const [functions, load, activity] = await Promise.all([
      api("/system/functions"),
      api("/system/load").catch(() => []),
      api("/system/activity"),
    ]);
    state.functions = (functions || []).slice().sort((a, b) => a.name.localeCompare(b.name));
    state.load = new Map((load || []).map((l) => [l.name, l]));
    state.activity = activity;
    connection(true);
    render();
  } catch (e) {
    if (e.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showSignin("The platform's token changed: sign in with the new one.");
      return;
    }
    connection(false, e.message);
  }
}

// ---- views ---------------------------------------------------------------------------------

function show(view) {
  state.view = view;
  for (const b of document.querySelectorAll(".tab")) {
    b.classList.toggle("active", b.dataset.view === view);
  }
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== "view-" + view;
  if (view === "store") loadTables();
  render();
}

function render() {
  if (state.view === "functions") renderFunctions();
  if (state.view === "calls") renderCalls();
}

function ago(iso) {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "";
  let s = Math.max(0, Math.round((Date.now() - t) / 1000));
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min";
  if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  return Math.floor(s / 86400) + " d";
}

function seriesOf(name) {
  const a = state.activity;
  const s = a && a.functions.find((f) => f.name === name);
  return s ? s.points : [];
}

function deadOf(name) {
  const d = state.activity && state.activity.dead;
  if (!d) return "?";
  const c = d.find((x) => x.function === name);
  return c ? c.calls : 0;
}

function renderFunctions() {
  const body = $("functions-body");
  const fns = state.functions;
  $("functions-empty").hidden = fns.length > 0;
  $("functions-table").hidden = fns.length === 0;
  const rows = fns.map((f) => {
    const load = state.load.get(f.name) || {};
    // Desired: as last deployed or scaled; a route recorded before rfaas kept it: as registered.
    const desired = f.run ? f.run.replicas : f.upstreams.length;
    const power = f.power || "running";
    const tr = el("tr");
    tr.dataset.function = f.name;
    if (state.selected === f.name) tr.className = "selected";
    const name = el("td");
    const link = el("button", f.name, "link");
    link.type = "button";
    link.dataset.open = f.name;
    name.append(link);
    tr.append(name, el("td", f.kind));
    const url = el("td");
    url.append(el("code", "/functions/" + f.name));
    tr.append(url);
    // Ready: replicas that take calls (none while paused or stopped, as gateway_service_count).
    const ready = power === "running" ? f.upstreams.length : 0;
    tr.append(el("td", ready + " / " + desired));
    tr.append(el("td", power, "power " + power));
    const calls = el("td", load.calls === undefined ? "" : load.calls);
    calls.dataset.calls = f.name;
    tr.append(calls);
    tr.append(el("td", load.inflight === undefined ? "" : load.inflight));
    const q = f.queue || {};
    tr.append(el("td", f.kind === "http" && !q.pending ? "" : (q.pending || 0) + " / " + (q.inflight || 0)));
    tr.append(el("td", deadOf(f.name)));
    const spark = el("td");
    spark.append(sparkline(seriesOf(f.name).map((p) => p.calls)));
    tr.append(spark);
    tr.append(el("td", f.image, "muted"));
    tr.append(el("td", ago(f.deployedAt)));
    return tr;
  });
  body.replaceChildren(...rows);
  if (!state.rendered) {
    state.rendered = true;
    document.body.dataset.firstRenderMs = String(Math.round(performance.now()));
  }
  document.body.dataset.functions = String(fns.length);
  renderDetail();
}

// The SVG namespace: a name, never fetched.
const SVG = "http://www.w3.org/2000/svg";
function svgEl(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

function sparkline(values) {
  const svg = svgEl("svg", { viewBox: "0 0 60 16", class: "spark", preserveAspectRatio: "none" });
  if (values.length > 1) svg.append(line(values, 60, 16, Math.max(1, ...values), "s1"));
  return svg;
}

function line(values, w, h, max, cls) {
  const step = values.length > 1 ? w / (values.length - 1) : w;
  const pts = values
    .map((v, i) => (i * step).toFixed(1) + "," + (h - (h - 2) * ((v || 0) / max) - 1).toFixed(1))
    .join(" ");
  return svgEl("polyline", { points: pts, class: cls, fill: "none" });
}

function chart(id, lines) {
  const svg = $(id);
  const all = lines.flatMap((l) => l.values).filter((v) => v !== null && v !== undefined);
  const max = Math.max(1e-9, ...all);
  const children = lines.map((l) => line(l.values, 300, 80, max, l.cls));
  const label = svgEl("text", { x: "2", y: "10", class: "axis" });
  label.textContent = "max " + (Math.round(max * 100) / 100);
  svg.replaceChildren(label, ...children);
}

function renderDetail() {
  const name = state.selected;
  const f = name && state.functions.find((x) => x.name === name);
  $("detail").hidden = !f;
  if (!f) return;
  $("detail-title").textContent = f.name;
  const points = seriesOf(name);
  const secs = (state.activity && state.activity.intervalSecs) || 5;
  chart("chart-rate", [{ values: points.map((p) => p.calls / secs), cls: "s1" }]);
  chart("chart-errors", [{ values: points.map((p) => p.errors / secs), cls: "s3" }]);
  chart("chart-latency", [
    { values: points.map((p) => (p.p50Ms === undefined ? 0 : p.p50Ms)), cls: "s1" },
    { values: points.map((p) => (p.p99Ms === undefined ? 0 : p.p99Ms)), cls: "s2" },
  ]);
  const last = points[points.length - 1];
  const sampled = state.activity && state.activity.functions.length > 0;
  $("chart-legend").textContent = last
    ? "last " + secs + " s: " + last.calls + " calls, " + last.errors + " errors" +
      (last.p50Ms !== undefined ? ", p50 " + last.p50Ms + " ms, p99 " + last.p99Ms + " ms" : "") +
      " — the last " + Math.max(1, Math.round((points.length * secs) / 60)) + " min, one point per " +
      secs + " s"
    : sampled
      ? "no calls answered since the gateway started (or not yet sampled: one sample every " + secs + " s)"
      : "no samples yet (one every " + secs + " s)";
}

function select(name) {
  state.selected = name;
  $("invoke-answer").textContent = "";
  $("invoke-status").textContent = "";
  $("scale-status").textContent = "";
  $("logs").textContent = "";
  const f = state.functions.find((x) => x.name === name);
  if (f && f.run) $("scale-n").value = f.run.replicas;
  renderFunctions();
  pollLogs();
}

async function pollLogs() {
  if (state.logTimer) clearTimeout(state.logTimer);
  const name = state.selected;
  if (!name) return;
  try {
    const lines = await api("/system/logs/" + encodeURIComponent(name) + "?tail=200");
    if (state.selected !== name) return;
    const pre = $("logs");
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    const several = new Set(lines.map((l) => l.replica)).size > 1;
    pre.replaceChildren(...lines.map((l) => {
      const row = el("span", (several ? "[" + l.replica + "] " : "") + stripAnsi(l.text) + "\n",
        l.stderr ? "stderr" : "");
      row.dataset.replica = l.replica;
      return row;
    }));
    if (lines.length === 0) pre.textContent = "(no log lines)";
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  } catch (e) {
    if (state.selected === name) $("logs").textContent = "Logs unavailable: " + e.message;
  }
  if (state.selected === name && state.timer) state.logTimer = setTimeout(pollLogs, LOG_POLL_MS);
}

// ---- actions (each confirmed) --------------------------------------------------------------

function confirmAction(text) {
  return new Promise((resolve) => {
    $("confirm-text").textContent = text;
    $("confirm").hidden = false;
    const done = (answer) => {
      $("confirm").hidden = true;
      $("confirm-yes").onclick = null;
      $("confirm-no").onclick = null;
      resolve(answer);
    };
    $("confirm-yes").onclick = () => done(true);
    $("confirm-no").onclick = () => done(false);
    $("confirm-yes").focus();
  });
}

async function invoke(ev) {
  ev.preventDefault();
  const name = state.selected;
  const method = $("invoke-method").value;
  const path = $("invoke-path").value.replace(/^\/+/, "");
  if (!(await confirmAction("Call " + name + " with " + method + "?"))) return;
  const url = "/functions/" + encodeURIComponent(name) + (path ? "/" + path : "");
  const init = { method, cache: "no-store" };
  if (method !== "GET" && method !== "DELETE") init.body = $("invoke-body").value;
  $("invoke-status").textContent = "calling…";
  const started = performance.now();
  try {
    const res = await fetch(url, init);
    const text = await res.text();
    const ms = Math.round(performance.now() - started);
    const id = res.headers.get("X-Call-Id");
    $("invoke-status").textContent = res.status + " " + res.statusText + " in " + ms + " ms" +
      (id ? " — call id " + id : "");
    $("invoke-answer").textContent = text;
  } catch (e) {
    $("invoke-status").textContent = "the call failed: " + e.message;
  }
}

async function scaleTo(n, verb) {
  const name = state.selected;
  if (!(await confirmAction(verb + " " + name + " (" + n + " replicas)?"))) return;
  $("scale-status").textContent = "asking the scaler…";
  try {
    await api("/system/scale-function/" + encodeURIComponent(name), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ replicas: n }),
    });
    $("scale-status").textContent = name + " now has " + n + " replicas";
    refresh();
  } catch (e) {
    $("scale-status").textContent = "Not done: " + e.message;
  }
}

// ---- store ---------------------------------------------------------------------------------

async function loadTables() {
  try {
    const tables = await api("/store/tables");
    $("tables-empty").hidden = tables.length > 0;
    $("tables").replaceChildren(...tables.map((t) => {
      const li = el("li");
      const b = el("button", t.name + " (" + t.count + ")", "link");
      b.type = "button";
      b.dataset.table = t.name;
      li.append(b);
      return li;
    }));
  } catch (e) {
    $("tables").replaceChildren(el("li", "The store did not answer: " + e.message, "error"));
  }
}

async function loadDocs(table, after) {
  state.table = table;
  $("docs-panel").hidden = false;
  $("doc-json").hidden = true;
  $("docs-title").textContent = table;
  const q = "?limit=" + PAGE + (after ? "&after=" + encodeURIComponent(after) : "");
  try {
    const page = await api("/store/tables/" + encodeURIComponent(table) + "/docs" + q);
    state.next = page.next || null;
    $("docs-next").disabled = !state.next;
    $("docs-body").replaceChildren(...page.docs.map((d) => {
      const tr = el("tr");
      const id = el("td");
      const b = el("button", d.id, "link");
      b.type = "button";
      b.dataset.doc = d.id;
      id.append(b);
      const preview = JSON.stringify(d.data);
      tr.append(id, el("td", d.version), el("td", d.updatedAt),
        el("td", preview.length > 80 ? preview.slice(0, 80) + "…" : preview, "muted"));
      return tr;
    }));
  } catch (e) {
    $("docs-body").replaceChildren(el("tr", "Cannot read " + table + ": " + e.message, "error"));
  }
}

async function openDoc(id) {
  try {
    const doc = await api("/store/tables/" + encodeURIComponent(state.table) + "/docs/" +
      encodeURIComponent(id));
    $("doc-json").hidden = false;
    $("doc-json").textContent = JSON.stringify(doc, null, 2);
  } catch (e) {
    $("doc-json").hidden = false;
    $("doc-json").textContent = "Cannot read " + id + ": " + e.message;
  }
}

// ---- wiring --------------------------------------------------------------------------------

function renderCalls() {
  const a = state.activity;
  const queues = state.functions.filter((f) => f.kind !== "http" || f.queue);
  $("queues-body").replaceChildren(...queues.map((f) => {
    const q = f.queue || {};
    const tr = el("tr");
    tr.append(el("td", f.name), el("td", q.pending || 0), el("td", q.inflight || 0),
      el("td", deadOf(f.name)));
    return tr;
  }));
  const recent = (a && a.recent) || [];
  $("calls-empty").hidden = recent.length > 0;
  $("calls-body").replaceChildren(...recent.map((c) => {
    const tr = el("tr");
    tr.append(
      el("td", new Date(c.atMs).toLocaleTimeString()),
      el("td", c.function),
      el("td", c.kind),
      el("td", c.status, c.status >= 500 ? "error" : ""),
      el("td", c.millis === undefined ? "" : c.millis.toFixed(1)),
      el("td", c.callId || "", "muted"),
    );
    return tr;
  }));
}

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    signIn($("token").value.trim());
  });
  $("signout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    state.selected = null;
    showSignin("Signed out.");
  });
  for (const b of document.querySelectorAll(".tab")) {
    b.addEventListener("click", () => show(b.dataset.view));
  }
  $("functions-body").addEventListener("click", (ev) => {
    const name = ev.target.dataset && ev.target.dataset.open;
    if (name) select(name);
  });
  $("invoke-form").addEventListener("submit", invoke);
  $("scale-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const n = Number($("scale-n").value);
    if (!Number.isInteger(n) || n < 0) {
      $("scale-status").textContent = "Give a whole number of replicas from 0.";
      return;
    }
    scaleTo(n, "Scale");
  });
  $("stop").addEventListener("click", () => scaleTo(0, "Stop"));
  $("tables").addEventListener("click", (ev) => {
    const t = ev.target.dataset && ev.target.dataset.table;
    if (t) loadDocs(t, null);
  });
  $("docs-next").addEventListener("click", () => {
    if (state.next) loadDocs(state.table, state.next);
  });
  $("docs-first").addEventListener("click", () => loadDocs(state.table, null));
  $("docs-body").addEventListener("click", (ev) => {
    const id = ev.target.dataset && ev.target.dataset.doc;
    if (id) openDoc(id);
  });
  const saved = token();
  if (saved) signIn(saved);
  else showSignin();
});
