// The producer dashboard: one page, no build step. Talks only to the farm's REST API and
// its server-sent events; core.js holds what every view shares.

import { me, main, hooks, h, ApiError, api, toast, can, mine, badge, pct, stepText, savedText, fmtTime, bar, setProgress, query, plural, views } from "./core.js";
import { batchBar, costPanel } from "./batchbar.js";
import { consentPanel } from "./consent.js";
import { livePanel } from "./live.js";
import { attemptsPanel, inWords } from "./attempts.js";
import "./webhooks.js";
import { FILTERS, filterForm, filtered, countLine } from "./filters.js";
import "./compare.js";
import "./ops.js";
import "./nights.js";

let current = null;  // the view on screen: {el, closers, stale}

// ---------- routing ----------
// A view renders into its own element and registers what to close when the route changes;
// a view still awaiting when the route changes renders into a detached element and closes
// what it opens at once, so two views never stack.
function newView() {
  if (current) { current.stale = true; for (const close of current.closers) close(); }
  const view = { el: h("div"), closers: [], stale: false };
  view.onClose = (fn) => (view.stale ? fn() : view.closers.push(fn));
  current = view;
  return view;
}

// at most a few take fetches at a time, one per take: a big batch must not flood the API
const fetchTake = (() => {
  const pending = new Map(), waiting = [];
  let active = 0;
  const next = () => {
    while (active < 4 && waiting.length) {
      const [id, resolve, reject] = waiting.shift();
      active++;
      api(`/takes/${id}`).then(resolve, reject).finally(() => { active--; pending.delete(id); next(); });
    }
  };
  return (id) => {
    if (!pending.has(id)) pending.set(id, new Promise((resolve, reject) => { waiting.push([id, resolve, reject]); next(); }));
    return pending.get(id);
  };
})();

let shownName = null;  // the view on screen, to tell a new page from the same one redrawn
async function route() {
  const focusedId = document.activeElement && document.activeElement.id;
  const view = newView();
  if (!me.name) {
    const s = await api("/auth/session");
    if (s.user) Object.assign(me, { name: s.user.name, role: s.user.role, csrf: s.user.csrf_token });
  }
  if (view.stale) return;
  const header = document.querySelector(".top");
  if (!me.name) { header.hidden = true; return viewLogin(); }
  header.hidden = false;
  document.getElementById("who-name").textContent = me.name;
  document.getElementById("who-role").textContent = me.role;
  for (const el of document.querySelectorAll("[data-role]")) el.hidden = !can(el.dataset.role);
  const path = location.hash.replace(/^#\/?/, "").split("?")[0];
  const [name, arg] = path.split("/");
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === (name || "takes")) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  main.replaceChildren(view.el);
  try {
    await (views[name] || viewTakes)(arg, view);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
    view.el.append(h("p", { class: "error", role: "alert" }, e.message));
  }
  if (!view.stale) placeFocus(view, shownName === (name || "takes") ? focusedId : null);
  shownName = name || "takes";
}

// after a navigation the keyboard (and a screen reader) starts at the page's heading; the same
// page redrawn (a filter chosen) keeps it on the control it was on
function placeFocus(view, focusedId) {
  const again = focusedId && view.el.querySelector(`#${CSS.escape(focusedId)}`);
  const heading = view.el.querySelector("h1");
  const target = again || heading;
  if (!target || view.el.contains(document.activeElement)) return;  // the view placed it itself
  if (target === heading) heading.tabIndex = -1;
  target.focus({ preventScroll: target === heading });
}

Object.assign(views, { takes: viewTakes, take: viewTake, submit: viewSubmit });
hooks.signedOut = signInAgain;
window.addEventListener("hashchange", route);
document.getElementById("logout").addEventListener("click", async () => {
  await api("/auth/logout", { method: "POST" });
  Object.assign(me, { name: null, role: null, csrf: null });
  location.hash = "#/takes";
  route();
});

// ---------- sign in ----------
function viewLogin() {
  const err = h("p", { class: "error", role: "alert" });
  const form = h("form", { class: "panel login", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Sign in to the HuMo farm"),
    h("label", { for: "login-name" }, "Name"), h("input", { id: "login-name", name: "name", autocomplete: "username", required: true }),
    h("label", { for: "login-password" }, "Password"),
    h("input", { id: "login-password", name: "password", type: "password", autocomplete: "current-password", required: true }),
    err, h("button", { class: "primary", type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.textContent = "";
    try {
      const u = await api("/auth/login", { method: "POST", json: { name: form.name.value, password: form.password.value } });
      Object.assign(me, { name: u.name, role: u.role, csrf: u.csrf_token });
      route();
    } catch (e) { err.textContent = e.message; }
  });
  main.replaceChildren(form);
  form.querySelector("input").focus();
}

// the session ended mid-work: a sign-in dialog over the page, which stays as it was (typed
// prompts, chosen files); the call that found the session gone is made again once signed in
let signingIn = null;
function signInAgain() {
  if (signingIn) return signingIn;
  signingIn = new Promise((resolve) => {
    const was = me.name;
    const err = h("p", { class: "error", role: "alert" });
    const name = h("input", { id: "again-name", name: "name", autocomplete: "username", required: true, value: was || "" });
    const password = h("input", { id: "again-password", name: "password", type: "password", autocomplete: "current-password", required: true });
    const form = h("form", { method: "dialog" },
      h("h2", { id: "again-title" }, "Sign in again to carry on"),
      h("p", { id: "again-why" }, "Your session has ended: it expired, you signed out in another window, or your password changed. " +
        "Sign in and carry on where you were: what you typed and chose here is kept."),
      h("label", { for: "again-name" }, "Name"), name, h("label", { for: "again-password" }, "Password"), password,
      err, h("button", { class: "primary", type: "submit" }, "Sign in and carry on"));
    const dialog = h("dialog", { class: "panel again", "aria-labelledby": "again-title", "aria-describedby": "again-why" }, form);
    dialog.addEventListener("cancel", (ev) => ev.preventDefault());  // Escape would leave the call hanging
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      err.textContent = "";
      try {
        const u = await api("/auth/login", { method: "POST", json: { name: name.value, password: password.value } });
        Object.assign(me, { name: u.name, role: u.role, csrf: u.csrf_token });
        dialog.close();
        dialog.remove();
        signingIn = null;
        toast("Signed in again: carry on");
        resolve();
        if (u.name !== was) route();  // another person: the page is redrawn for them
      } catch (e) { err.textContent = e.status === 401 ? "That name and password do not match; try again." : e.message; }
    });
    document.body.append(dialog);
    dialog.showModal();
    (was ? password : name).focus();
  });
  return signingIn;
}

// a view's stream of take changes; one refused because the session ended asks to sign in
// again (as any call does) and opens again, so a page left open stays live
function live(view, url, onTake) {
  let events = null, closed = false;
  const open = () => {
    events = new EventSource(url);
    events.addEventListener("take", onTake);
    events.addEventListener("error", () => {
      if (closed || events.readyState !== EventSource.CLOSED) return;  // the browser reconnects by itself
      api("/auth/me").then(() => { if (!closed) open(); }, () => {});
    });
  };
  open();
  view.onClose(() => { closed = true; events.close(); });
}

// ---------- takes: batches, filters, live grid ----------
async function viewTakes(_arg, view) {
  const q = query();
  const batchId = q.get("batch");
  const batchList = h("ul", { class: "batches", "aria-label": "Batches" });
  // one block per page of cards: the browser skips laying out pages scrolled out of view
  const grid = h("div", { class: "pages", "aria-label": "Takes" });
  const top = h("div", { class: "grid", role: "list", "aria-label": "New takes" });  // takes that joined live
  grid.append(top);
  const more = h("button", { type: "button", hidden: true }, "Load more");
  const compareBtn = h("button", { type: "button", class: "primary", disabled: true, onclick: () => {
    location.hash = `#/compare/${[...picked].join(",")}`;
  } }, "Compare selected");
  const picked = new Set();
  const cards = new Map();
  let cursor = null;

  const filters = filterForm(q, batchId);
  const found = h("p", { class: "count", role: "status", "data-count": "" });

  const batch = batchId ? await api(`/batches/${batchId}?with_take_ids=false`) : null;
  view.el.append(h("div", { class: "layout" },
    h("aside", { class: "panel" }, h("h2", {}, "Batches"), h("p", {}, h("a", { href: "#/takes" }, "All takes")), batchList),
    h("section", { "aria-labelledby": "takes-title" }, h("h1", { id: "takes-title" }, batch ? batch.name : "All takes"),
      batch ? batchBar(batch, route) : null, filters, found,
      h("div", { class: "toolbar" }, compareBtn, h("span", { class: "hint" }, "Tick 2 to 4 finished takes to compare them side by side.")),
      grid, h("p", {}, more))));

  function card(t) {
    const done = t.state === "done";
    const thumb = t.outputs ? h("img", { src: t.outputs.thumbnail, alt: `thumbnail of take ${t.id.slice(0, 8)}`, loading: "lazy" })
      : h("span", { class: "placeholder" }, t.state === "running" ? stepText(t.progress) : t.state);
    const pick = h("input", { type: "checkbox", "aria-label": `compare take ${t.id.slice(0, 8)}`, disabled: !done, checked: picked.has(t.id) });
    pick.addEventListener("change", () => {
      if (pick.checked && picked.size >= 4) { pick.checked = false; toast("Compare up to 4 takes"); return; }
      pick.checked ? picked.add(t.id) : picked.delete(t.id);
      compareBtn.disabled = picked.size < 2;
      compareBtn.textContent = `Compare selected (${picked.size})`;
    });
    const el = h("article", { class: "card", role: "listitem", "data-take": t.id, "data-state": t.state },
      h("a", { class: "thumb", href: `#/take/${t.id}`, "aria-label": `open take ${t.id.slice(0, 8)}: ${t.params.prompt || ""}` }, thumb),
      h("label", { class: "pick" }, pick, h("span", { class: "sr-only" }, "compare")),
      t.selected_for_hero ? h("span", { class: "hero badge state-done", title: "selected for hero" }, "hero") : null,
      h("div", { class: "meta" }, badge(t.state), " ", h("span", { class: "hint" }, `seed ${t.params.seed} · ${t.checkpoint}${t.loras && t.loras.length ? ` · ${plural(t.loras.length, "LoRA")}` : ""}`),
        h("div", { class: "prompt" }, t.params.prompt || ""), bar(t.progress, done)));
    return el;
  }

  function put(t, page = top) {
    const el = card(t);
    const old = cards.get(t.id);
    if (old) old.replaceWith(el); else if (page === top) top.prepend(el); else page.append(el);
    cards.set(t.id, el);
    newest = Math.max(newest, Date.parse(t.created_at));
  }

  async function load() {
    const p = new URLSearchParams({ limit: "120" });
    if (batchId) p.set("batch_id", batchId);
    for (const k of FILTERS) if (q.get(k)) p.set(k, q.get(k));
    if (cursor) p.set("cursor", cursor);
    const page = await api(`/takes?${p}`);
    const block = h("div", { class: "grid page", role: "list" });
    grid.append(block);
    for (const t of page.data) put(t, block);
    if (page.total !== null && page.total !== undefined) found.textContent = countLine(page.total, q);
    cursor = page.next_cursor;
    more.hidden = !cursor;
    if (!cards.size) block.replaceWith(h("p", { class: "hint" }, "No takes match."));
  }
  more.addEventListener("click", load);
  // infinite scroll: the next page when "Load more" comes into view
  // the last entry is the button's current state (one callback may carry several changes)
  const io = new IntersectionObserver((entries) => { if (entries[entries.length - 1].isIntersecting && cursor) load(); });
  io.observe(more);
  view.onClose(() => io.disconnect());

  async function loadBatches() {
    const list = await api(`/batches?limit=60&with_take_ids=false${q.get("project") ? `&project=${encodeURIComponent(q.get("project"))}` : ""}`);
    batchList.replaceChildren(...list.map((b) => {
      const total = Object.values(b.counts).reduce((a, n) => a + n, 0), done = b.counts.done + b.counts.failed + b.counts.canceled;
      return h("li", {}, h("a", { href: `#/takes?batch=${b.id}`, "aria-current": b.id === batchId ? "true" : "false", "data-batch": b.id },
        h("div", {}, h("strong", {}, b.name), " ", h("span", { class: "hint" }, `${b.project} · ${b.producer} · ${done}/${total}`)),
        bar({ step: done, total }, b.finished)));
    }));
  }

  // live: one event stream; a take that changes is redrawn, a finished one fetched whole (URLs)
  let batchesDirty = false, added = 0, newest = 0;  // takes that joined live; beyond a page, reload to see more
  live(view, `/events${batchId ? `?batch_id=${batchId}` : ""}`, async (ev) => {
    const c = JSON.parse(ev.data);
    batchesDirty = true;
    const el = cards.get(c.id);
    if (!el) {  // a take submitted since the page loaded (by anyone) joins the top of an unfiltered grid
      const fresh = Date.parse(c.created_at) > newest;
      const unfiltered = !filtered(q);  // (and newest first)
      if (fresh && unfiltered && added++ < 120) put(await fetchTake(c.id), top);
      return;
    }
    if (c.state === "done" || c.state !== el.dataset.state) { put(await fetchTake(c.id)); return; }
    setProgress(el.querySelector(".bar"), c.progress, false);
    const ph = el.querySelector(".placeholder");
    if (ph && c.state === "running") ph.textContent = stepText(c.progress);
  });
  const refresh = setInterval(() => { if (batchesDirty) { batchesDirty = false; loadBatches(); } }, 2000);
  view.onClose(() => clearInterval(refresh));

  await Promise.all([load(), loadBatches()]);
}

// ---------- one take ----------
// where the clip would be: live progress while it can still come, else why there is none
async function noClip(t) {
  const p = t.progress, at = p && p.total ? ` at ${stepText(p)}` : "";
  const retry = mine(t) ? " Retry renders it again." : "";
  if (t.state === "canceled") return [h("p", {}, `Canceled${p.step ? at : " before it started"}: there is no clip.${retry}`)];
  if (t.state === "failed") return [h("p", {}, `Failed${at}: there is no clip.${retry}`)];
  if (t.state === "paused") return [h("p", {}, "Paused with its batch: it waits until the batch is resumed.")];
  const out = [bar(t.progress, false), h("p", { class: "hint" }, t.cancel_requested ? "Canceling: it stops after the current step."
    : "The clip appears here when the take is done.")];
  if (t.state === "queued") {
    const c = (await api("/checkpoints")).find((x) => x.name === t.checkpoint);
    if (c && !c.live_workers) out.push(h("p", { class: "warn", "data-waiting": "" },
      `Waiting, not failed: no live worker of the ${t.pool} pool holds ${t.checkpoint}. It starts when one does.`));
  }
  return out;
}

async function viewTake(id, view) {
  const t = await api(`/takes/${id}`);
  const batchOf = api(`/batches/${t.batch_id}?with_take_ids=false`);  // its name and project
  const done = t.state === "done";
  const loraInfo = await Promise.all((t.loras || []).map((u) => loraAsset(u.sha256)));
  const used = h("dl", { class: "used", "aria-label": "Render settings" });
  const usedNote = h("p", { class: "hint" }, done ? "" : "As asked; once the take is done, as the manifest records it.");
  drawUsed(used, t, loraInfo, null);
  const status = h("p", {}, badge(t.state), " ", t.state === "running" ? h("span", { "data-step": "" }, stepText(t.progress)) : "",
    t.state === "running" && t.progress.windows ? h("span", { class: "hint", "data-saved": "" }, ` · ${savedText(t.progress)}`) : null,
    t.selected_for_hero ? h("span", { class: "badge state-done" }, " selected for hero") : null,
    done && t.cancel_requested ? h("span", { class: "warn", "data-late": "" }, "Too late to cancel: it had finished its last step. The clip is kept.") : null);
  const player = done ? h("video", { src: t.outputs.clip, poster: t.outputs.thumbnail, controls: true, preload: "metadata",
    "aria-label": `clip of take ${id.slice(0, 8)}`, "data-clip": id })
    : h("div", { class: "panel no-clip" }, livePanel(t, view), ...await noClip(t));
  const act = (label, fn, show = true, primary = false) => (show ? h("button", { type: "button", class: primary ? "primary" : null, onclick: async () => {
    try { await fn(); } catch (e) { toast(e.message, true); }
  } }, label) : null);
  const manage = mine(t);
  const prio = h("input", { id: "prio", type: "number", min: "-1000", max: "1000", value: String(t.priority), style: "width:6rem" });
  const actions = h("div", { class: "actions", role: "group", "aria-label": "Take actions" },
    act(t.selected_for_hero ? "Unselect for hero" : "Select for hero", async () => {
      await api(`/takes/${id}/select`, { method: "POST", json: { selected: !t.selected_for_hero } });
      toast(t.selected_for_hero ? "Unselected" : "Selected for the nightly hero run");
      route();
    }, manage && done, true),
    act("Re-roll seed", async () => {
      const b = await api("/batches", { method: "POST", json: { project: (await batchOf).project, name: `re-roll of ${id.slice(0, 8)}`,
        takes: [takeBody(t, { seed: undefined })] } });
      location.hash = `#/take/${b.take_ids[0]}`;
    }, can("producer")),
    act("Re-render exactly", async () => {
      const b = await api(`/takes/${id}/rerender`, { method: "POST" });
      location.hash = `#/take/${b.take_ids[0]}`;
    }, can("producer") && done),
    can("producer") ? h("a", { class: "button", href: `#/submit?from=${id}` }, "Duplicate with edits") : null,
    act("Cancel", async () => {
      const after = await api(`/takes/${id}/cancel`, { method: "POST" });
      if (after.state === "running") toast("Cancel requested: it stops after the current step");
      route();
    }, manage && ["queued", "paused", "released", "running"].includes(t.state) && !t.cancel_requested),
    act("Retry", async () => { await api(`/takes/${id}/retry`, { method: "POST" }); route(); },
      manage && ["failed", "canceled"].includes(t.state)),
    manage && !["done", "failed", "canceled", "running"].includes(t.state) ? h("span", {}, h("label", { for: "prio", class: "sr-only" }, "Priority"), prio,
      act("Set priority", async () => { await api(`/takes/${id}/priority`, { method: "POST", json: { priority: Number(prio.value) } }); toast("Priority set"); })) : null);

  const attempts = attemptsPanel(t);
  const manifest = h("pre", { "aria-label": "manifest" }, done ? "loading…" : "The manifest is written when the take is done.");
  const back = h("a", { href: `#/takes?batch=${t.batch_id}` }, "← batch");
  batchOf.then((b) => { back.textContent = `← ${b.name}`; back.after(h("span", { class: "hint", "data-project": b.project }, ` · project ${b.project}`)); }, () => {});
  view.el.append(h("p", {}, back),
    h("h1", {}, `Take ${id.slice(0, 8)}`),
    h("div", { class: "take-page" },
      h("section", {}, player, status, actions,
        t.error_class ? h("p", { class: "error", role: "alert" }, inWords(t.error_class, t.error_message)) : null,
        h("h2", {}, "Attempts"), attempts),
      h("section", { class: "panel" }, h("h2", {}, "Prompt"), h("p", {}, t.params.prompt || ""),
        h("p", { class: "hint" }, describe(t)),
        h("h2", {}, "Render settings"), used, usedNote,
        h("h2", {}, "Consent"), consentPanel(t),
        h("h2", {}, "Manifest"), manifest)));
  if (done) {
    api(`/takes/${id}/manifest`).then((m) => {
      manifest.textContent = JSON.stringify(m, null, 2);
      drawUsed(used, t, loraInfo, m);
      usedNote.textContent = "As the manifest records the render.";
    });
  }
  if (!["done", "failed", "canceled"].includes(t.state)) {
    live(view, `/events?batch_id=${t.batch_id}`, (ev) => {
      const c = JSON.parse(ev.data);
      if (c.id !== id) return;
      if (c.state === "done" && c.cancel_requested) toast("Too late, it finished: the clip is kept");
      if (c.state !== t.state) route();
      else {
        const b = view.el.querySelector(".bar"), step = view.el.querySelector("[data-step]"), saved = view.el.querySelector("[data-saved]");
        if (b) setProgress(b, c.progress, false);
        if (step) step.textContent = stepText(c.progress);
        if (saved) saved.textContent = ` · ${savedText(c.progress)}`;
      }
    });
  }
}

// a take's preset, LoRAs and sampling: as asked (the take), or as rendered (its manifest)
function drawUsed(dl, t, loraInfo, m) {
  const req = (m && m.request) || {}, engine = (m && m.engine) || {}, p = t.params;
  const val = (k) => (req[k] !== undefined && req[k] !== null ? req[k] : p[k]);
  const unset = "the checkpoint's default";
  const sampler = engine.sampler || {}, passes = engine.passes || {};
  const steps = sampler.steps || val("steps"), guidance = passes.guidance || val("guidance"), each = passes.each;
  const timesteps = val("timesteps");
  const loras = t.loras || [];
  const rows = [
    ["Preset", t.preset || "none"],
    ["LoRAs", loras.length ? h("ol", { class: "lora-used" }, loras.map((u, i) => h("li", { "data-lora": u.sha256 },
      h("strong", { title: `sha256 ${u.sha256}` }, loraName(loraInfo[i], u.sha256)), ` · strength ${u.strength}`))) : "none"],
    ["Sampler", val("sampler") || unset],
    ["Steps", steps === undefined || steps === null ? unset : String(steps)],
    timesteps ? ["Timesteps", String(timesteps)] : ["Shift", val("shift") === undefined || val("shift") === null ? unset : String(val("shift"))],
    ["Guidance", guidance ? `${guidance}${each ? ` (${each} DiT pass${each === 1 ? "" : "es"} a step)` : ""}` : unset],
  ];
  dl.replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { "data-used": k.toLowerCase() }, v)]));
}

function describe(t) {
  const p = t.params, parts = [t.checkpoint, `${t.pool} pool`, `seed ${p.seed}`];
  if (p.width && p.height) parts.push(`${p.width}×${p.height}`);
  if (p.frames) parts.push(`${p.frames} frames`);
  if (p.steps) parts.push(`${p.steps} steps`);
  if (p.mode) parts.push(`mode ${p.mode}`);
  parts.push(`producer ${t.producer}`, `priority ${t.priority}`);
  if (t.parent_id) parts.push(`from take ${t.parent_id.slice(0, 8)}`);
  return parts.join(" · ");
}

function takeBody(t, overrides = {}) {
  const body = { checkpoint: t.checkpoint, image: t.image || undefined, audio: t.audio || undefined, preset: t.preset || undefined,
    loras: t.loras && t.loras.length ? t.loras.map((u) => ({ asset: u.sha256, strength: u.strength })) : undefined };
  // a take's params hold render parameters only (the API's definition): carry them all
  for (const [k, v] of Object.entries(t.params)) if (v !== undefined && v !== null) body[k] = v;
  return { ...body, ...overrides };
}

// ---------- LoRAs and presets, in producer words ----------
const MAX_LORAS = 8, MAX_STRENGTH = 10;  // the API's limits (models/request.py)
const FORMATS = { comfyui: "ComfyUI", kohya: "kohya", diffusers: "diffusers" };
const loraAssets = new Map();  // sha256 -> promise of its asset (null when it is not known here)
function loraAsset(sha) {
  if (!loraAssets.has(sha)) loraAssets.set(sha, api(`/assets/${sha}`).catch(() => null));
  return loraAssets.get(sha);
}
const loraName = (a, sha) => (a ? a.filename : `LoRA ${sha.slice(0, 12)}`);
function loraFacts(a) {
  const i = (a && a.info) || {}, parts = [];
  if (i.rank) parts.push(`rank ${i.rank}`);
  if (i.format) parts.push(`${FORMATS[i.format] || i.format} format`);
  if (i.modules) parts.push(plural(i.modules, "layer"));
  parts.push(i.bases && i.bases.length ? `fits ${i.bases.join(", ")}` : "fits no checkpoint here");
  return parts.join(" · ");
}

// what a preset sets, in a line: "draft: 6 steps, euler, guidance off, 1 LoRA"
function presetSummary(fields, labels = {}) {
  const f = { ...fields }, parts = [];
  const take = (k) => { const v = f[k]; delete f[k]; return v === null ? undefined : v; };
  const c = take("checkpoint"), pool = take("pool"), w = take("width"), ht = take("height");
  if (c) parts.push(c);
  if (pool) parts.push(`${pool} pool`);
  if (w && ht) parts.push(`${w}×${ht}`); else { if (w) parts.push(`width ${w}`); if (ht) parts.push(`height ${ht}`); }
  const frames = take("frames"), steps = take("steps"), sampler = take("sampler"), ts = take("timesteps");
  if (frames) parts.push(`${frames} frames`);
  if (steps) parts.push(plural(steps, "step"));
  if (sampler) parts.push(sampler);
  if (ts) parts.push(`timesteps ${ts}`);
  const shift = take("shift"), guidance = take("guidance"), loras = take("loras"), priority = take("priority");
  if (shift !== undefined) parts.push(`shift ${shift}`);
  if (guidance) parts.push(`guidance ${guidance}`);
  if (loras && loras.length) parts.push(plural(loras.length, "LoRA"));
  if (priority !== undefined) parts.push(`priority ${priority}`);
  for (const [k, v] of Object.entries(f)) {
    if (v === null || v === undefined) continue;
    const label = (labels[k] || k).toLowerCase();
    parts.push(typeof v === "string" && v.length > 30 ? `its own ${label}` : `${label} ${v}`);
  }
  return parts.join(", ") || "sets nothing";
}

// ---------- submit ----------
const PLACEHOLDERS = { timesteps: "from steps and shift" };

async function viewSubmit(_arg, view) {
  const from = query().get("from");
  const [checkpoints, base, loraList, presets] = await Promise.all([api("/checkpoints"), from ? api(`/takes/${from}`) : null,
    api("/loras"), api("/presets")]);
  // a duplicate stays in its take's project
  const baseProject = base ? (await api(`/batches/${base.batch_id}?with_take_ids=false`)).project : "default";
  // a take made from a preset keeps it; what the preset set stays the preset's (shown, not filled in)
  const presetsByName = new Map(presets.map((x) => [x.name, x.fields || {}]));
  const basePreset = (base && base.preset && presetsByName.get(base.preset)) || {};
  const same = (a, b) => a !== undefined && JSON.stringify(a) === JSON.stringify(b);
  const p = base ? Object.fromEntries(Object.entries(base.params).filter(([k, v]) => !same(basePreset[k], v))) : {};
  const baseLoras = (base && base.loras) || [];
  const presetStack = (fields) => (fields.loras || []).map((u) => ({ sha256: u.asset, strength: u.strength ?? 1 }));
  const ownLoras = same(presetStack(basePreset), baseLoras) ? [] : baseLoras;
  const ownCheckpoint = base && base.checkpoint !== basePreset.checkpoint ? base.checkpoint : "";
  const assets = { image: base ? base.image : null, audio: base ? base.audio : null };
  const field = (id, label, input, hint) => h("div", {}, h("label", { for: id }, label), input, hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null);
  const input = (id, attrs = {}) => h("input", { id, name: id, ...attrs });
  const err = h("p", { class: "error", role: "alert" });
  const confirmBox = h("div", { class: "confirm-box" });
  const imgPreview = h("div", { class: "preview" }), audPreview = h("div", { class: "preview" });
  const fitNote = h("div", { class: "fit", "aria-live": "polite" });

  async function upload(kind, file, preview) {
    const fd = new FormData();
    fd.append("file", file);
    preview.replaceChildren(h("span", { class: "hint" }, "uploading…"));
    try {
      const a = await api("/assets", { method: "POST", form: fd });
      if (a.kind !== kind) throw new Error(`${file.name} is ${a.kind === "image" ? "an image" : "audio"}, not ${kind}`);
      assets[kind] = a.sha256;
      if (kind === "audio") checkFit();
      const url = URL.createObjectURL(file);
      preview.replaceChildren(kind === "image" ? h("img", { src: url, alt: "reference image preview" })
        : h("audio", { src: url, controls: true, "aria-label": "audio preview" }),
        h("p", { class: "hint" }, `${a.filename} · ${a.sha256.slice(0, 12)}${a.info && a.info.seconds ? ` · ${a.info.seconds.toFixed(1)} s` : ""}`));
    } catch (e) { assets[kind] = null; preview.replaceChildren(h("span", { class: "error" }, e.message)); }
  }
  const imageIn = input("image", { type: "file", accept: "image/*", onchange: (ev) => ev.target.files[0] && upload("image", ev.target.files[0], imgPreview) });
  const audioIn = input("audio", { type: "file", accept: "audio/*,.wav,.mp3,.flac,.ogg,.m4a", onchange: (ev) => ev.target.files[0] && upload("audio", ev.target.files[0], audPreview) });
  if (assets.image) imgPreview.append(h("p", { class: "hint" }, `using image ${assets.image.slice(0, 12)} from take ${from.slice(0, 8)}`));
  if (assets.audio) audPreview.append(h("p", { class: "hint" }, `using audio ${assets.audio.slice(0, 12)} from take ${from.slice(0, 8)}`));

  // a preset: named take settings operators configure; what the form sets beats it (the API's rule)
  const presetSel = presets.length ? h("select", { id: "preset", name: "preset", "aria-describedby": "preset-hint" },
    h("option", { value: "" }, "none"), presets.map((x) => h("option", { value: x.name, selected: !!base && base.preset === x.name }, x.name))) : null;
  const presetHint = h("p", { class: "hint", id: "preset-hint", "aria-live": "polite" });
  const presetFields = () => (presetSel && presetsByName.get(presetSel.value)) || {};

  // the checkpoints live workers hold come first, and the first of them is chosen: a take of
  // one nobody holds would wait, queued (the form says so)
  checkpoints.sort((a, b) => (b.live_workers > 0) - (a.live_workers > 0));
  const firstLive = ownCheckpoint || (checkpoints.find((c) => c.live_workers > 0) || {}).name;
  const ckpt = h("select", { id: "checkpoint", name: "checkpoint", "aria-describedby": "checkpoint-warn" }, checkpoints.map((c) =>
    h("option", { value: c.name, selected: firstLive === c.name },
      `${c.name} (${c.pool}, ${c.width}×${c.height})${c.live_workers ? "" : " · no live worker"}`)));
  const ckptWarn = h("p", { class: "warn", id: "checkpoint-warn", hidden: true, "aria-live": "polite" });
  function drawCkptWarn() {
    const c = checkpoints.find((x) => x.name === ckptName()), live = checkpoints.filter((x) => x.live_workers > 0).map((x) => x.name);
    ckptWarn.hidden = !c || c.live_workers > 0;
    if (c && !c.live_workers) ckptWarn.textContent = `No live worker holds ${c.name}: its takes would wait, queued, until one starts.` +
      (live.length ? ` Live workers hold ${live.join(", ")}.` : " No worker is running at all.");
  }
  // a preset that names a checkpoint shows it here as an option of its own, which choosing another overrides
  const presetCkpt = h("option", { value: "" });
  let ckptChosen = !!ownCheckpoint;  // the producer (or the take duplicated) chose it: a preset's does not replace it
  const ckptName = () => ckpt.value || presetFields().checkpoint || checkpoints[0].name;
  // every render parameter but the sweep's axes (prompt, seed), described by GET /checkpoints
  const described = () => (checkpoints.find((c) => c.name === ckptName()) || checkpoints[0]).params
    .filter((d) => d.name !== "prompt" && d.name !== "seed");
  const labels = Object.fromEntries(checkpoints[0].params.map((d) => [d.name, d.label]));
  const fromPreset = (d) => { const v = presetFields()[d.name]; return v === undefined || v === null ? null : `preset: ${v}`; };
  const shown = (d) => fromPreset(d) || PLACEHOLDERS[d.name] || (d.type === "string" ? "the checkpoint's default" : `default ${d.default}`);
  const unsetChoice = (d) => fromPreset(d) || (d.name === "mode" ? "from the inputs" : d.default !== null && d.default !== undefined ? `default (${d.default})` : "default");
  const paramInput = (d) => {
    const value = p[d.name] !== undefined && p[d.name] !== null ? String(p[d.name]) : "";
    if (d.choices) return h("select", { id: d.name, name: d.name, title: d.help }, h("option", { value: "" }, unsetChoice(d)),
      d.choices.map((c) => h("option", { value: c, selected: value === c }, c)));
    const attrs = { id: d.name, name: d.name, value, placeholder: shown(d), title: d.help };
    if (d.type !== "string") Object.assign(attrs, { type: "number", step: d.type === "integer" ? "1" : "any" },
      d.minimum !== undefined ? { min: String(d.minimum) } : {}, d.maximum !== undefined ? { max: String(d.maximum) } : {});
    return h("input", attrs);
  };
  const paramField = (d) => field(d.name, d.label, paramInput(d));

  // LoRAs: one stack, in order, on every take of the batch
  let known = new Map(loraList.map((a) => [a.sha256, a]));  // newest first, as GET /loras lists them
  const wanted = [...baseLoras, ...presets.flatMap((x) => presetStack(x.fields || {}))].map((u) => u.sha256);
  const missing = [...new Set(wanted)].filter((s) => !known.has(s));
  for (const a of await Promise.all(missing.map(loraAsset))) if (a) known.set(a.sha256, a);
  const stack = ownLoras.map((u) => ({ sha: u.sha256, strength: String(u.strength) }));
  const stackList = h("ol", { class: "lora-stack", "aria-label": "LoRA stack, applied in this order" });
  const stackNote = h("p", { class: "hint" });
  const loraStatus = h("div", { class: "preview", "aria-live": "polite" });
  const pick = h("select", { id: "lora_pick", name: "lora_pick" });
  const addBtn = h("button", { type: "button", onclick: () => add(pick.value, true) }, "Add LoRA");
  const loraFile = input("lora_file", { type: "file", accept: ".safetensors", "aria-describedby": "lora_file-hint",
    onchange: (ev) => ev.target.files[0] && uploadLora(ev.target.files[0]) });

  function fillPick() {
    const list = [...known.values()], chosen = pick.value;
    pick.replaceChildren(...(list.length ? list.map((a) => h("option", { value: a.sha256, selected: a.sha256 === chosen }, `${a.filename} — ${loraFacts(a)}`))
      : [h("option", { value: "" }, "none uploaded yet")]));
    pick.disabled = !list.length;
    addBtn.disabled = !list.length || stack.length >= MAX_LORAS;
  }

  function drawStack() {
    const checkpoint = ckptName();
    stackList.replaceChildren(...stack.map((u, i) => {
      const a = known.get(u.sha), name = loraName(a, u.sha), bases = (a && a.info && a.info.bases) || [];
      const fits = !a || bases.includes(checkpoint);
      const ids = { strength: `lora-strength-${i}`, facts: `lora-facts-${i}`, fit: `lora-fit-${i}` };
      const strength = h("input", { id: ids.strength, name: ids.strength, type: "number", step: "0.05", min: String(-MAX_STRENGTH),
        max: String(MAX_STRENGTH), value: u.strength, "aria-describedby": fits ? ids.facts : `${ids.facts} ${ids.fit}` });
      strength.addEventListener("input", () => { u.strength = strength.value; });
      return h("li", { "data-lora": u.sha, class: fits ? null : "misfit" },
        h("span", { class: "order", "aria-hidden": "true" }, String(i + 1)),
        h("div", {}, h("strong", {}, name), h("div", { class: "hint", id: ids.facts }, a ? loraFacts(a) : `sha256 ${u.sha.slice(0, 12)}…, not in the list of uploaded LoRAs`)),
        h("div", {}, h("label", { for: ids.strength }, "Strength", h("span", { class: "sr-only" }, ` of LoRA ${i + 1}, ${name}`)), strength),
        h("button", { type: "button", class: "remove", "aria-label": `Remove LoRA ${i + 1}, ${name}`, onclick: () => remove(i) }, "Remove"),
        fits ? null : h("p", { class: "warn", id: ids.fit },
          `Made for ${bases.join(", ") || "another model"}, not ${checkpoint}: the farm would refuse this batch. ` +
          (bases.length ? `Choose ${bases.length === 1 ? "the" : "a"} ${bases.join(" or ")} checkpoint, or remove this LoRA.` : "Remove this LoRA.")));
    }));
    const preset = presetStack(presetFields());
    const theirs = preset.map((u) => `${loraName(known.get(u.sha256), u.sha256)} at strength ${u.strength}`).join(", then ");
    stackNote.textContent = stack.length
      ? `${plural(stack.length, "LoRA")} on every take, first to last${preset.length ? `, in place of the preset's ${plural(preset.length, "LoRA")}` : ""}.` +
        (stack.length >= MAX_LORAS ? ` At most ${MAX_LORAS} stack on one take.` : "")
      : preset.length ? `None added: the preset's ${preset.length === 1 ? "LoRA applies" : "LoRAs apply"}: ${theirs}.` : "None: the checkpoint renders as it is.";
    addBtn.disabled = pick.disabled || stack.length >= MAX_LORAS;
    drawPresetHint();
  }

  function add(sha, focus) {
    if (!sha) return false;
    if (stack.length >= MAX_LORAS) {
      loraStatus.replaceChildren(h("span", { class: "error" }, `At most ${MAX_LORAS} LoRAs stack on one take: remove one first.`));
      return false;
    }
    stack.push({ sha, strength: "1" });
    drawStack();
    if (focus) stackList.querySelector(`#lora-strength-${stack.length - 1}`).focus();
    return true;
  }

  function remove(i) {
    stack.splice(i, 1);
    drawStack();
    const buttons = stackList.querySelectorAll("button.remove");
    (buttons[Math.min(i, buttons.length - 1)] || (pick.disabled ? loraFile : pick)).focus();
  }

  async function uploadLora(file) {
    const fd = new FormData();
    fd.append("file", file);
    loraStatus.replaceChildren(h("span", { class: "hint" }, `uploading ${file.name}…`));
    try {
      const a = await api("/loras", { method: "POST", form: fd });
      known = new Map([[a.sha256, a], ...[...known].filter(([sha]) => sha !== a.sha256)]);
      fillPick();
      if (add(a.sha256, false)) {
        loraStatus.replaceChildren(h("span", { class: "hint" },
          `${a.created ? "Uploaded" : "Already uploaded:"} ${a.filename} · ${a.sha256.slice(0, 12)}, added as LoRA ${stack.length}`));
      }
    } catch (e) { loraStatus.replaceChildren(h("span", { class: "error" }, `${file.name}: ${e.message}`)); }
    loraFile.value = "";
  }

  // the preset's line: what it sets, and which of those the form overrides
  function yours(k) {
    if (k === "checkpoint") return ckpt.value !== "";
    if (k === "loras") return stack.length > 0;
    if (k === "image" || k === "audio") return !!assets[k];
    const el = form.querySelector(`#${CSS.escape(k)}`);
    return !!el && el.value !== "";
  }
  function drawPresetHint() {
    if (!presetSel) return;
    const name = presetSel.value, f = presetFields();
    if (!name) { presetHint.textContent = "No preset: the checkpoint's defaults, under what you set here."; return; }
    const over = Object.keys(f).filter((k) => f[k] !== null && yours(k)).map((k) => (k === "loras" ? "LoRAs" : (labels[k] || k).toLowerCase()));
    presetHint.textContent = `${name}: ${presetSummary(f, labels)}.` +
      (over.length ? ` Yours replace its ${over.join(", ")}.` : " Whatever you set here replaces the preset's.");
  }

  function syncPresetCheckpoint() {
    const c = presetFields().checkpoint;
    if (c && checkpoints.some((x) => x.name === c)) {
      presetCkpt.textContent = `${c} (from the preset)`;
      presetCkpt.dataset.checkpoint = c;
      if (!presetCkpt.parentNode) ckpt.prepend(presetCkpt);
      if (!ckptChosen) ckpt.value = "";
    } else if (presetCkpt.parentNode) {
      if (ckpt.value === "") ckpt.value = presetCkpt.dataset.checkpoint;  // what was shown stays chosen
      presetCkpt.remove();
    }
  }

  // the checkpoint or preset changed: defaults, limits, the preset's values and LoRA fits follow
  function refresh() {
    for (const d of described()) {
      const el = form.querySelector(`#${CSS.escape(d.name)}`);
      if (el && el.tagName === "INPUT") el.placeholder = shown(d);
      if (el && el.tagName === "INPUT" && d.maximum !== undefined) el.max = String(d.maximum);
      if (el && el.tagName === "SELECT") el.options[0].textContent = unsetChoice(d);
    }
    drawStack();
    drawCkptWarn();
  }
  ckpt.addEventListener("change", () => { ckptChosen = ckpt.value !== ""; refresh(); });
  if (presetSel) presetSel.addEventListener("change", () => { syncPresetCheckpoint(); refresh(); });

  const form = h("form", { class: "panel", "aria-labelledby": "submit-title", novalidate: true },
    h("div", { class: "row" }, field("project", "Project", input("project", { value: baseProject, required: true })),
      field("name", "Batch name", input("name", { placeholder: "optional" }))),
    field("prompt", "Prompt", h("textarea", { id: "prompt", name: "prompt", rows: "3", required: true, "aria-describedby": "prompt-hint" }, p.prompt || ""),
      "One prompt per line: several lines make a sweep (every prompt × every seed)."),
    presetSel ? h("div", { class: "preset" }, h("label", { for: "preset" }, "Preset"), presetSel, presetHint) : null,
    h("div", { class: "row" },
      field("seeds", "Seeds", input("seeds", { value: base && p.seed !== undefined ? String(p.seed) : "", placeholder: "e.g. 1, 2, 3", "aria-describedby": "seeds-hint" }),
        "A list, or leave empty and give a count."),
      field("seed_count", "Random seeds", input("seed_count", { type: "number", min: "1", max: "10000", value: base ? "" : "4" })),
      h("div", {}, h("label", { for: "checkpoint" }, "Checkpoint"), ckpt, ckptWarn), described().filter((d) => d.choices && !d.advanced).map(paramField)),
    h("div", { class: "row" }, described().filter((d) => !d.advanced && d.type !== "string").map(paramField)),
    described().filter((d) => !d.advanced && d.type === "string" && !d.choices).map(paramField),
    h("details", {}, h("summary", {}, "More settings"),
      h("div", { class: "row more" }, described().filter((d) => d.advanced).map(paramField))),
    h("div", { class: "row" }, h("div", {}, h("label", { for: "image" }, "Reference image"), imageIn, imgPreview),
      h("div", {}, h("label", { for: "audio" }, "Audio"), audioIn, audPreview, fitNote)),
    h("fieldset", { class: "loras", "aria-describedby": "loras-hint" }, h("legend", {}, "LoRAs"),
      h("p", { class: "hint", id: "loras-hint" }, "Stacked on the model in this order. Strength 1 applies a LoRA as it was trained, 0 not at all; negative values push the other way."),
      stackList, stackNote,
      h("div", { class: "row" },
        h("div", {}, h("label", { for: "lora_file" }, "Upload a LoRA"), loraFile,
          h("p", { class: "hint", id: "lora_file-hint" }, ".safetensors from ComfyUI, kohya or diffusers; checked against every checkpoint as it uploads."), loraStatus),
        h("div", {}, h("label", { for: "lora_pick" }, "Or add an uploaded LoRA"), h("div", { class: "inline" }, pick, addBtn)))),
    err, h("p", {}, h("button", { type: "submit", class: "primary" }, "Submit batch")), confirmBox);
  form.addEventListener("input", drawPresetHint);
  form.addEventListener("change", drawPresetHint);
  form.addEventListener("input", checkFit);
  form.addEventListener("change", checkFit);

  // what every take of the batch shares, as the form says it
  function formDefaults() {
    const defaults = { checkpoint: ckpt.value || undefined, preset: presetSel && presetSel.value ? presetSel.value : undefined,
      image: assets.image || undefined, audio: assets.audio || undefined };
    if (stack.length) defaults.loras = stack.map((u) => ({ asset: u.sha, strength: Number(u.strength) }));
    for (const d of described()) {
      const v = form.querySelector(`#${CSS.escape(d.name)}`).value;
      if (v !== "") defaults[d.name] = d.type === "string" ? v : Number(v);
    }
    return defaults;
  }

  // audio longer than the clip: said as soon as both are known, with the frames that cover it
  // (the farm's estimate decides, for one take of the form's settings)
  let fitTimer = null, fitAsked = 0;
  function checkFit() { clearTimeout(fitTimer); fitTimer = setTimeout(drawFit, 300); }
  async function drawFit() {
    const asked = ++fitAsked;
    if (!assets.audio) { fitNote.replaceChildren(); return; }
    let cost;
    try {
      cost = await api("/batches/estimate", { method: "POST", json: { defaults: formDefaults(), takes: [{ prompt: "audio check", seed: 0 }] } });
    } catch { cost = { audio: [] }; }  // the form is not complete yet: the submit says what is wrong
    if (asked !== fitAsked) return;  // a newer check is on its way
    fitNote.replaceChildren(...cost.audio.map((f) => h("div", { class: "warn", "data-fit": "" },
      `The audio ${f.filename} is ${f.audio_seconds.toFixed(1)} s but the clip is ${f.clip_seconds.toFixed(2)} s (${f.frames} frames): only that much of it is heard. `,
      f.cover_frames ? h("button", { type: "button", onclick: () => {
        form.querySelector("#frames").value = String(f.cover_frames);
        checkFit();
        toast(`Frames set to ${f.cover_frames}: the clip covers the audio`);
      } }, `Use ${f.cover_frames} frames`) : f.cannot)));
  }
  fillPick();
  syncPresetCheckpoint();
  refresh();

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.textContent = "";
    const prompts = form.prompt.value.split("\n").map((s) => s.trim()).filter(Boolean);
    const seeds = form.seeds.value.split(/[\s,]+/).filter(Boolean).map(Number);
    if (!prompts.length) { err.textContent = "prompt: write at least one prompt"; form.prompt.focus(); return; }
    if (seeds.some((s) => !Number.isInteger(s) || s < 0)) { err.textContent = "seeds: whole numbers ≥ 0, separated by commas"; form.seeds.focus(); return; }
    for (const [i, u] of stack.entries()) {
      const s = Number(u.strength);
      if (u.strength.trim() === "" || !Number.isFinite(s) || Math.abs(s) > MAX_STRENGTH) {
        err.textContent = `LoRA ${i + 1} strength: a number from -${MAX_STRENGTH} to ${MAX_STRENGTH} (1 applies it as trained, 0 not at all)`;
        stackList.querySelector(`#lora-strength-${i}`).focus();
        return;
      }
    }
    const defaults = formDefaults();
    const body = { project: form.project.value || "default", name: form.name.value || undefined, defaults,
      sweep: { prompts, ...(seeds.length ? { seeds } : { seed_count: Number(form.seed_count.value || 1) }) } };
    const send = async () => {
      const b = await api("/batches", { method: "POST", json: body });
      toast(`Batch submitted: ${plural(b.take_ids.length, "take")}${b.warnings.length ? `. ${b.warnings.join(" ")}` : ""}`);
      location.hash = `#/takes?batch=${b.id}`;
    };
    try {
      // a big batch is shown with its size and GPU time, and confirmed first (with what would
      // keep its takes waiting); a small one is sent, and what would keep it waiting is said after
      const cost = await api("/batches/estimate", { method: "POST", json: body });
      if (!cost.confirm) return await send();
      const back = () => { confirmBox.replaceChildren(); form.querySelector("button[type=submit]").focus(); };
      const { panel, focus } = costPanel(cost, () => send().catch((e) => { back(); err.textContent = e.message; }), back);
      confirmBox.replaceChildren(panel);
      focus();
    } catch (e) {
      err.textContent = e.message;
      const lora = e.field && /loras(?:\[(\d+)\]|\.(\d+))/.exec(e.field);
      const el = lora ? stackList.querySelector(`#lora-strength-${lora[1] || lora[2]}`)
        : e.field && form.querySelector(`#${CSS.escape(e.field.split(".").pop())}`);
      if (el) el.focus();
    }
  });

  const fileErr = h("p", { class: "error", role: "alert" });
  const fileIn = input("batch_file", { type: "file", accept: ".csv,.yaml,.yml,text/csv", "aria-describedby": "batch_file-hint" });
  const mediaIn = input("batch_media", { type: "file", multiple: true, accept: "image/*,audio/*,.wav,.mp3,.flac,.ogg,.m4a",
    "aria-describedby": "batch_media-hint" });
  const mediaList = h("p", { class: "hint", "aria-live": "polite" });
  const fileConfirm = h("div", { class: "confirm-box" });
  mediaIn.addEventListener("change", () => {
    mediaList.textContent = mediaIn.files.length ? `With it: ${[...mediaIn.files].map((f) => f.name).join(", ")}` : "";
  });
  const fileForm = h("form", { class: "panel", "aria-label": "Submit a batch file" },
    h("h2", {}, "Or submit a CSV or YAML file"),
    h("div", { class: "row" },
      field("batch_file", "Batch file", fileIn, "CSV: a header row of take fields (prompt, seed, checkpoint, mode, image, audio …), one take per row. YAML: the `farm submit` format."),
      h("div", {}, h("label", { for: "batch_media" }, "The images and audio it names"), mediaIn,
        h("p", { class: "hint", id: "batch_media-hint" }, "Choose the files the batch names (media/portrait.png is portrait.png): they upload with it. " +
          "Media uploaded before can be named by sha256, or its first 6 or more characters."), mediaList)),
    fileErr, h("button", { type: "submit" }, "Submit file"), fileConfirm);
  fileForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    fileErr.textContent = "";
    if (!fileIn.files[0]) { fileErr.textContent = "batch_file: choose a file"; return; }
    const upload = () => {
      const fd = new FormData();
      fd.append("file", fileIn.files[0]);
      for (const f of mediaIn.files) fd.append("media", f);
      return fd;
    };
    const send = async () => {
      const b = await api("/batches/file", { method: "POST", form: upload() });
      toast(`Batch submitted: ${plural(b.take_ids.length, "take")}${b.warnings.length ? `. ${b.warnings.join(" ")}` : ""}`);
      location.hash = `#/takes?batch=${b.id}`;
    };
    try {
      // as the form's: a big batch is shown with its size and GPU time and confirmed first
      const cost = await api("/batches/file/estimate", { method: "POST", form: upload() });
      if (!cost.confirm) return await send();
      const back = () => { fileConfirm.replaceChildren(); fileForm.querySelector("button[type=submit]").focus(); };
      const { panel, focus } = costPanel(cost, () => send().catch((e) => { back(); fileErr.textContent = e.message; }), back, "file-cost");
      fileConfirm.replaceChildren(panel);
      focus();
    } catch (e) { fileErr.textContent = e.message; }
  });
  view.el.append(h("h1", { id: "submit-title" }, from ? `New batch from take ${from.slice(0, 8)}` : "Submit a batch"), form, h("br"), fileForm);
}

route();
