// The webhooks page: the endpoints (producers register their own; the signing secret is shown
// once), and for one endpoint every message sent with each delivery attempt.
import { h, api, toast, can, fmtTime, plural, views } from "./core.js";

const EVENTS = ["take.done", "take.failed", "take.canceled", "batch.finished"];

function registerForm(done, secret) {
  const url = h("input", { id: "webhook-url", type: "url", required: true, maxlength: 2000,
                           placeholder: "https://hooks.example.com/farm", autocomplete: "off" });
  const batch = h("input", { id: "webhook-batch", maxlength: 32, placeholder: "all your batches", autocomplete: "off" });
  const boxes = EVENTS.map((e) => h("input", { type: "checkbox", id: `webhook-${e}`, value: e, checked: true }));
  const error = h("p", { class: "error", role: "alert" });
  const form = h("form", { class: "panel", "aria-label": "Register a webhook" },
    h("h2", {}, "Register an endpoint"),
    h("p", {}, h("label", { for: url.id }, "URL"), " ", url),
    h("p", {}, h("label", { for: batch.id }, "Only batch"), " ", batch),
    h("fieldset", {}, h("legend", {}, "Events"),
      boxes.map((b) => h("label", { for: b.id, class: "check" }, b, ` ${b.value}`))),
    error, h("button", { type: "submit" }, "Register"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    try {
      const made = await api("/webhooks", { method: "POST", json: {
        url: url.value, events: boxes.filter((b) => b.checked).map((b) => b.value), batch_id: batch.value.trim() || null } });
      await done();
      showSecret(secret, made.secret);
      toast(`Endpoint registered: ${made.url}`);
    } catch (e) { error.textContent = e.field ? `${e.field}: ${e.message}` : e.message; }
  });
  return form;
}

function showSecret(el, secret) {
  el.replaceChildren("Signing secret (shown only now; verify deliveries with a Standard Webhooks library): ",
    h("code", { class: "webhook-secret" }, secret));
}

function endpointRow(e, done, secretBox) {
  const counts = Object.entries(e.messages).map(([state, n]) => `${n} ${state}`).join(", ") || "none yet";
  const act = h("td", {}, h("a", { href: `#/webhooks/${e.id}` }, "Deliveries"));
  if (can("producer")) {
    act.append(" ", h("button", { type: "button", class: "link", onclick: async () => {
      try {
        const r = await api(`/webhooks/${e.id}/rotate`, { method: "POST", json: { keep_old_hours: 24 } });
        showSecret(secretBox, r.secret); toast("New secret: the old one signs for 24 hours more");
      } catch (err) { toast(err.message, true); }
    } }, "Rotate secret"), " ", h("button", { type: "button", class: "link", onclick: async () => {
      try { await api(`/webhooks/${e.id}`, { method: "DELETE" }); toast("Endpoint deleted"); done(); }
      catch (err) { toast(err.message, true); }
    } }, "Delete"));
  }
  return h("tr", { "data-endpoint": e.id }, [e.url, e.producer, e.batch_id ? e.batch_id.slice(0, 8) : "all",
    e.events.join(", "), counts, fmtTime(e.created_at)].map((c) => h("td", {}, c)), act);
}

function attemptText(a) {
  if (a.seconds === null) return `#${a.number} ${fmtTime(a.started_at)}: no answer recorded`;
  const answer = a.error ? a.error : `answered ${a.status_code}`;
  return `#${a.number} ${fmtTime(a.started_at)}: ${answer} (${a.seconds.toFixed(2)} s)`;
}

async function deliveries(endpointId, view) {
  const messages = await api(`/webhooks/${endpointId}/messages?limit=100`);
  view.el.append(h("h1", {}, "Webhook deliveries"), h("p", {}, h("a", { href: "#/webhooks" }, "← all endpoints")),
    h("table", { "aria-label": "Messages" }, h("caption", {}, `${plural(messages.length, "message")} (newest first)`),
      h("thead", {}, h("tr", {}, ["message", "event", "state", "created", "attempts"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, messages.map((m) => h("tr", { "data-message": m.id },
        h("td", {}, h("code", {}, m.id)), h("td", {}, m.type), h("td", {}, h("span", { class: `badge webhook-${m.state}` }, m.state)),
        h("td", {}, fmtTime(m.created_at)),
        h("td", {}, h("ul", { class: "attempts" }, m.attempts.map((a) => h("li", {}, attemptText(a))))))))));
}

views.webhooks = async (arg, view) => {
  if (arg) return deliveries(arg, view);
  const secretBox = h("p", { class: "secret", "aria-live": "polite" });
  const rows = h("tbody", {});
  const refresh = async () => rows.replaceChildren(...(await api("/webhooks")).map((e) => endpointRow(e, refresh, secretBox)));
  await refresh();
  view.el.append(h("h1", {}, "Webhooks"),
    h("p", { class: "hint" }, "The farm POSTs take.done, take.failed, take.canceled and batch.finished, signed the Standard " +
      "Webhooks way (webhook-id, webhook-timestamp, webhook-signature); failed deliveries are retried with backoff for a day."),
    h("table", {}, h("caption", {}, "Endpoints"),
      h("thead", {}, h("tr", {}, ["URL", "producer", "batch", "events", "messages", "registered", ""]
        .map((c) => h("th", { scope: "col" }, c)))),
      rows),
    secretBox, can("producer") ? registerForm(refresh, secretBox) : null);
};
