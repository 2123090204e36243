// A take's attempts: where each ran, how long it took, how it ended in words, and the worker's
// log lines of each (GET /takes/{id}/attempts/{n}/log), read when its row is opened.
import { h, api, badge, fmtTime } from "./core.js";
import { duration } from "./live.js";

const WORDS = {
  RenderTimeout: "The render ran past its time limit and was stopped.",
  GPUOutOfMemory: "The GPU ran out of memory. A smaller size or fewer frames will fit.",
  HostOutOfMemory: "The machine ran out of memory rendering it; it would again. A smaller size or fewer frames will fit.",
  WorkerLost: "The worker rendering it stopped (crash, restart or lost heartbeat); it was handed on.",
  InputError: "An input could not be read or does not fit the checkpoint.",
  StorageError: "The clip could not be uploaded to the object store.",
  Canceled: "Canceled on request.",
};
export const inWords = (cls, msg) => (cls ? `${WORDS[cls] || cls}${msg ? ` (${msg})` : ""}` : "");

function logOf(t, a) {
  const pre = h("pre", { class: "attempt-log", tabindex: "0", "aria-label": `log of attempt ${a.number}` }, "loading…");
  const box = h("details", { class: "log", "data-log": String(a.number) },
    h("summary", {}, `Log of attempt ${a.number}`), pre);
  box.addEventListener("toggle", async () => {
    if (!box.open || box.dataset.loaded) return;
    box.dataset.loaded = "1";
    try {
      const r = await fetch(`/takes/${t.id}/attempts/${a.number}/log`, { credentials: "same-origin" });
      if (r.ok) pre.textContent = await r.text();
      else { pre.textContent = (await r.json()).detail; pre.classList.add("empty"); delete box.dataset.loaded; }
    } catch (e) { pre.textContent = e.message; delete box.dataset.loaded; }
  });
  return box;
}

export function attemptsPanel(t) {
  const rows = (t.attempts || []).map((a) => [
    h("tr", { "data-attempt": String(a.number) }, h("td", {}, a.number), h("td", {}, a.worker_id), h("td", {}, a.gpu),
      h("td", {}, badge(a.state)), h("td", {}, fmtTime(a.started_at),
        a.start_window ? h("div", { class: "hint", "data-resumed": String(a.start_window + 1) },
          `resumed at window ${a.start_window + 1}, after those saved`) : null),
      h("td", { "data-took": "" }, a.seconds === null ? "rendering…" : duration(a.seconds)), h("td", {}, a.gpu_seconds.toFixed(1)),
      h("td", {}, inWords(a.error_class, a.error_message))),
    h("tr", { class: "log-row" }, h("td", { colspan: "8" }, logOf(t, a))),
  ]);
  if (!rows.length) return h("p", { class: "hint" }, "No attempt yet: it has not started.");
  return h("div", { class: "scroll" }, h("table", { class: "attempts" }, h("caption", { class: "sr-only" }, "Attempts"),
    h("thead", {}, h("tr", {}, ["#", "worker", "GPU", "state", "started", "took", "GPU s", "error"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.flat())));
}
