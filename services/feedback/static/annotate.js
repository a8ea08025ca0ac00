// The annotator page's shell: signing in and out, progress, timers, keys and buttons.
// The work loop itself (leases, tasks, verdicts) is in tasks.js.

import { api, session } from "./api.js";
import * as tasks from "./tasks.js";
import * as view from "./view.js";

const $ = (id) => document.getElementById(id);
const EMPTY_POLL_MS = 5000;
const STATS_POLL_MS = 30000;
const TICK_MS = 500;
const { state, DRAFT_PREFIX, alertUser, clearAlert, say, showNext, releaseQuietly, prefetch, tick } = tasks;
const { decide, submitRewrite, skip, openEditor, closeEditor, copyAnswer, saveDraft, toggleDiff } = tasks;

// ---- progress -------------------------------------------------------------------------------
function localDayStart() {
  const day = new Date();
  day.setHours(0, 0, 0, 0);
  return day.toISOString();
}

async function refreshStats() {
  if (!state.me) return;
  try {
    const { data } = await api.stats(localDayStart());
    state.depth = view.renderProgress(data, state.me, state.domain);
    if (!$("empty").hidden) view.renderEmpty(state.depth, state.domain);
  } catch (error) {
    if (error.kind === "unauthorized") signedOut(error.message);
  }
}

// ---- signing in and out ----------------------------------------------------------------------
async function signIn(token) {
  say("Checking the token…");
  let me;
  try {
    me = (await api.me(token)).data;
  } catch (error) {
    say("");
    alertUser(error.message);
    $("token").focus();
    return;
  }
  session.token = token;
  state.me = me;
  clearAlert();
  say(`Signed in as ${me.annotator_id}.`);
  $("who").textContent = me.annotator_id;
  const filter = $("domain-filter");
  filter.replaceChildren(new Option("All my domains", ""), ...me.domains.map((d) => new Option(d, d)));
  filter.value = state.domain;
  $("sign-in").hidden = true;
  $("token").value = "";
  $("session").hidden = false;
  $("workspace").hidden = false;
  startTimers();
  refreshStats();
  await showNext();
}

function signedOut(message) {
  stopTimers();
  session.token = null;
  state.me = null;
  state.current = null;
  tasks.dropNext();
  $("session").hidden = true;
  $("workspace").hidden = true;
  $("actions").hidden = true;
  $("sign-in").hidden = false;
  if (message) alertUser(message);
  $("token").focus();
}

async function signOut() {
  releaseQuietly(state.current); // the prefetched one is given back by signedOut
  for (let i = sessionStorage.length - 1; i >= 0; i--) {
    const key = sessionStorage.key(i);
    if (key && key.startsWith(DRAFT_PREFIX)) sessionStorage.removeItem(key);
  }
  clearAlert();
  signedOut(null);
  say("Signed out.");
}

// ---- timers: the lease clock, extension while active, the empty queue, the progress -----------
function startTimers() {
  stopTimers();
  state.timers.push(setInterval(tick, TICK_MS));
  state.timers.push(setInterval(refreshStats, STATS_POLL_MS));
  state.timers.push(
    setInterval(() => {
      if (!$("empty").hidden && !state.busy) showNext();
    }, EMPTY_POLL_MS),
  );
}

function stopTimers() {
  state.timers.forEach(clearInterval);
  state.timers = [];
}

// ---- keys and buttons -----------------------------------------------------------------------
const KEYS = { 1: "left", 2: "right", 3: "tie", 4: "both_bad", r: "rewrite", s: "skip", n: "next", d: "diff", g: "guidelines", "?": "help" };

function run(action) {
  if (!state.me) return;
  if (["left", "right", "tie", "both_bad", "fine"].includes(action)) decide(action === "fine" ? "left" : action);
  else if (action === "rewrite" && state.current && !state.current.closed) openEditor();
  else if (action === "skip") skip();
  else if (action === "next" && !state.busy && (!state.current || state.current.closed)) {
    clearAlert();
    showNext();
  } else if (action === "diff") toggleDiff();
  else if (action === "guidelines") $("guidelines-panel").classList.toggle("collapsed");
  else if (action === "help") $("shortcuts").showModal();
}

function isTextField(target) {
  return target instanceof HTMLElement && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

function onKey(event) {
  state.lastActivity = Date.now();
  if (event.target === $("rewrite")) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      submitRewrite();
    } else if (event.key === "Escape") {
      event.preventDefault();
      closeEditor();
    }
    return;
  }
  if (isTextField(event.target) || event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  if ($("shortcuts").open) return;
  const action = KEYS[event.key];
  if (!action || !state.me) return;
  event.preventDefault();
  run(action);
}

function wire() {
  document.addEventListener("keydown", onKey);
  for (const type of ["pointerdown", "wheel", "scroll", "input", "focusin"]) {
    document.addEventListener(type, () => (state.lastActivity = Date.now()), { passive: true, capture: true });
  }
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (!token) alertUser("Enter your annotator token first.");
    else signIn(token);
  });
  document.querySelectorAll("[data-action]").forEach((b) => b.addEventListener("click", () => run(b.dataset.action)));
  $("submit-rewrite").addEventListener("click", submitRewrite);
  $("close-editor").addEventListener("click", () => closeEditor());
  $("copy-left").addEventListener("click", () => copyAnswer("left"));
  $("copy-right").addEventListener("click", () => copyAnswer("right"));
  $("rewrite").addEventListener("input", saveDraft);
  $("check-again").addEventListener("click", () => run("next"));
  $("sign-out").addEventListener("click", signOut);
  $("domain-filter").addEventListener("change", onDomainChange);
  // Closing or reloading the tab gives both leases back at once instead of when they expire.
  window.addEventListener("pagehide", () => {
    releaseQuietly(state.current, true);
    releaseQuietly(state.next, true);
  });
}

async function onDomainChange() {
  state.domain = $("domain-filter").value;
  tasks.dropNext();
  if (state.prefetching) await state.prefetching;
  tasks.dropNext();
  const current = state.current;
  if (current && !current.closed && state.domain && current.shown.task.domain !== state.domain) {
    releaseQuietly(current);
    state.current = null;
  }
  refreshStats();
  if (!state.current || state.current.closed) await showNext();
  else prefetch();
}

tasks.hooks.signedOut = signedOut;
tasks.hooks.refreshStats = refreshStats;
wire();
if (session.token) signIn(session.token);
else $("token").focus();
