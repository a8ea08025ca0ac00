// The task on screen and the one behind it: leases, showing, verdicts, the rewrite editor.
//
// Leases: the task on screen and one prefetched behind it are both leased to this annotator (the
// lease query never hands the same live lease out twice), so a verdict shows the next task without a
// round trip for it. Both leases are extended while the annotator is active (a key, a click, a scroll
// since the last extension, once half the lease has passed), released when the tab closes, and a
// lease that runs out is said so on screen. Sides: the server says which task side goes left; a
// verdict on the screen's left or right is mapped back to the task's own A or B and sent with it.

import { api } from "./api.js";
import * as view from "./view.js";

const $ = (id) => document.getElementById(id);
const EXTEND_BEFORE_SHOWING_MS = 15000;
export const DRAFT_PREFIX = "feedback.draft.";
// Set by annotate.js: what a refused token and a changed queue lead to.
export const hooks = { signedOut: (message) => {}, refreshStats: () => {} };

export const state = {
  me: null,
  current: null, // the task on screen: {shown, expiresAt, leaseMs, extendedAt, closed, extending}
  next: null, // the prefetched task, same shape
  prefetching: null,
  domain: "",
  depth: null,
  busy: false,
  showDiff: true,
  lastActivity: 0,
  guidelines: new Map(),
  timers: [],
  warnedLeaseLow: false,
};

// ---- messages: an alert stays until the next success or the next task on screen ------------------
export function alertUser(message) {
  $("alert").textContent = message;
}
export function clearAlert() {
  $("alert").textContent = "";
}
export function say(message) {
  $("status").textContent = message;
}

// ---- leases ---------------------------------------------------------------------------------
function held(result) {
  const serverNow = result.date ? Date.parse(result.date) : NaN;
  // Trust this machine's clock unless it is clearly off from the server's (the Date header has 1 s steps).
  const skew = Number.isFinite(serverNow) && Math.abs(serverNow - Date.now()) > 3000 ? serverNow - Date.now() : 0;
  const expiresAt = Date.parse(result.data.task.lease_expires_at) - skew;
  return {
    shown: result.data,
    expiresAt,
    leaseMs: Math.max(1000, expiresAt - Date.now()), // the lease length, as just granted
    extendedAt: Date.now(),
    closed: null,
    extending: false,
  };
}

const taskId = (h) => h.shown.task.task_id;
const msLeft = (h) => h.expiresAt - Date.now();

async function leaseOne() {
  const result = await api.lease(state.domain || undefined);
  return result.status === 204 ? null : held(result);
}

async function extend(h) {
  h.extending = true;
  try {
    const result = await api.extend(taskId(h));
    h.expiresAt = Date.parse(result.data.lease_expires_at);
    h.extendedAt = Date.now();
    return true;
  } catch (error) {
    if (error.kind === "lease_lost" || error.kind === "conflict" || error.kind === "forbidden") {
      if (h === state.current) closeCurrent(error.message);
      else if (h === state.next) setNext(null);
    }
    return false;
  } finally {
    h.extending = false;
  }
}

export function releaseQuietly(h, keepalive = false) {
  if (h && !h.closed) api.release(taskId(h), keepalive).catch(() => {});
}

export function prefetch() {
  if (state.next || state.prefetching || !state.me) return;
  state.prefetching = leaseOne()
    .then((h) => {
      if (state.me) setNext(h);
      else releaseQuietly(h); // signed out meanwhile
    })
    .catch(() => setNext(null))
    .finally(() => {
      state.prefetching = null;
    });
}

// The prefetched task; its id is on the page (data-next) for whoever needs to know one is ready.
function setNext(h) {
  state.next = h;
  $("task").dataset.next = h ? taskId(h) : "";
}

async function takeNext() {
  if (!state.next && state.prefetching) await state.prefetching;
  let h = state.next;
  setNext(null);
  if (h && msLeft(h) < EXTEND_BEFORE_SHOWING_MS && !(await extend(h))) h = null;
  return h || leaseOne();
}

// ---- showing tasks --------------------------------------------------------------------------
export async function showNext() {
  let h;
  try {
    h = await takeNext();
  } catch (error) {
    handleError(error);
    if (!state.current || state.current.closed) showEmpty();
    return;
  }
  if (!h) {
    state.current = null;
    showEmpty();
    return;
  }
  show(h);
  prefetch();
}

function show(h) {
  state.current = h;
  state.warnedLeaseLow = false;
  clearAlert();
  const { task } = h.shown;
  $("empty").hidden = true;
  $("task").hidden = false;
  $("guidelines-panel").hidden = false;
  $("actions").hidden = false;
  $("lease").hidden = false;
  view.renderTask(h.shown, state.showDiff);
  setClosed(false);
  const draft = sessionStorage.getItem(DRAFT_PREFIX + task.task_id);
  if (draft !== null) openEditor(draft);
  else closeEditor(false);
  view.renderLease(msLeft(h) / 1000, false);
  window.scrollTo(0, 0);
  if ($("editor").hidden && ["TEXTAREA", "BUTTON"].includes(document.activeElement?.tagName)) $("main").focus({ preventScroll: true });
  say(`New task: ${task.domain}, ${task.kind === "rewrite" ? "one answer to judge or rewrite" : "two answers to compare"}.`);
  loadGuidelines(task.domain);
}

function showEmpty() {
  $("task").hidden = true;
  $("guidelines-panel").hidden = true;
  $("actions").hidden = true;
  $("lease").hidden = true;
  $("empty").hidden = false;
  view.renderEmpty(state.depth, state.domain);
  hooks.refreshStats();
}

function closeCurrent(message) {
  const h = state.current;
  if (!h || h.closed) return;
  h.closed = message;
  alertUser(message);
  setClosed(true);
  view.renderLease(0, true);
}

function setClosed(isClosed) {
  for (const button of document.querySelectorAll(".verdict, #act-rewrite, #act-skip, #submit-rewrite")) {
    button.disabled = isClosed;
  }
  $("act-next").hidden = !isClosed;
}

async function loadGuidelines(domain) {
  try {
    if (!state.guidelines.has(domain)) state.guidelines.set(domain, (await api.guidelines(domain)).data);
    view.renderGuidelines(domain, state.guidelines.get(domain));
  } catch {
    view.renderGuidelines(domain, null);
  }
}

// ---- verdicts -------------------------------------------------------------------------------
async function submit(body) {
  const h = state.current;
  if (!h || state.busy) return;
  if (h.closed) {
    alertUser(h.closed);
    return;
  }
  state.busy = true;
  say("Saving…");
  try {
    await api.verdict(taskId(h), { ...body, shown_left: h.shown.shown_left });
  } catch (error) {
    handleError(error);
    return;
  } finally {
    state.busy = false;
  }
  sessionStorage.removeItem(DRAFT_PREFIX + taskId(h));
  clearAlert();
  state.current = null;
  await showNext();
  hooks.refreshStats();
}

export function decide(side) {
  const h = state.current;
  if (!h) return;
  const { task, shown_left: left } = h.shown;
  if (task.kind === "rewrite") {
    if (side === "left") submit({ verdict: "A" });
    else if (side === "both_bad") openEditor();
    else say("A rewrite task has one answer: press 1 if it is good as is, r to rewrite it.");
    return;
  }
  const verdict = { left, right: left === "A" ? "B" : "A", tie: "tie", both_bad: "both_bad" }[side];
  submit({ verdict });
}

export function submitRewrite() {
  const text = $("rewrite").value;
  if (!text.trim()) {
    alertUser("Write the better answer first, then submit it.");
    $("rewrite").focus();
    return;
  }
  clearAlert();
  submit({ verdict: "both_bad", rewrite: text });
}

export async function skip() {
  const h = state.current;
  if (!h || state.busy) return;
  if (h.closed) return showNext();
  state.busy = true;
  try {
    await api.skip(taskId(h));
  } catch (error) {
    handleError(error);
    return;
  } finally {
    state.busy = false;
  }
  sessionStorage.removeItem(DRAFT_PREFIX + taskId(h));
  clearAlert();
  say("Skipped. You will not be offered that task again.");
  state.current = null;
  await showNext();
}

function handleError(error) {
  if (error.kind === "unauthorized") {
    hooks.signedOut(error.message);
  } else if (["lease_lost", "conflict", "forbidden"].includes(error.kind) && state.current) {
    closeCurrent(error.message);
  } else {
    alertUser(error.message || "Something went wrong. Try again; nothing you typed is lost.");
  }
  say("");
}

// ---- the editor ----------------------------------------------------------------------------
export function openEditor(text) {
  const h = state.current;
  if (!h) return;
  const { task, shown_left: left } = h.shown;
  const saved = sessionStorage.getItem(DRAFT_PREFIX + task.task_id);
  $("rewrite").value = text ?? saved ?? (task.kind === "rewrite" ? task.candidates[left].content : "");
  view.renderEditorHint(task.kind);
  $("editor").hidden = false;
  $("rewrite").focus({ preventScroll: true });
  // Down to the editor's buttons, which the page's scroll padding keeps clear of the action bar.
  $("editor").scrollIntoView({ block: "end" });
}

export function closeEditor(moveFocus = true) {
  $("editor").hidden = true;
  if (moveFocus) $("act-rewrite").focus();
}

export function copyAnswer(which) {
  const h = state.current;
  if (!h) return;
  const left = h.shown.shown_left;
  const side = which === "left" ? left : left === "A" ? "B" : "A";
  $("rewrite").value = h.shown.task.candidates[side].content;
  saveDraft();
  $("rewrite").focus();
}

export function saveDraft() {
  if (state.current) sessionStorage.setItem(DRAFT_PREFIX + taskId(state.current), $("rewrite").value);
}

// ---- the lease clock: extension while active, a lost lease said at once ----------------------
export function dropNext() {
  releaseQuietly(state.next);
  setNext(null);
}

export function tick() {
  for (const h of [state.current, state.next]) {
    if (!h || h.closed) continue;
    const left = msLeft(h);
    if (left <= 0) {
      if (h === state.current) {
        closeCurrent("Your lease on this task ran out, so it went back to the queue. Press n to get a task; anything you wrote is kept.");
      } else {
        setNext(null);
      }
    } else if (left < h.leaseMs / 2 && state.lastActivity > h.extendedAt && !h.extending) {
      extend(h);
    }
  }
  const current = state.current;
  if (current && !current.closed) {
    view.renderLease(msLeft(current) / 1000, false);
    if (msLeft(current) < 60000 && !state.warnedLeaseLow && current.leaseMs > 120000) {
      state.warnedLeaseLow = true;
      say("Your lease on this task ends in under a minute. A key, a click or a scroll keeps it.");
    }
  }
}

export function toggleDiff() {
  state.showDiff = !state.showDiff;
  if (state.current) view.renderTask(state.current.shown, state.showDiff);
}
