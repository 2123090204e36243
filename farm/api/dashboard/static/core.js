// What every view of the dashboard shares: the element builder, the API client (every change
// carries the session's CSRF token), the signed-in user and small formatters. Views live in
// app.js and in modules of their own that add themselves to `views`.

const RANK = { viewer: 0, producer: 1, operator: 2 };
export const me = { name: null, role: null, csrf: null };
export const main = document.getElementById("main");
// what app.js does when the session has ended (a 401 on a call other than sign-in): it
// resolves once the user has signed in again, and the call is then made again
export const hooks = { signedOut: async () => {} };

// ---------- helpers ----------
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c.nodeType ? c : String(c));
  return el;
}

export class ApiError extends Error {
  constructor(status, detail, field) { super(detail); this.status = status; this.field = field; }
}

export async function api(path, options = {}, again = true) {
  const { method = "GET", json, form } = options;
  const headers = {};
  if (method !== "GET" && me.csrf) headers["X-CSRF-Token"] = me.csrf;
  let body;
  if (json !== undefined) { headers["Content-Type"] = "application/json"; body = JSON.stringify(json); }
  if (form) body = form;
  const r = await fetch(path, { method, headers, body, credentials: "same-origin" });
  if (r.status === 204) return null;
  const data = await r.json().catch(() => ({ detail: r.statusText }));
  if (!r.ok) {
    // the session ended (expiry, sign-out elsewhere, a password change): sign in again in
    // place, then make the call again, so nothing typed or uploaded is lost
    if (r.status === 401 && path !== "/auth/login" && again) { await hooks.signedOut(); return api(path, options, false); }
    // another tab signed in anew: this one's CSRF token is stale; take the session's and go on
    if (r.status === 403 && data.field === "csrf" && again) {
      const s = await api("/auth/session");
      if (s.user) { me.csrf = s.user.csrf_token; return api(path, options, false); }
    }
    throw new ApiError(r.status, data.detail || r.statusText, data.field);
  }
  return data;
}

export function toast(text, bad = false) {
  const box = document.getElementById("toast");
  const msg = h("div", { class: bad ? "msg bad" : "msg" }, text);
  box.append(msg);
  setTimeout(() => msg.remove(), 5000);
}

export const can = (role) => me.role && RANK[me.role] >= RANK[role];
export const mine = (take) => me.role === "operator" || (me.role === "producer" && take.producer === me.name);
export const badge = (state) => h("span", { class: `badge state-${state}` }, state);
export const pct = (p) => (p && p.total ? Math.round((100 * p.step) / p.total) : 0);
// a long take's windows stored so far: what a restarted worker resumes after
export const savedText = (p) => (p && p.windows ? `${p.windows_saved} of ${p.windows} windows stored` : "");
// a long take's progress is window i of n and step j of m within it (GET /takes: progress)
export const stepText = (p) => (!p || !p.total ? "starting…"
  : p.windows ? `window ${p.window} of ${p.windows} · step ${p.window_step} of ${p.window_steps}` : `step ${p.step} of ${p.total}`);
export const fmtTime = (iso) => (iso ? new Date(iso).toLocaleString() : "");

export function bar(progress, done) {
  const inner = h("span", { style: `width:${done ? 100 : pct(progress)}%` });
  return h("div", { class: done ? "bar done" : "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
                    "aria-valuenow": String(done ? 100 : pct(progress)), "aria-label": "render progress" }, inner);
}

export function setProgress(el, progress, done) {
  const v = done ? 100 : pct(progress);
  el.setAttribute("aria-valuenow", String(v));
  el.classList.toggle("done", !!done);
  el.firstChild.style.width = `${v}%`;
}

export function query() {
  const [, q = ""] = location.hash.split("?");
  return new URLSearchParams(q);
}

export const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

// route name -> async (arg, view) => void; app.js routes #/name/arg to views[name]
export const views = {};
