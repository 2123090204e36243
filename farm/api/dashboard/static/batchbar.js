// Actions on a whole batch (cancel, retry the failed, priority, pause, resume, select for
// hero), and the cost of a batch shown for confirmation before it is submitted.

import { h, api, toast, mine, plural } from "./core.js";

export function gpuTime(seconds) {
  if (seconds === null || seconds === undefined) return "GPU time not known yet: nothing of its checkpoint has finished on this farm";
  if (seconds < 90) return `about ${Math.max(1, Math.round(seconds))} GPU seconds`;
  if (seconds < 5400) return `about ${Math.round(seconds / 60)} GPU minutes`;
  return `about ${(seconds / 3600).toFixed(1)} GPU hours`;
}

// the toolbar of a batch its producer (or an operator) manages; `after` redraws the page
export function batchBar(b, after) {
  if (!mine(b)) return null;
  const c = b.counts, waiting = c.queued + c.released + c.paused, open = waiting + c.running;
  const act = async (path, json) => {
    try {
      const out = await api(`/batches/${b.id}/${path}`, { method: "POST", json });
      toast(out.message);
      after();
    } catch (e) { toast(e.message, true); }
  };
  const button = (label, onclick, show, primary = false) => (show ? h("button", { type: "button", class: primary ? "primary" : null, onclick }, label) : null);
  const bar = h("div", { class: "actions batch-actions", role: "group", "aria-label": `Actions on the batch ${b.name}` });
  // cancelling many takes is asked once more, in place: a mistaken sweep is one click to end, never two by accident
  const cancel = () => {
    const yes = h("button", { type: "button", class: "primary danger", onclick: () => act("cancel") }, `Cancel ${plural(open, "take")}`);
    const no = h("button", { type: "button", onclick: () => { bar.replaceChildren(...buttons()); bar.querySelector("button").focus(); } }, "Keep them");
    bar.replaceChildren(h("span", {}, `Cancel every take not yet finished? ${plural(waiting, "waiting take")} end at once` +
      (c.running ? `, ${plural(c.running, "rendering take")} after the current step.` : ".")), yes, no);
    yes.focus();
  };
  const prio = h("input", { id: "batch-prio", type: "number", min: "-1000", max: "1000", value: "0", style: "width:6rem" });
  const buttons = () => [
    button(`Cancel batch (${open})`, cancel, open > 0),
    button(`Retry failed (${c.failed})`, () => act("retry"), c.failed > 0),
    button(`Pause (${c.queued + c.released})`, () => act("pause"), c.queued + c.released > 0),
    button(`Resume (${c.paused})`, () => act("resume"), c.paused > 0, true),
    button(`Select finished for hero (${c.done})`, () => act("select", { selected: true }), c.done > 0),
    waiting + c.failed + c.canceled > 0 ? h("span", { class: "inline" }, h("label", { for: "batch-prio", class: "sr-only" }, "Priority of the batch's waiting takes"), prio,
      h("button", { type: "button", onclick: () => act("priority", { priority: Number(prio.value) }) }, "Set priority")) : null,
  ].filter(Boolean);
  bar.replaceChildren(...buttons());
  return bar;
}

// the confirmation shown before a big batch is submitted: its size, GPU time and warnings
export function costPanel(cost, submit, back, id = "cost") {
  const title = h("h2", { id: `${id}-title`, tabindex: "-1" }, `Submit ${plural(cost.takes, "take")}?`);
  const go = h("button", { type: "button", class: "primary", onclick: submit }, `Submit ${plural(cost.takes, "take")}`);
  const panel = h("div", { class: "panel cost", role: "alertdialog", "aria-labelledby": `${id}-title`, "aria-describedby": `${id}-what` },
    title,
    h("p", { id: `${id}-what` }, `${plural(cost.takes, "take")}, ${gpuTime(cost.gpu_seconds)}.`),
    cost.checkpoints.length > 1 ? h("ul", {}, cost.checkpoints.map((k) => h("li", {}, `${k.checkpoint}: ${plural(k.takes, "take")}, ${gpuTime(k.gpu_seconds)}`))) : null,
    cost.warnings.map((w) => h("p", { class: "warn" }, w)),
    h("div", { class: "actions" }, go, h("button", { type: "button", onclick: back }, "Back to the form")));
  return { panel, focus: () => go.focus() };
}
