// The nightly hero runs: tonight's window and budget with "plan now" (operators), then each
// night: its window, its estimate against its budget, what it spent, and its takes with their
// states (GET /nights, /nights/{night}, /nights/tonight; POST /nights/{night}/plan).
import { h, api, toast, can, badge, plural, views } from "./core.js";

const SHOWN_NIGHTS = 14;  // the latest; their takes are read with them
const SHOWN_TAKES = 200;  // a night's takes listed (the rest counted)
const NIGHT_BADGE = { planned: "queued", running: "running", done: "done", stopped: "failed", closed: "canceled" };
const NIGHT_WORDS = {
  planned: "planned: its takes start inside the window",
  running: "running",
  done: "done: every take ended",
  stopped: "stopped: over its GPU budget, the unstarted takes were canceled",
  closed: "closed: its window ended; takes that had not started were canceled",
};

const clock = (iso) => new Date(iso).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
const hours = (x) => `${x.toFixed(x < 10 ? 2 : 1)} GPU h`;

function budgetMeter(label, value, budget) {
  const v = Math.min(value, budget);
  return h("div", { class: "budget" }, h("span", {}, label),
    h("meter", { min: "0", max: String(budget || 1), value: String(v), high: String(0.9 * budget), "aria-label": label }),
    h("span", { class: "hint" }, `${hours(value)} of ${hours(budget)}`));
}

function nightTakes(d) {
  if (!d.hero_takes.length) return h("p", { class: "hint" }, "No hero takes: nothing was selected, or nothing fitted the budget.");
  const shown = d.hero_takes.slice(0, SHOWN_TAKES);
  return h("div", { class: "scroll" }, h("table", { class: "night-takes" }, h("caption", { class: "sr-only" }, `Hero takes of ${d.night}`),
    h("thead", {}, h("tr", {}, ["take", "from", "producer", "state", "priority", "GPU s", "why"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, shown.map((t) => h("tr", { "data-hero-take": t.id, "data-state": t.state },
      h("td", {}, h("a", { href: `#/take/${t.id}` }, t.prompt ? `“${t.prompt.slice(0, 40)}” · seed ${t.seed}` : t.id.slice(0, 8))),
      h("td", {}, h("a", { href: `#/take/${t.parent_id}` }, "its draft")), h("td", {}, t.producer), h("td", {}, badge(t.state)),
      h("td", {}, t.priority), h("td", {}, t.gpu_seconds.toFixed(0)), h("td", {}, t.error_message || "")))),
    d.hero_takes.length > SHOWN_TAKES ? h("caption", { class: "hint" }, `and ${d.hero_takes.length - SHOWN_TAKES} more`) : null));
}

function night(d) {
  const parts = [`${d.takes} planned`, `${d.queued} waiting`, `${d.running} running`, `${d.done} done`, `${d.failed} failed`, `${d.canceled} canceled`];
  if (d.skipped_over_budget) parts.push(`${d.skipped_over_budget} left for a later night (over budget)`);
  if (d.skipped_consent) parts.push(`${d.skipped_consent} skipped: consent does not cover them`);
  return h("section", { class: "panel night", "data-night": d.night, "data-state": d.state, "aria-labelledby": `night-${d.night}` },
    h("h2", { id: `night-${d.night}` }, `Night of ${d.night} `, h("span", { class: `badge state-${NIGHT_BADGE[d.state] || d.state}` }, d.state)),
    h("p", { class: "night-state" }, NIGHT_WORDS[d.state] || d.state),
    h("p", {}, `Window ${clock(d.window_start)} – ${clock(d.window_end)}`),
    budgetMeter("Estimate", d.estimated_gpu_hours, d.budget_gpu_hours), budgetMeter("Spent", d.gpu_hours, d.budget_gpu_hours),
    h("p", { class: "hint" }, parts.join(" · ")), nightTakes(d));
}

async function viewNights(_arg, view) {
  const top = h("div"), list = h("div", { class: "nights" });
  view.el.append(h("h1", { tabindex: "-1" }, "Nightly hero runs"), top, list);

  // before the window opens, planning now is allowed once asked; the takes still wait for the window
  function ask(tonight) {
    const yes = h("button", { type: "button", class: "primary", onclick: () => plan(tonight, true) }, "Plan now anyway");
    const no = h("button", { type: "button", onclick: () => { box.remove(); planBtn.focus(); } }, "Not now");
    const box = h("div", { class: "warn", role: "alertdialog", "aria-label": "Plan before the window opens" },
      h("p", {}, `The window of ${tonight.night} opens at ${clock(tonight.window_start)}. Plan it now? Its hero takes still start only inside the window.`),
      h("div", { class: "actions" }, yes, no));
    const old = top.querySelector("[role=alertdialog]");
    if (old) old.remove();
    top.querySelector(".tonight").append(box);
    yes.focus();
  }
  async function plan(tonight, force) {
    if (!force && !tonight.open) { ask(tonight); return; }
    try {
      const d = await api(`/nights/${tonight.night}/plan${force ? "?force=true" : ""}`, { method: "POST" });
      toast(`Night of ${d.night}: ${plural(d.takes, "hero take")} planned, ${hours(d.estimated_gpu_hours)} of ${hours(d.budget_gpu_hours)}`);
      await draw();
    } catch (e) {
      if (e.field === "force") ask(tonight);  // the server says the window is not open yet: ask
      else toast(e.message, true);
    }
  }
  let planBtn = null;
  async function draw() {
    const [tonight, nights] = await Promise.all([api("/nights/tonight"), api(`/nights?limit=${SHOWN_NIGHTS}`)]);
    const details = await Promise.all(nights.map((n) => api(`/nights/${n.night}`)));
    planBtn = can("operator") ? h("button", { type: "button", class: "primary", id: "plan-now", onclick: () => plan(tonight, false) }, "Plan now") : null;
    top.replaceChildren(h("div", { class: "panel tonight", "data-tonight": tonight.night },
      h("p", {}, h("strong", {}, tonight.open ? `Tonight (${tonight.night}): the window is open` : `Next: the night of ${tonight.night}`),
        ` · ${clock(tonight.window_start)} – ${clock(tonight.window_end)} · budget ${hours(tonight.budget_gpu_hours)}`),
      h("p", { class: "hint" }, "Finished takes selected for hero become hero takes of the night, highest priority first, while their estimate fits the budget."),
      planBtn));
    list.replaceChildren(...(details.length ? details.map(night)
      : [h("p", { class: "hint" }, "No hero nights yet: select finished takes for hero and they render tonight.")]));
  }
  await draw();
}

views.nights = viewNights;
