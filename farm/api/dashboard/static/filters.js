// The takes page's search and filters: words in any order (or a take id), state, producer (any
// case), project, hero selection, and the order; kept in the address (#/takes?q=...), with a
// count of what matches and one way back to everything.
import { h, api, plural } from "./core.js";

export const FILTERS = ["q", "state", "producer", "project", "selected", "sort"];
const STATES = ["queued", "paused", "released", "running", "done", "failed", "canceled"];

// the page's address for these filters (the batch, if one is open, stays)
export function filtersHash(values, batchId) {
  const p = new URLSearchParams();
  if (batchId) p.set("batch", batchId);
  for (const k of FILTERS) if (values[k]) p.set(k, values[k]);
  return `#/takes?${p}`;
}

export const filtered = (q) => FILTERS.some((k) => q.get(k));

export function filterForm(q, batchId) {
  const project = h("select", { id: "f-project", name: "project" }, h("option", { value: "" }, "any"),
    q.get("project") ? h("option", { value: q.get("project"), selected: true }, q.get("project")) : null);
  api("/projects").then((list) => {
    const chosen = (q.get("project") || "").toLowerCase();
    project.replaceChildren(h("option", { value: "" }, "any"), ...list.map((p) =>
      h("option", { value: p.name, selected: p.name.toLowerCase() === chosen }, `${p.name} (${p.batches} batch${p.batches === 1 ? "" : "es"})`)));
  }, () => {});
  const form = h("form", { class: "filters", role: "search", "aria-label": "Find takes" },
    h("div", { class: "grow" }, h("label", { for: "f-q" }, "Search"),
      h("input", { id: "f-q", name: "q", type: "search", value: q.get("q") || "", maxlength: "200", "aria-describedby": "f-q-hint" }),
      h("p", { class: "hint", id: "f-q-hint" }, "Words of the prompt in any order, or a take id.")),
    h("div", {}, h("label", { for: "f-state" }, "State"),
      h("select", { id: "f-state", name: "state" }, h("option", { value: "" }, "any"),
        STATES.map((s) => h("option", { value: s, selected: q.get("state") === s }, s)))),
    h("div", {}, h("label", { for: "f-producer" }, "Producer"), h("input", { id: "f-producer", name: "producer", value: q.get("producer") || "" })),
    h("div", {}, h("label", { for: "f-project" }, "Project"), project),
    h("div", {}, h("label", { for: "f-selected" }, "Hero"),
      h("select", { id: "f-selected", name: "selected" }, h("option", { value: "" }, "any"),
        h("option", { value: "true", selected: q.get("selected") === "true" }, "selected for hero"))),
    h("div", {}, h("label", { for: "f-sort" }, "Order"),
      h("select", { id: "f-sort", name: "sort" }, h("option", { value: "" }, "newest first"),
        h("option", { value: "oldest", selected: q.get("sort") === "oldest" }, "oldest first"))),
    h("div", { class: "filter-buttons" }, h("button", { type: "submit" }, "Filter"),
      filtered(q) ? h("a", { class: "button", href: filtersHash({}, batchId), "data-clear": "" }, "Clear filters") : null));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    location.hash = filtersHash(Object.fromEntries(FILTERS.map((k) => [k, form[k].value.trim()])), batchId);
  });
  // a choice from a list applies at once; typed words wait for Enter or Filter
  for (const k of ["state", "project", "selected", "sort"]) form[k].addEventListener("change", () => form.requestSubmit());
  return form;
}

export function countLine(total, q) {
  if (total === null || total === undefined) return "";
  if (!total) return filtered(q) ? "No takes match." : "No takes yet.";
  return filtered(q) ? `${plural(total, "take")} match${total === 1 ? "es" : ""}` : plural(total, "take");
}
