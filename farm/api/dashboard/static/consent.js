// The consent page (records: producers record and link, operators revoke; the audit trail) and
// the take page's consent panel (the decision, a withdrawal, the clip's content credentials).
import { h, api, toast, can, fmtTime, views } from "./core.js";

const list = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);

function field(label, input) {
  input.id = input.id || `consent-${label.toLowerCase().replace(/\W+/g, "-")}`;
  return h("p", {}, h("label", { for: input.id }, label), " ", input);
}

function recordForm(done) {
  const subject = h("input", { required: true, maxlength: 200, autocomplete: "off" });
  const covers = h("select", {}, ["both", "likeness", "voice"].map((c) => h("option", { value: c }, c)));
  const uses = h("input", { placeholder: "advertising, film" });
  const territories = h("input", { placeholder: "EU, US" });
  const downstream = h("input", { placeholder: "social, broadcast" });
  const from = h("input", { type: "date", required: true, value: new Date().toISOString().slice(0, 10) });
  const until = h("input", { type: "date" });
  const evidence = h("input", { type: "file", required: true, accept: ".pdf,image/*,audio/*,video/*" });
  const kind = h("select", {}, h("option", { value: "release" }, "signed release"), h("option", { value: "statement" }, "recorded statement"));
  const assets = h("input", { placeholder: "sha256 of images and audio of them, comma-separated" });
  const error = h("p", { class: "error", role: "alert" });
  const form = h("form", { class: "panel", "aria-label": "Record consent" },
    h("h2", {}, "Record consent"),
    field("Subject", subject), field("Covers", covers), field("Allowed uses", uses), field("Territories", territories),
    field("Downstream uses", downstream), field("Valid from", from), field("Valid until", until),
    field("Evidence", evidence), field("Evidence is a", kind), field("Assets", assets), error,
    h("button", { type: "submit" }, "Record"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    try {
      const file = new FormData();
      file.append("file", evidence.files[0]);
      const proof = await api("/consent/evidence", { method: "POST", form: file });
      const made = await api("/consent/records", { method: "POST", json: {
        subject: subject.value, covers: covers.value, uses: list(uses.value), territories: list(territories.value),
        downstream: list(downstream.value), valid_from: `${from.value}T00:00:00Z`,
        valid_until: until.value ? `${until.value}T00:00:00Z` : null,
        evidence_sha256: proof.sha256, evidence_kind: kind.value, assets: list(assets.value) } });
      toast(`Consent recorded for ${made.subject}`);
      done();
    } catch (e) { error.textContent = e.field ? `${e.field}: ${e.message}` : e.message; }
  });
  return form;
}

function recordRow(r, done) {
  const cells = [r.subject, r.covers, `${fmtTime(r.valid_from)} – ${r.valid_until ? fmtTime(r.valid_until) : "until revoked"}`,
    [r.uses, r.territories, r.downstream].map((l) => l.join(", ") || "–").join(" · "),
    h("span", { class: `badge consent-${r.state}` }, r.state), String(r.assets.length), r.recorded_by];
  const act = h("td", {});
  if (can("operator") && r.state === "standing") {
    const reason = h("input", { "aria-label": `Reason to revoke ${r.subject}'s consent`, placeholder: "reason" });
    act.append(reason, h("button", { onclick: async () => {
      try {
        await api(`/consent/records/${r.id}/revoke`, { method: "POST", json: { reason: reason.value } });
        toast(`Consent of ${r.subject} revoked`); done();
      } catch (e) { toast(e.message, true); }
    } }, "Revoke"));
  } else if (r.revoke_reason) act.append(r.revoke_reason);
  return h("tr", { "data-record": r.id }, cells.map((c) => h("td", {}, c)), act);
}

views.consent = async (_arg, view) => {
  const [records, events] = await Promise.all([api("/consent/records"), api("/consent/events?limit=50")]);
  const again = () => { view.el.replaceChildren(); return views.consent(_arg, view); };
  const table = h("table", {}, h("caption", {}, "Consent records"),
    h("thead", {}, h("tr", {}, ["subject", "covers", "valid", "uses · territories · downstream", "state", "assets", "recorded by", ""]
      .map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, records.map((r) => recordRow(r, again))));
  const trail = h("table", {}, h("caption", {}, "Audit trail (latest 50)"),
    h("thead", {}, h("tr", {}, ["when", "who", "what", "record", "asset", "take"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, events.map((e) => h("tr", {}, [fmtTime(e.at), e.actor, e.action, (e.record_id || "").slice(0, 8),
      (e.asset_sha256 || "").slice(0, 12), e.take_id ? h("a", { href: `#/take/${e.take_id}` }, e.take_id.slice(0, 8)) : ""]
      .map((c) => h("td", {}, c))))));
  view.el.append(h("h1", {}, "Consent"),
    h("p", { class: "hint" }, "Every real person whose likeness or voice goes into a take needs a record; " +
      "images and audio of no real person can be declared synthetic."),
    table, can("producer") ? h("div", { class: "panel-row" }, recordForm(again), synthetic(again)) : null, trail);
};

function synthetic(done) {
  const sha = h("input", { id: "synthetic-asset", placeholder: "sha256", maxlength: 64 });
  return h("form", { class: "panel", "aria-label": "Declare synthetic", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      await api(`/consent/assets/${sha.value.trim()}/synthetic`, { method: "POST" });
      toast("Declared: no real person"); done();
    } catch (e) { toast(e.message, true); }
  } }, h("h2", {}, "No real person"), field("Asset", sha), h("button", { type: "submit" }, "Declare synthetic"));
}

// the take page: what consent decided, whether the clip was withdrawn, and its content credentials
export function consentPanel(t) {
  const c = t.consent;
  const box = h("div", { class: "consent", "aria-label": "consent" });
  if (t.consent_withdrawn) box.append(h("p", { class: "error", role: "alert" }, `Consent withdrawn: ${t.consent_withdrawn}`));
  if (c) {
    box.append(h("p", {}, `Policy ${c.policy}: `, h("strong", {}, c.outcome)));
    for (const [kind, input] of Object.entries(c.inputs)) {
      const records = input.records.map((r) => r.id.slice(0, 8)).join(", ");
      box.append(h("p", {}, `${kind}: ${input.status}`, records ? ` (records ${records})` : "",
        input.synthetic_by ? ` (declared synthetic by ${input.synthetic_by})` : "", input.missing ? ` – ${input.missing}` : ""));
    }
  } else box.append(h("p", { class: "hint" }, "No consent decision recorded (a take from before consent)."));
  if (t.state === "done") {
    const creds = h("p", {}, "Content credentials: reading…");
    box.append(creds);
    api(`/takes/${t.id}/credentials`).then((cr) => {
      const by = cr.signer.common_name ? ` by ${cr.signer.common_name}` : "";
      creds.textContent = `Content credentials: ${cr.state}${by}` + (cr.development ? " (development chain: not for delivery)" : "") +
        (cr.manifest_matches ? "; names this take's manifest" : cr.manifest_matches === false ? "; does NOT match the manifest" : "");
      if (cr.failures.length) creds.append(h("span", { class: "error" }, ` ${cr.failures.join("; ")}`));
    }).catch((e) => { creds.textContent = `Content credentials: ${e.message}`; });
  }
  return box;
}
