// Pools and workers, for operators at work: each pool's slots and queue, a warning when a pool
// has takes waiting and no live worker, every worker with its state, and drain / resume
// (POST /workers/{id}/drain|resume). Redrawn every few seconds, keeping the keyboard's place.
import { h, api, toast, can, plural, views } from "./core.js";

const REFRESH_MS = 5000;
const STATE_BADGE = { idle: "done", busy: "running", draining: "paused", dead: "failed", stopped: "canceled" };
const STATE_WORDS = { idle: "waiting for a take", busy: "rendering", draining: "draining: finishes its take, claims no new one",
  dead: "silent: no heartbeat", stopped: "stopped after draining" };

function age(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  return `${(seconds / 3600).toFixed(1)} h ago`;
}

// a pool with takes waiting and nobody to render them: said first, with the fix
function warnings(pools) {
  return Object.entries(pools).filter(([, p]) => p.queued > 0 && p.workers === 0).map(([name, p]) =>
    h("p", { class: "warn", role: "alert", "data-pool-warning": name },
      `${plural(p.queued, "take")} wait${p.queued === 1 ? "s" : ""} in the ${name} pool and no live worker serves it. ` +
      `Start one (\`farm worker --pool ${name}\`) or resume a drained one below.`));
}

async function viewPools(_arg, view) {
  const body = h("div");
  view.el.append(h("h1", { tabindex: "-1" }, "Pools and workers"), body);
  const operator = can("operator");

  async function act(w, action) {
    try {
      const out = await api(`/workers/${encodeURIComponent(w.id)}/${action}`, { method: "POST" });
      toast(out.detail);
    } catch (e) { toast(e.message, true); }
    await draw();
    // the keyboard stays on the worker: its other action takes the place of the one pressed
    const next = body.querySelector(`[data-key="${CSS.escape(`${action === "drain" ? "resume" : "drain"}:${w.id}`)}"]`);
    if (next) next.focus();
  }
  function controls(w) {
    if (!operator) return null;
    const key = (a) => `${a}:${w.id}`;
    if (w.state === "idle" || w.state === "busy") {
      return h("button", { type: "button", "data-key": key("drain"), "aria-label": `Drain worker ${w.id}`, onclick: () => act(w, "drain") }, "Drain");
    }
    if (w.state === "draining") {
      return h("button", { type: "button", "data-key": key("resume"), "aria-label": `Resume worker ${w.id}`, onclick: () => act(w, "resume") }, "Resume");
    }
    return h("span", { class: "hint" }, "—");
  }

  // what a worker's DiT holds: takes of that stack start on it with no LoRA switch
  const holds = (held) => (!held ? "—" : !held.loras.length ? held.checkpoint
    : h("span", { title: held.loras.map((u) => `${u.sha256} @ ${u.strength}`).join("\n") },
      `${held.checkpoint} + ${held.loras.map((u) => `${u.sha256.slice(0, 8)} @${u.strength}`).join(", ")}`));

  async function draw() {
    const [pools, workers] = await Promise.all([api("/pools"), api("/workers?include_stopped=true")]);
    const shown = workers.filter((w) => w.state !== "stopped" || w.heartbeat_age < 3600);
    const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.key : null;
    body.replaceChildren(...warnings(pools),
      h("div", { class: "scroll" }, h("table", { class: "panel" }, h("caption", { class: "sr-only" }, "Pools"),
        h("thead", {}, h("tr", {}, ["pool", "live slots", "queued", "released", "running", "GPU s (24 h)"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, Object.entries(pools).map(([name, p]) => h("tr", { "data-pool": name }, h("th", { scope: "row" }, name), h("td", {}, p.workers),
          h("td", {}, p.queued), h("td", {}, p.released), h("td", {}, p.running), h("td", {}, p.gpu_seconds_24h.toFixed(0))))))),
      h("h2", {}, "Workers"),
      shown.length ? h("div", { class: "scroll" }, h("table", { class: "panel workers" }, h("caption", { class: "sr-only" }, "Workers"),
        h("thead", {}, h("tr", {}, ["worker", "pool", "GPU", "state", "heartbeat", "rendering", "holds", "GPU s (24 h)", operator ? "action" : null]
          .filter(Boolean).map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, shown.map((w) => h("tr", { "data-worker": w.id, "data-state": w.state },
          h("td", { class: "wrap" }, w.id), h("td", {}, w.pool), h("td", {}, w.gpu),
          h("td", {}, h("span", { class: `badge state-${STATE_BADGE[w.state] || w.state}` }, w.state), " ",
            h("span", { class: "worker-state" }, STATE_WORDS[w.state] || w.state)),
          h("td", {}, age(w.heartbeat_age)),
          h("td", {}, w.current_take_id ? h("a", { href: `#/take/${w.current_take_id}` }, w.current_take_id.slice(0, 8)) : "—"),
          h("td", { "data-holds": "" }, holds(w.holding)),
          h("td", {}, w.gpu_seconds_24h.toFixed(0)), operator ? h("td", {}, controls(w)) : null)))))
        : h("p", { class: "hint" }, "No workers are running. Start one with `farm worker --pool explore`."));
    if (focused) { const again = body.querySelector(`[data-key="${CSS.escape(focused)}"]`); if (again) again.focus(); }
  }
  await draw();
  const timer = setInterval(() => draw().catch(() => {}), REFRESH_MS);
  view.onClose(() => clearInterval(timer));
}

views.pools = viewPools;
