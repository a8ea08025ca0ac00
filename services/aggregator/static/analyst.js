// The analyst page's shell: signing in and out, the app / domain / range filters, the refresh loop, and
// each panel's numbers beside its chart. Every text from the server goes in through textContent.

import { api, session } from "./api.js";
import { SERIES, fmt, timeLabel, when } from "./charts.js";
import { drawAlertReadings, drawLeaderboard, unratedItems, versionLabel } from "./leaderboard.js";
import { drawApproval, drawDeadLetters, drawFlow, drawQueue, paintSwatches } from "./panels.js";

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 10000;
const RANGE_NAMES = { "1h": "Last hour", "6h": "Last 6 hours", "24h": "Last 24 hours", "7d": "Last 7 days" };
const BUCKET_NAMES = { 60: "per minute", 600: "per 10 minutes", 3600: "per hour", 21600: "per 6 hours" };
const state = { apps: [], app: null, domain: "", range: "1h", timer: null, last: {}, colors: new Map(), busy: false };

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function alertUser(message) {
  $("alert").textContent = message;
}

function say(message) {
  $("status").textContent = message;
}

// One colour per version label, kept while the app stays selected (the same version, the same colour everywhere).
function colorOf(label) {
  if (!state.colors.has(label)) state.colors.set(label, SERIES[state.colors.size % SERIES.length]);
  return state.colors.get(label);
}

function bucketName(seconds) {
  return BUCKET_NAMES[seconds] || `per ${fmt.int(seconds / 60)} minutes`;
}

// ---- panels ------------------------------------------------------------------------------------

function renderLeaderboard(body) {
  for (const m of body.models) if (m.rank !== null && m.rank !== undefined) colorOf(versionLabel(m));
  const drawn = drawLeaderboard($("leaderboard-chart"), body, colorOf);
  const meta = [`${fmt.int(body.battles)} battles`, `${fmt.int(body.bootstrap_rounds)} bootstrap rounds`, `rated from ${fmt.int(body.min_battles)} battles`];
  if (body.computed_at) meta.push(`computed ${when(Date.parse(body.computed_at))}`);
  $("leaderboard-meta").textContent = meta.join(" · ");
  const empty = $("leaderboard-empty");
  empty.hidden = drawn > 0;
  empty.textContent = drawn ? "" : body.reason || "No version is rated yet: a rating needs battles (pairs whose two answers come from two versions).";
  const unrated = unratedItems(body);
  $("unrated").hidden = unrated.length === 0;
  $("unrated-list").replaceChildren(
    ...unrated.map((u) => {
      const item = el("li");
      item.append(el("strong", "", u.label), el("span", "", `: ${u.reason}; ${u.approval}.`));
      return item;
    }),
  );
}

function renderAlerts(data) {
  const raised = data.alerts.filter((a) => a.state === "raised").length;
  $("alerts-meta").textContent = data.alerts.length ? `${raised} raised, ${data.alerts.length - raised} cleared` : "";
  if (!data.alerts.length) {
    $("alert-list").replaceChildren(el("li", "empty-note", "No regression: no model's newest version is below the one it replaced."));
    return;
  }
  const drawn = data.alerts.map((a) => {
    const item = el("li", `alert-card alert-${a.state}`);
    item.dataset.state = a.state;
    const head = el("p", "alert-head");
    head.append(el("span", `pill pill-${a.state}`, a.state === "raised" ? "Raised" : "Cleared"));
    head.append(el("span", "alert-what", `${a.model} ${a.new_version} below ${a.previous_version} on ${a.metric}`));
    const where = `${a.app_id}${a.domain ? ` · ${a.domain}` : " · whole app"} · ${a.state} ${when(Date.parse(a.updated_at))}`;
    const chart = el("div", "alert-chart");
    item.append(head, el("p", "alert-where", where), chart);
    return [item, chart, a];
  });
  $("alert-list").replaceChildren(...drawn.map(([item]) => item));
  // Drawn once in the page: a chart takes its container's width.
  for (const [, chart, a] of drawn) drawAlertReadings(chart, a);
}

// "Last hour, per minute", and where the chart starts later than the range: "from 12:03".
function rangeText(range, sinceMs, startMs) {
  const from = startMs > sinceMs ? ` (data from ${timeLabel(startMs, range.bucket_s)})` : "";
  return `${RANGE_NAMES[range.name] || range.name}${from}, ${bucketName(range.bucket_s)}`;
}

function renderApproval(data) {
  const { count, startMs } = drawApproval($("approval-chart"), $("approval-legend"), data, colorOf);
  $("approval-meta").textContent = `${rangeText(data.range, Date.parse(data.since), startMs)}${count ? "" : " · no thumbs yet"}`;
}

function renderFlow(data) {
  const { startMs } = drawFlow($("flow-chart"), $("flow-legend"), data);
  const sinceMs = data.buckets.length ? Date.parse(data.buckets[0].start) : startMs;
  $("flow-meta").textContent = rangeText(data.range, sinceMs, startMs);
}

function renderQueue(data) {
  drawQueue($("queue-chart"), data, state.domain);
  $("queue-meta").textContent = `${fmt.int(data.open)} open in ${fmt.int(data.domains.length)} ${data.domains.length === 1 ? "domain" : "domains"}`;
}

function renderDeadLetters(data) {
  drawDeadLetters($("dead-reasons"), $("dead-hours"), data);
  const hours = Math.round(data.span.span_s / 3600);
  $("dead-meta").textContent = `${fmt.int(data.total)} in the last ${hours} hours, per hour`;
}

const PANELS = {
  leaderboard: [() => api.leaderboard(state.app, state.domain), renderLeaderboard],
  alerts: [() => api.alerts(), renderAlerts],
  approval: [() => api.approval(state.app, state.range), renderApproval],
  flow: [() => api.flow(state.app, state.range), renderFlow],
  queue: [() => api.queue(state.app), renderQueue],
  deadLetters: [() => api.deadLetters(state.range), renderDeadLetters],
};
const APP_PANELS = new Set(["leaderboard", "approval", "flow", "queue"]);

function redraw() {
  for (const [name, [, render]] of Object.entries(PANELS)) if (state.last[name]) render(state.last[name]);
}

// ---- filters -----------------------------------------------------------------------------------

function fillApps(apps) {
  state.apps = apps;
  const select = $("app");
  if (!apps.length) {
    select.replaceChildren(new Option("No app yet", ""));
    select.disabled = true;
    state.app = null;
    return;
  }
  select.disabled = false;
  if (!apps.some((a) => a.app_id === state.app)) state.app = apps[0].app_id;
  select.replaceChildren(...apps.map((a) => new Option(a.app_id, a.app_id)));
  select.value = state.app;
  fillDomains();
}

function fillDomains() {
  const app = state.apps.find((a) => a.app_id === state.app);
  const domains = app ? app.domains : [];
  if (state.domain && !domains.includes(state.domain)) state.domain = "";
  $("domain").replaceChildren(new Option("Whole app", ""), ...domains.map((d) => new Option(d, d)));
  $("domain").value = state.domain;
}

// ---- refreshing --------------------------------------------------------------------------------

async function refresh(names = Object.keys(PANELS)) {
  if (!session.token || state.busy) return;
  state.busy = true;
  try {
    fillApps((await api.apps()).apps);
    const wanted = names.filter((n) => state.app || !APP_PANELS.has(n));
    $("dashboard").classList.toggle("no-app", !state.app);
    const results = await Promise.allSettled(wanted.map((n) => PANELS[n][0]()));
    let problem = null;
    results.forEach((result, i) => {
      const name = wanted[i];
      if (result.status === "fulfilled") {
        state.last[name] = result.value;
        PANELS[name][1](result.value);
      } else {
        problem = problem || result.reason;
      }
    });
    if (problem) throw problem;
    alertUser("");
    $("updated").textContent = `Updated ${new Date().toLocaleTimeString("en-GB")}`;
  } catch (error) {
    if (error.kind === "unauthorized" || error.kind === "closed") signedOut(error.message);
    else alertUser(error.message || "Something failed while drawing the charts.");
  } finally {
    state.busy = false;
  }
}

// ---- signing in and out ------------------------------------------------------------------------

async function signIn(token) {
  say("Checking the token…");
  let data;
  try {
    data = await api.apps(token);
  } catch (error) {
    say("");
    alertUser(error.message);
    $("token").focus();
    return;
  }
  session.token = token;
  alertUser("");
  say("Signed in.");
  $("range").replaceChildren(...data.ranges.map((r) => new Option(RANGE_NAMES[r.name] || r.name, r.name)));
  $("range").value = state.range;
  fillApps(data.apps);
  $("sign-in").hidden = true;
  $("token").value = "";
  $("filters").hidden = false;
  $("session").hidden = false;
  $("dashboard").hidden = false;
  await refresh();
  clearInterval(state.timer);
  state.timer = setInterval(() => refresh(), REFRESH_MS);
}

function signedOut(message) {
  clearInterval(state.timer);
  state.timer = null;
  session.token = null;
  state.last = {};
  $("dashboard").hidden = true;
  $("filters").hidden = true;
  $("session").hidden = true;
  $("sign-in").hidden = false;
  if (message) alertUser(message);
  $("token").focus();
}

function wire() {
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (!token) {
      alertUser("Paste the admin token first.");
      return;
    }
    signIn(token);
  });
  $("sign-out").addEventListener("click", () => {
    signedOut("");
    say("Signed out.");
  });
  $("refresh").addEventListener("click", () => refresh());
  $("app").addEventListener("change", () => {
    state.app = $("app").value;
    state.domain = "";
    state.colors = new Map();
    fillDomains();
    refresh();
  });
  $("domain").addEventListener("change", () => {
    state.domain = $("domain").value;
    refresh(["leaderboard", "queue"]);
  });
  $("range").addEventListener("change", () => {
    state.range = $("range").value;
    refresh(["approval", "flow", "deadLetters"]);
  });
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(redraw, 150);
  });
  paintSwatches(document);
}

wire();
if (session.token) signIn(session.token);
else $("token").focus();
