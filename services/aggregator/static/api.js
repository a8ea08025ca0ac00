// The analyst UI's calls to the aggregator (same origin): the admin token kept for this tab only, sent
// only in the Authorization header, and every failure turned into one plain sentence.

const TOKEN_KEY = "aggregator.admin_token";

export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
};

// A failed call: `kind` says what happened (unauthorized, closed, not_found, invalid, busy, network,
// server), `message` is a sentence a person can act on.
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
    return new ApiError("unauthorized", "The admin token was not accepted: it is not this pipeline's ADMIN_TOKEN. Sign in with the admin token.", status);
  }
  if (status === 403) {
    return new ApiError("closed", "The analyst view is closed: this aggregator runs without an ADMIN_TOKEN. Set ADMIN_TOKEN and restart it.", status);
  }
  if (status === 404) return new ApiError("not_found", "This app is not known to the aggregator (no interaction of it was taken in).", status);
  if (status === 422) return new ApiError("invalid", `The aggregator refused this request: ${detail || "a filter is not valid"}.`, status);
  if (status === 503) return new ApiError("busy", "The aggregator cannot reach its database right now. The charts keep their last data and try again shortly.", status);
  return new ApiError("server", `The aggregator failed (HTTP ${status}). The charts try again shortly.`, status);
}

// One GET: resolves to the JSON body, rejects with ApiError.
export async function get(path, params = {}, { token = session.token } = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value !== null && value !== undefined && value !== "") query.set(key, value);
  const url = query.toString() ? `${path}?${query}` : path;
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(url, { headers, credentials: "omit", cache: "no-store" });
  } catch {
    throw new ApiError("network", "Could not reach the aggregator. Check that it runs; the charts try again shortly.", 0);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) throw failure(response.status, data);
  return data;
}

export const api = {
  apps: (token) => get("/ui/api/apps", {}, { token }),
  leaderboard: (appId, domain) => get("/ui/api/leaderboard", { app_id: appId, domain }),
  approval: (appId, range) => get("/ui/api/approval", { app_id: appId, range }),
  flow: (appId, range) => get("/ui/api/flow", { app_id: appId, range }),
  queue: (appId) => get("/ui/api/queue", { app_id: appId }),
  deadLetters: (range) => get("/ui/api/dead-letters", { range }),
  alerts: (appId) => get("/ui/api/alerts", { app_id: appId }),
};
