// The review console page: queue from /api/alerts, live updates over server-sent events,
// keyboard-first adjudication. The server authorises everything; this only presents it.
"use strict";
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const alerts = new Map();   // alert_id -> summary
const rows = new Map();     // alert_id -> its row, made once and then updated in place
let order = [];             // alert ids shown in the queue, newest first (the keyboard's order)
let waiting = [];           // ids of new alerts held behind the "new alerts" notice
let selected = null;
let serverOffsetMs = 0;
const written = new WeakMap(); // element -> the text this page last wrote into it

const $ = (id) => document.getElementById(id);
const label = (s) => (s || "").replace(/_/g, " ");

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() + serverOffsetMs - ms) / 1000));
  return s < 60 ? `${s} s` : s < 3600 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

// Only what changed is written: an update touches its own row's changed fields and nothing else.
function setText(el, text) {
  if (written.get(el) !== text) { el.textContent = text; written.set(el, text); }
}

function upsert(a) {
  alerts.set(a.alert_id, Object.assign(alerts.get(a.alert_id) || {}, a));
}

// One line (the row's height must not change): a decision comes first, so that a long line
// loses the sighting count at its end, not the decision.
function metaText(a) {
  return (a.decision ? `${label(a.decision)}${a.outcome ? ", " + label(a.outcome) : ""} · ` : "") +
    `${a.camera_id} · ${ago(a.last_seen_ms)} ago · ${a.sightings} sighting(s)`;
}

function updateRow(id) {
  const li = rows.get(id), a = alerts.get(id);
  if (!li || !a) return;
  const cls = `${a.priority}${id === selected ? " selected" : ""}${a.decision ? " decided" : ""}`;
  if (li.className !== cls) li.className = cls;
  if (id === selected) li.setAttribute("aria-current", "true"); else li.removeAttribute("aria-current");
  setText(li.querySelector("b"), `${a.priority.toUpperCase()} ${label(a.category)}`);
  setText(li.querySelector(".ref"), a.reference);
  setText(li.querySelector(".score"), a.score.toFixed(3));
  setText(li.querySelector(".meta"), metaText(a));
}

// A row is made once per alert and never replaced: the element under the officer's pointer or
// keyboard selection stays the same element, in the same place, while its alert changes.
function addRows(ids) {
  const list = $("queue");
  for (const id of ids) {
    const li = document.createElement("li");
    li.id = "alert-" + id;
    li.dataset.alertId = id;
    li.innerHTML = `<span><b></b> · <span class="ref"></span></span><span class="score"></span><span class="meta"></span>`;
    li.addEventListener("click", () => select(id));
    rows.set(id, li);
    updateRow(id);
    const at = alerts.get(id).alert_at_ms;
    const before = order.findIndex((o) => alerts.get(o).alert_at_ms < at);
    if (before < 0) { list.append(li); order.push(id); }
    else { list.insertBefore(li, rows.get(order[before])); order.splice(before, 0, id); }
  }
  $("empty").hidden = order.length > 0;
}

// A new alert never enters the queue by itself once the officer has one in front of them:
// inserting it at the top would push every row down under the pointer, so a click or key
// press landing at that moment would act on a different alert. In a busy van that is the
// worse failure (a wrong alert confirmed or rejected), so the new alerts wait behind a notice
// at a fixed place above the queue, coloured by their highest priority and announced to
// screen readers; one key (N) or a click brings them in and selects the newest, because the
// officer who asks for new alerts wants to look at one. Holding them costs one key press,
// never an alert: the notice stays until they are brought in. (Keeping the selected row still
// by scrolling would not do: a short queue has nothing to scroll, so rows move regardless.)
function arrive(ids) {
  const fresh = ids.filter((id) => !rows.has(id) && !waiting.includes(id));
  ids.forEach(updateRow);
  if (!fresh.length) { if (waiting.length) renderNotice(); return; }
  if (!order.length) {
    addRows(fresh);
    if (!selected) select(order[0]);
  } else {
    waiting.push(...fresh);
  }
  renderNotice();
}

function bringIn() {
  if (!waiting.length) return;
  const ids = waiting;
  waiting = [];
  addRows(ids);
  renderNotice();
  select(ids.reduce((x, y) => (alerts.get(y).alert_at_ms > alerts.get(x).alert_at_ms ? y : x)));
}

function renderNotice() {
  const notice = $("new-alerts");
  const held = waiting.map((id) => alerts.get(id));
  const top = ["red", "amber", "green"].find((p) => held.some((a) => a.priority === p)) || "none";
  const reds = held.filter((a) => a.priority === "red").length;
  setText(notice, held.length ? `${held.length} new${reds ? ` (${reds} red)` : ""} · press N` : "");
  notice.className = `new-alerts ${held.length ? "prio-" + top : "none"}`;
  notice.disabled = !held.length;
}

// Once a second only the times change, written into the rows that are already there.
function refreshTimes() {
  for (const [id, li] of rows) {
    const a = alerts.get(id);
    if (a) setText(li.querySelector(".meta"), metaText(a));
  }
  const a = alerts.get(selected);
  if (a) setText($("f-since"), ago(a.last_seen_ms));
}

function status(a) {
  if (!a.decision) return "awaiting decision";
  return label(a.decision) + (a.outcome ? ` · outcome: ${label(a.outcome)}` : "");
}

function renderDetail() {
  const a = alerts.get(selected);
  $("detail").hidden = !a;
  if (!a) return;
  const probe = `/api/alerts/${encodeURIComponent(a.alert_id)}/probe?r=${a.revision}`;
  if ($("probe").dataset.src !== probe) { $("probe").dataset.src = probe; $("probe").src = probe; }
  const ref = `/api/alerts/${encodeURIComponent(a.alert_id)}/reference`;
  if ($("reference").dataset.src !== ref) { $("reference").dataset.src = ref; $("reference").src = ref; }
  setText($("f-priority"), a.priority.toUpperCase());
  $("f-priority").className = "prio-" + a.priority;
  setText($("f-score"), a.score.toFixed(3));
  setText($("f-threshold"), a.threshold.toFixed(2));
  setText($("f-category"), label(a.category));
  setText($("f-reference"), a.reference);
  setText($("f-camera"), `${a.camera_id} (${a.deployment_id})`);
  setText($("f-since"), ago(a.last_seen_ms));
  setText($("f-sightings"), String(a.sightings));
  setText($("f-status"), status(a));
  $("decide").hidden = !!a.decision;
  $("engage").hidden = !(a.decision && a.decision !== "rejected" && !a.outcome);
}

function select(id) {
  const previous = selected;
  selected = id;
  $("message").textContent = "";
  $("reason").hidden = true;
  updateRow(previous);
  updateRow(id);
  renderDetail();
  const li = $("alert-" + id);
  if (li) li.scrollIntoView({ block: "nearest" });
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

async function decide(decision) {
  const a = alerts.get(selected);
  if (!a || a.decision) return;
  try {
    const { adjudication } = await post(`/api/alerts/${encodeURIComponent(a.alert_id)}/decision`, { decision });
    upsert({ alert_id: a.alert_id, decision: adjudication.decision });
    $("message").textContent = decision === "rejected" ? "Rejected: the camera image is being erased." : "Decision recorded. Now record the outcome (1-4).";
    if (decision === "rejected") { $("probe").removeAttribute("src"); $("probe").dataset.src = "erased"; }
  } catch (e) { $("message").textContent = "Not saved: " + e.message; }
  updateRow(a.alert_id); renderDetail();
}

async function recordOutcome(outcome, reason) {
  const a = alerts.get(selected);
  if (!a || !a.decision || a.outcome) return;
  if (outcome === "other" && !reason) { $("reason").hidden = false; $("reason").focus(); return; }
  try {
    await post(`/api/alerts/${encodeURIComponent(a.alert_id)}/outcome`, { outcome, reason: reason || "" });
    upsert({ alert_id: a.alert_id, outcome });
    $("message").textContent = "Outcome recorded.";
    $("reason").hidden = true;
  } catch (e) { $("message").textContent = "Not saved: " + e.message; }
  updateRow(a.alert_id); renderDetail();
}

function move(step) {
  if (!order.length) return;
  const i = selected ? order.indexOf(selected) : -1;
  select(order[Math.min(order.length - 1, Math.max(0, i + step))]);
}

document.addEventListener("keydown", (e) => {
  if (e.target === $("reason")) {
    if (e.key === "Enter") recordOutcome("other", $("reason").value.trim());
    if (e.key === "Escape") $("reason").hidden = true;
    return;
  }
  if (e.altKey || e.ctrlKey || e.metaKey) return;
  const k = e.key.toLowerCase();
  if (k === "arrowdown" || k === "j") { move(1); e.preventDefault(); }
  else if (k === "arrowup" || k === "k") { move(-1); e.preventDefault(); }
  else if (k === "c") decide("confirmed");
  else if (k === "r") decide("rejected");
  else if (k === "u") decide("unable_to_verify");
  else if (k === "n") bringIn();
  else if (["1", "2", "3", "4"].includes(k)) recordOutcome(["not_stopped", "spoken_to", "arrested", "other"][+k - 1]);
});
document.querySelectorAll("[data-decision]").forEach((b) => b.addEventListener("click", () => decide(b.dataset.decision)));
document.querySelectorAll("[data-outcome]").forEach((b) => b.addEventListener("click", () => recordOutcome(b.dataset.outcome)));
$("new-alerts").addEventListener("click", bringIn);
$("sign-out").addEventListener("click", async () => { await post("/logout", {}).catch(() => {}); location.href = "/login"; });

async function load() {
  const response = await fetch("/api/alerts", { credentials: "same-origin" });
  if (response.status === 401) { location.href = "/login"; return; }
  const data = await response.json();
  serverOffsetMs = data.now_ms - Date.now();
  data.alerts.forEach(upsert);
  arrive(data.alerts.map((a) => a.alert_id));
  renderDetail();
}

function live() {
  const source = new EventSource("/api/stream");
  source.addEventListener("hello", () => { $("live").textContent = "live"; $("live").classList.remove("off"); load(); });
  source.addEventListener("alert", (e) => {
    const { alert } = JSON.parse(e.data);
    upsert(alert);
    arrive([alert.alert_id]);
    if (alert.alert_id === selected) renderDetail();
  });
  source.addEventListener("adjudication", (e) => {
    const d = JSON.parse(e.data);
    upsert({ alert_id: d.alert_id, decision: d.decision, outcome: d.outcome });
    updateRow(d.alert_id);
    if (d.alert_id === selected) renderDetail();
  });
  source.onerror = () => { $("live").textContent = "reconnecting…"; $("live").classList.add("off"); };
}

setInterval(refreshTimes, 1000);
load().then(live);
