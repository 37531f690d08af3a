// The review console page: queue from /api/alerts, live updates over server-sent events,
// keyboard-first adjudication. The server authorises everything; this only presents it.
"use strict";
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const alerts = new Map();   // alert_id -> summary
let order = [];             // alert ids, newest first
let selected = null;
let serverOffsetMs = 0;

const $ = (id) => document.getElementById(id);
const label = (s) => (s || "").replace(/_/g, " ");

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() + serverOffsetMs - ms) / 1000));
  return s < 60 ? `${s} s` : s < 3600 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function upsert(a) {
  alerts.set(a.alert_id, Object.assign(alerts.get(a.alert_id) || {}, a));
  order = [...alerts.values()].sort((x, y) => y.alert_at_ms - x.alert_at_ms).map((x) => x.alert_id);
}

function renderQueue() {
  const list = $("queue");
  list.replaceChildren(...order.map((id) => {
    const a = alerts.get(id);
    const li = document.createElement("li");
    li.id = "alert-" + id;
    li.dataset.alertId = id;
    li.className = `${a.priority}${id === selected ? " selected" : ""}${a.decision ? " decided" : ""}`;
    li.innerHTML = `<span><b></b> · <span class="ref"></span></span><span class="score"></span><span class="meta"></span>`;
    li.querySelector("b").textContent = `${a.priority.toUpperCase()} ${label(a.category)}`;
    li.querySelector(".ref").textContent = a.reference;
    li.querySelector(".score").textContent = a.score.toFixed(3);
    li.querySelector(".meta").textContent = metaText(a);
    li.addEventListener("click", () => select(id));
    return li;
  }));
  $("empty").hidden = order.length > 0;
}

function metaText(a) {
  return `${a.camera_id} · ${ago(a.last_seen_ms)} ago · ${a.sightings} sighting(s)` +
    (a.decision ? ` · ${label(a.decision)}${a.outcome ? ", " + label(a.outcome) : ""}` : "");
}

// Once a second only the times change: the list itself is rebuilt only when an alert changes,
// so a row never moves or is replaced under the officer's pointer.
function refreshTimes() {
  for (const li of $("queue").children) {
    const a = alerts.get(li.dataset.alertId);
    if (a) li.querySelector(".meta").textContent = metaText(a);
  }
  const a = alerts.get(selected);
  if (a) $("f-since").textContent = ago(a.last_seen_ms);
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
  $("f-priority").textContent = a.priority.toUpperCase();
  $("f-priority").className = "prio-" + a.priority;
  $("f-score").textContent = a.score.toFixed(3);
  $("f-threshold").textContent = a.threshold.toFixed(2);
  $("f-category").textContent = label(a.category);
  $("f-reference").textContent = a.reference;
  $("f-camera").textContent = `${a.camera_id} (${a.deployment_id})`;
  $("f-since").textContent = ago(a.last_seen_ms);
  $("f-sightings").textContent = a.sightings;
  $("f-status").textContent = status(a);
  $("decide").hidden = !!a.decision;
  $("engage").hidden = !(a.decision && a.decision !== "rejected" && !a.outcome);
}

function select(id) {
  selected = id;
  $("message").textContent = "";
  $("reason").hidden = true;
  renderQueue();
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
  renderQueue(); renderDetail();
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
  renderQueue(); renderDetail();
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
  else if (["1", "2", "3", "4"].includes(k)) recordOutcome(["not_stopped", "spoken_to", "arrested", "other"][+k - 1]);
});
document.querySelectorAll("[data-decision]").forEach((b) => b.addEventListener("click", () => decide(b.dataset.decision)));
document.querySelectorAll("[data-outcome]").forEach((b) => b.addEventListener("click", () => recordOutcome(b.dataset.outcome)));
$("sign-out").addEventListener("click", async () => { await post("/logout", {}).catch(() => {}); location.href = "/login"; });

async function load() {
  const response = await fetch("/api/alerts", { credentials: "same-origin" });
  if (response.status === 401) { location.href = "/login"; return; }
  const data = await response.json();
  serverOffsetMs = data.now_ms - Date.now();
  data.alerts.forEach(upsert);
  if (!selected && order.length) selected = order[0];
  renderQueue(); renderDetail();
}

function live() {
  const source = new EventSource("/api/stream");
  source.addEventListener("hello", () => { $("live").textContent = "live"; $("live").classList.remove("off"); load(); });
  source.addEventListener("alert", (e) => {
    const { alert } = JSON.parse(e.data);
    upsert(alert);
    if (!selected) selected = alert.alert_id;
    renderQueue(); renderDetail();
  });
  source.addEventListener("adjudication", (e) => {
    const d = JSON.parse(e.data);
    upsert({ alert_id: d.alert_id, decision: d.decision, outcome: d.outcome });
    renderQueue(); renderDetail();
  });
  source.onerror = () => { $("live").textContent = "reconnecting…"; $("live").classList.add("off"); };
}

setInterval(refreshTimes, 1000);
load().then(live);
