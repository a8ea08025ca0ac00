// The annotator UI's calls to feedback (same origin): the token kept for this tab only, and every
// failure turned into one plain sentence. The token travels only in the Authorization header.

const TOKEN_KEY = "feedback.annotator_token";

export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
};

// A failed call: `kind` says what happened (unauthorized, forbidden, lease_lost, conflict, invalid,
// busy, network, server), `message` is a sentence a person can act on.
export class ApiError extends Error {
  constructor(kind, message, status) {
    super(message);
    this.kind = kind;
    this.status = status;
  }
}

function detailText(body) {
  if (!body) return "";
  if (typeof body.detail === "string") return body.detail;
  if (Array.isArray(body.detail)) return body.detail.map((d) => d.msg).filter(Boolean).join("; ");
  return "";
}

function failure(status, body) {
  const detail = detailText(body);
  if (status === 401) {
    return new ApiError("unauthorized", "Your token was not accepted: it is wrong, or it was revoked. Sign in with a valid token.", status);
  }
  if (status === 403) {
    if (/another annotator/.test(detail)) {
      return new ApiError("forbidden", "Another annotator holds this task now. Press n to get a task.", status);
    }
    return new ApiError("forbidden", "Your token does not open this domain or task. Press n to get a task of your domains.", status);
  }
  if (status === 409) {
    if (/lease expired|no lease/.test(detail)) {
      return new ApiError("lease_lost", "Your lease on this task ran out, so it went back to the queue and your verdict was not saved. Press n to get a task; anything you wrote is kept.", status);
    }
    if (/already judged/.test(detail)) {
      return new ApiError("conflict", "You already judged this task. Press n to get the next one.", status);
    }
    return new ApiError("conflict", "This task was closed meanwhile (decided by other reviewers or withdrawn). Press n to get the next one.", status);
  }
  if (status === 404) return new ApiError("conflict", "This task no longer exists. Press n to get the next one.", status);
  if (status === 422) return new ApiError("invalid", `The server refused this: ${detail || "the request does not fit the task"}.`, status);
  if (status === 413) return new ApiError("invalid", "That text is too long for the server. Shorten it and submit again.", status);
  if (status === 503) return new ApiError("busy", "The server cannot reach its database or broker right now. Wait a moment and try again; nothing you typed is lost.", status);
  return new ApiError("server", `The server failed (HTTP ${status}). Try again in a moment; nothing you typed is lost.`, status);
}

// One call: resolves to {status, data, date} (data null for 204), rejects with ApiError.
export async function call(method, path, body, { token = session.token, keepalive = false } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
      keepalive,
    });
  } catch {
    throw new ApiError("network", "Could not reach the server. Check your connection and try again; nothing you typed is lost.", 0);
  }
  let data = null;
  if (response.status !== 204) {
    try {
      data = await response.json();
    } catch {
      data = null;
    }
  }
  if (!response.ok) throw failure(response.status, data);
  return { status: response.status, data, date: response.headers.get("Date") };
}

export const api = {
  me: (token) => call("GET", "/ui/api/me", undefined, { token }),
  lease: (domain) => call("POST", "/ui/api/lease", domain ? { domain } : {}),
  guidelines: (domain) => call("GET", `/ui/api/guidelines/${encodeURIComponent(domain)}`),
  stats: (dayStart) => call("GET", `/v1/tasks/stats?day_start=${encodeURIComponent(dayStart)}`),
  verdict: (taskId, body) => call("POST", `/v1/tasks/${encodeURIComponent(taskId)}/verdict`, body),
  extend: (taskId) => call("POST", `/v1/tasks/${encodeURIComponent(taskId)}/extend`),
  skip: (taskId) => call("POST", `/v1/tasks/${encodeURIComponent(taskId)}/skip`),
  // On tab close: keepalive lets the request outlive the page.
  release: (taskId, keepalive = false) => call("POST", `/v1/tasks/${encodeURIComponent(taskId)}/release`, undefined, { keepalive }),
};
