// cryoflow picker page: draws what the server returns and sends clicks; the server owns the
// data (slices, marks, picks, coordinates, files). Every request carries the access token.
"use strict";
const TOKEN = new URLSearchParams(location.search).get("token") || "";
const $ = (id) => document.getElementById(id);
const state = { tomo: null, level: null, seq: 0, list: [], undo: [] };

async function api(path, body) {
  const opts = { headers: { "X-Cryoflow-Token": TOKEN } };
  if (body !== undefined) {
    opts.method = "POST";
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return r;
}

function say(msg, error) {
  const s = $("status");
  s.textContent = msg;
  s.className = error ? "error" : "";
}

function normal() { return { z: 0, y: 1, x: 2 }[$("axis").value]; }

function planeShape() {  // level-0 (rows, cols) of the current plane
  const [Z, Y, X] = state.tomo.shape;
  return { z: [Y, X], y: [Z, X], x: [Z, Y] }[$("axis").value];
}

function viewQuery() {
  return new URLSearchParams({
    tomogram: state.tomo.name, axis: $("axis").value, index: $("index").value,
  });
}

async function loadTomograms() {
  const data = await (await api("api/tomograms")).json();
  $("store").textContent = data.store + " (" + data.key + ")";
  state.list = data.tomograms;
  const body = $("tomograms").querySelector("tbody");
  body.innerHTML = "";
  for (const t of data.tomograms) {
    const tr = document.createElement("tr");
    tr.dataset.name = t.name;
    if (state.tomo && state.tomo.name === t.name) tr.className = "open";
    for (const v of [t.name, t.shape.join(" x "), t.positives, t.negatives, t.pending,
      t.accepted, t.rejected]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.appendChild(td);
    }
    tr.onclick = () => openTomogram(t.name);
    body.appendChild(tr);
  }
  if (state.tomo) state.tomo = data.tomograms.find((t) => t.name === state.tomo.name);
  const range = state.tomo && state.tomo.score_range;
  if (range) {  // the slider spans 0..1 and any score outside it
    $("threshold").min = Math.min(0, range[0]);
    $("threshold").max = Math.max(1, range[1]);
  }
  return data.tomograms;
}

function openTomogram(name) {
  state.tomo = state.list.find((t) => t.name === name);
  for (const tr of $("tomograms").querySelectorAll("tbody tr")) {
    tr.className = tr.dataset.name === name ? "open" : "";
  }
  resetIndex();
  render();
}

function resetIndex() {
  const n = state.tomo.shape[normal()];
  for (const el of [$("index"), $("index-n")]) { el.max = n - 1; el.value = Math.floor(n / 2); }
}

function displaySize() {
  const [rows, cols] = planeShape();
  const box = $("viewer");
  const s = Math.min(box.clientWidth / cols, box.clientHeight / rows) * Number($("zoom").value);
  return [Math.max(1, Math.round(cols * s)), Math.max(1, Math.round(rows * s))];
}

async function render() {
  if (!state.tomo) return;
  const seq = ++state.seq;
  const [w, h] = displaySize();
  const q = viewQuery();
  q.set("fit_w", w); q.set("fit_h", h);
  q.set("low", $("low").value); q.set("high", $("high").value);
  try {
    const r = await api("api/slice?" + q);
    const blob = await r.blob();
    if (seq !== state.seq) return;  // a newer view was asked for
    state.level = Number(r.headers.get("X-Cryoflow-Level"));
    const img = $("slice");
    const url = URL.createObjectURL(blob);
    await new Promise((ok) => { img.onload = ok; img.src = url; });
    img.style.width = w + "px"; img.style.height = h + "px";
    const svg = $("overlay");
    svg.setAttribute("width", w); svg.setAttribute("height", h);
    svg.setAttribute("viewBox", "0 0 " + img.naturalWidth + " " + img.naturalHeight);
    svg.setAttribute("preserveAspectRatio", "none");
    await drawOverlay(seq);
  } catch (e) { say("slice: " + e.message, true); }
}

async function drawOverlay(seq) {
  const q = viewQuery();
  q.set("level", state.level); q.set("radius", $("radius").value);
  q.set("threshold", $("threshold").value);
  const data = await (await api("api/overlay?" + q)).json();
  if (seq !== undefined && seq !== state.seq) return;
  const svg = $("overlay");
  svg.innerHTML = "";
  for (const it of data.items) {
    const c = document.createElementNS("http://www.w3.org/2000/svg", "circle");
    c.setAttribute("cx", it.u); c.setAttribute("cy", it.v); c.setAttribute("r", it.r);
    c.setAttribute("class", it.kind);
    c.dataset.table = it.table; c.dataset.id = it.id;
    if (it.score !== null) c.dataset.score = it.score;
    svg.appendChild(c);
  }
  svg.dataset.count = data.items.length;
}

async function click(ev) {
  if (!state.tomo || state.level === null) return;
  const img = $("slice");
  const u = (ev.offsetX / img.clientWidth) * img.naturalWidth;
  const v = (ev.offsetY / img.clientHeight) * img.naturalHeight;
  const checked = document.querySelector("input[name=mode]:checked").value;
  const mode = ev.shiftKey ? "negative" : checked;
  try {
    const r = await (await api("api/click", {
      tomogram: state.tomo.name, axis: $("axis").value, index: Number($("index").value),
      level: state.level, u, v, mode, radius: Number($("radius").value),
    })).json();
    say(r.action + (r.xyz ? " " + r.kind + " at x, y, z = " + r.xyz.join(", ") : " " + r.id));
    const name = state.tomo.name;
    if (r.action === "added") state.undo.push(["api/marks", { tomogram: name, op: "remove", id: r.id }]);
    else if (r.action === "removed") {
      const [x, y, z] = r.xyz;
      state.undo.push(["api/marks", { tomogram: name, op: "add", x, y, z, kind: r.kind }]);
    } else pushPicks(name, r.previous);
    await drawOverlay();
    await loadTomograms();
  } catch (e) { say("click: " + e.message, true); }
}

async function save() {
  try {
    const r = await (await api("api/save", {
      what: $("what").value, path: $("path").value, overwrite: $("overwrite").checked,
    })).json();
    say("saved " + r.rows + " row(s) to " + r.files.join(", "));
  } catch (e) { say("save: " + e.message, true); }
}

async function findRest() {
  const job = $("job");
  job.className = "";
  try {
    let params = {};
    const text = $("params").value.trim();
    if (text) {
      try { params = JSON.parse(text); } catch (e) { throw new Error("options are not JSON: " + e.message); }
    }
    const body = { radius: Number($("radius").value), params };
    if ($("only-this").checked && state.tomo) body.names = [state.tomo.name];
    let j = await (await api("api/find", body)).json();
    $("find").disabled = true;
    while (j.state === "running") {
      job.textContent = j.phase + " (" + j.elapsed_s + " s)";
      if (j.dashboard) {
        const a = document.createElement("a");
        a.href = j.dashboard; a.textContent = " dashboard"; a.target = "_blank";
        job.appendChild(a);
      }
      await new Promise((ok) => setTimeout(ok, 500));
      j = await (await api("api/jobs/" + j.id)).json();
    }
    if (j.state === "failed") throw new Error(j.error);
    const n = Object.values(j.result.picks).reduce((a, b) => a + b, 0);
    job.textContent = "done: " + n + " pick(s) in " + j.elapsed_s + " s";
    await loadTomograms();
    await drawOverlay();
  } catch (e) {
    job.textContent = "find the rest: " + e.message;
    job.className = "error";
  } finally { $("find").disabled = false; }
}

async function decide(status) {
  if (!state.tomo) return;
  try {
    const r = await (await api("api/picks", {
      tomogram: state.tomo.name, status, threshold: Number($("threshold").value),
    })).json();
    say(status + " " + r.changed + " pick(s)");
    pushPicks(state.tomo.name, r.previous);
    await loadTomograms();
    await drawOverlay();
  } catch (e) { say(status + ": " + e.message, true); }
}

function pushPicks(name, previous) {  // undo: each pick back to its previous status
  const by = {};
  for (const [id, st] of Object.entries(previous)) (by[st] = by[st] || []).push(Number(id));
  for (const [st, ids] of Object.entries(by)) {
    state.undo.push(["api/picks", { tomogram: name, status: st, ids }]);
  }
}

async function undo() {
  const last = state.undo.pop();
  if (!last) { say("nothing to undo"); return; }
  try {
    await api(last[0], last[1]);
    say("undone");
    await loadTomograms();
    await drawOverlay();
  } catch (e) { say("undo: " + e.message, true); }
}

function step(d) {
  const el = $("index");
  el.value = Math.min(Number(el.max), Math.max(0, Number(el.value) + d));
  $("index-n").value = el.value;
  render();
}

function init() {
  $("slice").addEventListener("click", click);
  $("index").addEventListener("input", () => { $("index-n").value = $("index").value; render(); });
  $("index-n").addEventListener("change", () => { $("index").value = $("index-n").value; render(); });
  $("axis").addEventListener("change", () => { resetIndex(); render(); });
  for (const id of ["zoom", "low", "high"]) $(id).addEventListener("change", render);
  $("radius").addEventListener("change", () => drawOverlay());
  $("threshold").addEventListener("input", () => {
    $("threshold-n").textContent = Number($("threshold").value).toFixed(2);
    drawOverlay();
  });
  $("save").addEventListener("click", save);
  $("undo").addEventListener("click", undo);
  $("find").addEventListener("click", findRest);
  $("accept").addEventListener("click", () => decide("accepted"));
  $("reject").addEventListener("click", () => decide("rejected"));
  document.addEventListener("keydown", (ev) => {
    if (ev.target.tagName === "INPUT" && ev.target.type !== "range") return;
    if (ev.key === "z" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); undo(); return; }
    const d = { ArrowUp: 1, ArrowDown: -1, PageUp: 10, PageDown: -10 }[ev.key];
    if (d !== undefined) { ev.preventDefault(); step(d); }
  });
  window.addEventListener("resize", render);
  loadTomograms().then((list) => {
    if (list.length) openTomogram(list[0].name);
    else say("no tomograms with a volume in this store");
  }).catch((e) => say(e.message, true));
}
init();
