// Compare 2-4 finished takes as a decision: they play in sync (one play button, one scrubber,
// a choice of whose audio you hear), step frame by frame, loop, show the timecode; the winner
// is picked (kept in the address: #/compare/a,b?winner=a) and selected for hero from here.
import { h, api, toast, mine, query, views } from "./core.js";

const NAME_CHARS = 48;
// a take in a producer's words: its prompt and seed, never a hex id
export const takeName = (t) => {
  const p = (t.params.prompt || "no prompt").trim();
  return `“${p.length > NAME_CHARS ? `${p.slice(0, NAME_CHARS - 1)}…` : p}” · seed ${t.params.seed}`;
};

const pad = (n, w = 2) => String(n).padStart(w, "0");
// mm:ss:ff, the frame counted at the clip's rate (what editors read)
export function timecode(seconds, fps) {
  const frame = Math.floor(seconds * fps + 1e-6), s = Math.floor(frame / fps);
  return `${pad(Math.floor(s / 60))}:${pad(s % 60)}:${pad(frame % fps)}`;
}

async function viewCompare(arg, view) {
  const ids = (arg || "").split(",").filter(Boolean).slice(0, 4);
  if (ids.length < 2) {
    view.el.append(h("h1", {}, "Compare takes"), h("p", {}, "Pick 2 to 4 finished takes on the ", h("a", { href: "#/takes" }, "takes page"), "."));
    return;
  }
  const [takes, checkpoints] = await Promise.all([Promise.all(ids.map((id) => api(`/takes/${id}`))), api("/checkpoints")]);
  const fpsOf = new Map(checkpoints.map((c) => [c.name, c.fps]));
  const fps = fpsOf.get(takes[0].checkpoint) || 25;
  const videos = takes.map((t, i) => h("video", { src: t.outputs ? t.outputs.clip : "", preload: "auto",
    "aria-label": `clip of ${takeName(t)}`, "data-clip": t.id }));
  videos.forEach((v, i) => { v.muted = i !== 0; });
  const lead = videos[0];
  const frames = () => Math.max(1, Math.round((lead.duration || 0) * fps));

  const play = h("button", { type: "button", class: "primary", "aria-keyshortcuts": "Space" }, "Play all");
  const back = h("button", { type: "button", "aria-keyshortcuts": ",", title: "one frame back (,)" }, "◀ Frame");
  const fwd = h("button", { type: "button", "aria-keyshortcuts": ".", title: "one frame on (.)" }, "Frame ▶");
  const loop = h("input", { type: "checkbox", id: "loop" });
  const seek = h("input", { type: "range", min: "0", max: "1000", value: "0", id: "seek", "aria-valuetext": "00:00:00" });
  const clock = h("output", { id: "timecode", for: "seek", "aria-live": "off" }, "00:00:00 · frame 1");
  const hear = h("select", { id: "hear" }, takes.map((t, i) => h("option", { value: String(i) }, takeName(t))));
  hear.addEventListener("change", () => videos.forEach((v, i) => { v.muted = String(i) !== hear.value; }));

  function show() {
    const at = lead.currentTime, code = timecode(at, fps);
    clock.textContent = `${code} · frame ${Math.min(frames(), Math.floor(at * fps + 1e-6) + 1)} of ${frames()}`;
    if (lead.duration) seek.value = String(Math.round((1000 * at) / lead.duration));
    seek.setAttribute("aria-valuetext", code);
  }
  const syncAll = () => { for (const v of videos.slice(1)) if (Math.abs(v.currentTime - lead.currentTime) > 0.5 / fps) v.currentTime = lead.currentTime; };
  const seekAll = (at) => { videos.forEach((v) => { v.currentTime = at; }); show(); };
  const pauseAll = () => { videos.forEach((v) => v.pause()); play.textContent = "Play all"; };
  async function playAll() { syncAll(); await Promise.all(videos.map((v) => v.play())); play.textContent = "Pause all"; tick(); }
  function tick() { show(); if (!lead.paused) requestAnimationFrame(tick); }
  // a frame step lands in the middle of the frame: no rounding puts it on its neighbour
  function step(by) {
    pauseAll();
    const frame = Math.min(frames() - 1, Math.max(0, Math.floor(lead.currentTime * fps + 1e-6) + by));
    seekAll((frame + 0.5) / fps);
  }
  play.addEventListener("click", () => (lead.paused ? playAll() : pauseAll()));
  back.addEventListener("click", () => step(-1));
  fwd.addEventListener("click", () => step(1));
  lead.addEventListener("timeupdate", () => { syncAll(); show(); });
  lead.addEventListener("seeked", show);
  lead.addEventListener("loadedmetadata", show);
  lead.addEventListener("ended", () => { if (loop.checked) { seekAll(0); playAll(); } else pauseAll(); });
  seek.addEventListener("input", () => { if (lead.duration) seekAll((seek.value / 1000) * lead.duration); });
  const keys = (ev) => {
    if (ev.target.closest("input[type=range], select, textarea, input[type=text]")) return;
    if (ev.key === ",") { ev.preventDefault(); step(-1); }
    else if (ev.key === ".") { ev.preventDefault(); step(1); }
    else if (ev.key === " " && ev.target === document.body) { ev.preventDefault(); play.click(); }
  };
  document.addEventListener("keydown", keys);
  view.onClose(() => { document.removeEventListener("keydown", keys); pauseAll(); });

  // the decision: one winner, selected for hero here
  let winner = query().get("winner");
  const figures = takes.map((t, i) => {
    const pick = h("button", { type: "button", class: "pick-winner", "aria-pressed": "false", "data-pick": t.id }, "Pick as winner");
    pick.addEventListener("click", () => choose(t.id));
    return h("figure", { class: "compared", "data-take": t.id }, videos[i],
      h("figcaption", {}, h("a", { href: `#/take/${t.id}` }, takeName(t)),
        h("div", { class: "hint" }, `${t.checkpoint} · ${t.producer}${t.selected_for_hero ? " · selected for hero" : ""}`), pick));
  });
  const verdict = h("div", { class: "verdict panel", role: "region", "aria-label": "Winner", "aria-live": "polite" });
  function drawVerdict() {
    for (const f of figures) {
      const on = f.dataset.take === winner;
      f.classList.toggle("winner", on);
      const b = f.querySelector(".pick-winner");
      b.setAttribute("aria-pressed", String(on));
      b.textContent = on ? "Winner ✓" : "Pick as winner";
    }
    const t = takes.find((x) => x.id === winner);
    if (!t) { verdict.replaceChildren(h("p", { class: "hint" }, "Watch them side by side, then pick the winner.")); return; }
    const select = h("button", { type: "button", class: "primary", disabled: !mine(t) || t.selected_for_hero }, t.selected_for_hero ? "Selected for hero" : "Select the winner for hero");
    select.addEventListener("click", async () => {
      try {
        Object.assign(t, await api(`/takes/${t.id}/select`, { method: "POST", json: { selected: true } }));
        toast(`${takeName(t)} is selected for the nightly hero run`);
        drawVerdict();
        verdict.querySelector("button").focus();
      } catch (e) { toast(e.message, true); }
    });
    verdict.replaceChildren(h("p", {}, h("strong", {}, "Winner: "), takeName(t)), select);
    if (!mine(t)) verdict.append(h("p", { class: "hint" }, `Only ${t.producer} or an operator may select it for hero.`));
  }
  function choose(id) {
    winner = id;
    history.replaceState(null, "", `#/compare/${ids.join(",")}?winner=${id}`);
    drawVerdict();
  }
  drawVerdict();

  view.el.append(h("h1", { tabindex: "-1" }, `Compare ${ids.length} takes`),
    h("div", { class: "toolbar compare-bar" }, play, back, fwd,
      h("span", { class: "inline-check" }, loop, h("label", { for: "loop" }, "Loop")),
      h("label", { for: "seek", class: "sr-only" }, "Position"), seek, clock,
      h("label", { for: "hear" }, "Hear"), hear),
    h("div", { class: "compare" }, figures), verdict);
}

views.compare = viewCompare;
