// A take while it waits or renders: its place in the queue, its ETA, and a small preview of
// the current prediction (GET /takes/{id}/live every few seconds while the page is open).
import { h, api, stepText } from "./core.js";

const POLL_MS = 3000;
const WAITING = ["queued", "released", "running"];

const ordinal = (n) => {
  const s = n % 100 >= 11 && n % 100 <= 13 ? "th" : { 1: "st", 2: "nd", 3: "rd" }[n % 10] || "th";
  return `${n}${s}`;
};

export function duration(seconds) {
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60), r = s % 60;
  return m < 60 ? `${m} min ${r} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function liveText(t, l) {
  if (l.state === "queued") {
    return l.queue_position ? `${ordinal(l.queue_position)} in the ${t.pool} queue` : `more than ${l.queue_lookahead} takes ahead in the ${t.pool} queue`;
  }
  if (l.state === "released") return `sent to the ${t.pool} pool: it starts when a worker takes it`;
  if (l.state === "running") {
    const eta = l.eta_seconds === null ? "" : ` · about ${duration(l.eta_seconds)} left`;
    return l.total ? `${stepText(l.progress || l)}${eta}` : "starting…";
  }
  return "";
}

// the panel, or null for a take that no longer waits; it stops polling when the view closes
export function livePanel(t, view) {
  if (!WAITING.includes(t.state)) return null;
  const text = h("p", { class: "live-text", "aria-live": "polite" });
  const img = h("img", { class: "preview", alt: `preview of take ${t.id.slice(0, 8)}: its current prediction`, hidden: true });
  const panel = h("div", { class: "live", "data-live": t.id }, img, text);
  let shown = null, timer = null;
  async function poll() {
    try {
      const l = await api(`/takes/${t.id}/live`);
      text.textContent = liveText(t, l);
      panel.dataset.state = l.state;
      if (l.preview_step !== null && l.preview_step !== shown) {
        shown = l.preview_step;
        img.src = `/takes/${t.id}/preview.jpg?step=${shown}`;
        img.hidden = false;
        panel.dataset.previewStep = String(shown);
      }
      if (!WAITING.includes(l.state)) return;  // the take page redraws on the state change
    } catch { /* the next poll tries again */ }
    if (!view.stale) timer = setTimeout(poll, POLL_MS);
  }
  view.onClose(() => clearTimeout(timer));
  poll();
  return panel;
}
