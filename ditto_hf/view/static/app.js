// ditto-hf view: a paged grid of triplets with synced source / edited players, a detail view,
// filters and keyboard navigation. No libraries; everything comes from this server.
"use strict";

const PAGE_SIZE = 12;
const state = { page: 0, rows: [], selected: 0, hasMore: false, total: null, request: 0 };
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

async function getJSON(url) {
  const response = await fetch(url);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

// -- media ---------------------------------------------------------------------------------------
function errorTile(name, reason) {
  return el("div", { class: "error-tile", "data-error": name }, el("strong", {}, `${name}: cannot be shown`), reason);
}

// A row that never got this video (rejected or failed before the stage that writes it).
function missingTile(name, fields) {
  const why = fields.stage ? ` (${fields.status || "stopped"} by ${fields.stage})` : "";
  return el("div", { class: "media" }, el("div", { class: "none-tile" }, `no ${name} video${why}`));
}

// Replace a media element by an error tile with the server's reason (or the browser's, if the server finds none).
async function showError(box, name, url, browserReason) {
  let reason = browserReason;
  try {
    const checked = await getJSON(url.replace("/media/", "/api/check/"));
    if (!checked.ok) reason = checked.reason;
    else if (checked.codec) reason = `${browserReason} (stored as ${checked.codec}, ${checked.width}x${checked.height})`;
  } catch (error) {
    reason = `${browserReason}; ${error.message}`;
  }
  box.replaceChildren(errorTile(name, reason));
  box.dataset.failed = "true";
}

function mediaBox(name, media, { controls = false } = {}) {
  const box = el("div", { class: "media", "data-name": name });
  if (media.kind === "image") {
    const image = el("img", { src: media.url, alt: name, loading: "lazy" });
    image.addEventListener("error", () => showError(box, name, media.url, "the browser could not decode this image"));
    box.append(image);
  } else {
    const video = el("video", { src: media.url, muted: "", playsinline: "", preload: "auto", loop: "", "data-role": name });
    video.muted = true;
    if (controls) video.controls = true;
    video.addEventListener("error", () => {
      const code = video.error ? video.error.code : 0;
      showError(box, name, media.url, `the browser could not play this video (media error ${code})`);
    });
    box.append(video);
  }
  if (media.ok === false) box.replaceChildren(errorTile(name, media.reason));
  else box.append(el("span", { class: "label" }, name));
  return box;
}

// One play / pause / seek for both videos: whatever happens to one is applied to the others. An
// echo (the other player's own event) finds them already in the same state and does nothing.
function syncPlayers(videos, button, slider) {
  const others = (video) => videos.filter((other) => other !== video && other.isConnected);
  for (const video of videos) {
    video.addEventListener("play", () => { for (const o of others(video)) if (o.paused) o.play().catch(() => {}); update(); });
    video.addEventListener("pause", () => { for (const o of others(video)) if (!o.paused) o.pause(); update(); });
    video.addEventListener("seeking", () => {
      for (const o of others(video)) if (Math.abs(o.currentTime - video.currentTime) > 0.04) o.currentTime = video.currentTime;
    });
    video.addEventListener("timeupdate", () => {
      if (video === videos[0] && video.duration) slider.value = String(video.currentTime / video.duration);
    });
  }
  function update() { button.textContent = videos.some((v) => v.isConnected && !v.paused) ? "❚❚" : "▶"; }
  // Blur after a click so that space, the page's play key, does not also press the button again.
  button.addEventListener("click", (event) => { event.stopPropagation(); button.blur(); toggle(videos); });
  slider.addEventListener("click", (event) => event.stopPropagation());
  slider.addEventListener("change", () => slider.blur()); // give ←/→ back to row navigation
  slider.addEventListener("input", () => {
    const first = videos.find((v) => v.isConnected && v.duration);
    if (first) first.currentTime = Number(slider.value) * first.duration;
  });
}

function toggle(videos) {
  const live = videos.filter((v) => v.isConnected);
  if (!live.length) return;
  if (live.some((v) => !v.paused)) live.forEach((v) => v.pause());
  else live[0].play().catch(() => {});
}

// -- the grid ------------------------------------------------------------------------------------
function scoresText(scores) {
  if (!scores || typeof scores !== "object") return "";
  return Object.entries(scores)
    .filter(([, v]) => v != null) // a score this sample never got
    .map(([k, v]) => `${k} ${typeof v === "number" ? v.toFixed(3) : v}`)
    .join(" · ");
}

function tile(row, position) {
  const f = row.fields;
  const status = f.status || "";
  const pair = el("div", { class: "pair" });
  for (const name of ["source", "edited"]) {
    pair.append(row.media[name] ? mediaBox(name, row.media[name]) : missingTile(name, f));
  }
  const button = el("button", { type: "button", class: "play", title: "play / pause both (space)" }, "▶");
  const slider = el("input", { type: "range", min: "0", max: "1", step: "0.001", value: "0", title: "seek both" });
  syncPlayers([...pair.querySelectorAll("video")], button, slider);
  const reason = f.reason || f.error || "";
  const node = el(
    "article",
    { class: "tile", "data-index": row.index, "data-position": position, onclick: () => { select(position); openDetail(row.index); } },
    el("div", { class: "head" }, `#${row.index}`, status ? el("span", { class: `badge ${status}` }, status) : null,
       el("span", {}, f.category || f.edit_type || ""), el("span", {}, f.sample_id || "")),
    pair,
    el("div", { class: "controls" }, button, slider),
    el("p", { class: "instruction" }, f.instruction || el("em", {}, "no instruction")),
    el("div", { class: "scores" }, scoresText(f.scores)),
    reason ? el("div", { class: "reason" }, `${f.stage ? f.stage + ": " : ""}${reason}`) : null,
  );
  return node;
}

function filters() {
  const params = new URLSearchParams();
  for (const id of ["category", "status", "search"]) {
    const value = $(id).value.trim();
    if (value) params.set(id === "search" ? "q" : id, value);
  }
  return params;
}

function fillOptions(select, values) {
  const current = select.value;
  const have = new Set([...select.options].map((o) => o.value));
  for (const value of values) if (!have.has(value)) select.append(el("option", { value }, value));
  select.value = current;
}

async function load(page, selectAt = 0) {
  const request = ++state.request;
  document.body.dataset.state = "loading";
  const params = filters();
  params.set("page", page);
  params.set("size", PAGE_SIZE);
  let body;
  try {
    body = await getJSON(`/api/rows?${params}`);
  } catch (error) {
    $("message").hidden = false;
    $("message").textContent = `Could not load rows: ${error.message}`;
    document.body.dataset.state = "error";
    return;
  }
  if (request !== state.request) return; // a newer request (filter change) won
  Object.assign(state, { page, rows: body.rows, hasMore: body.has_more, total: body.total });
  fillOptions($("category"), body.facets.category || []);
  fillOptions($("status"), body.facets.status || []);
  for (const video of $("grid").querySelectorAll("video")) { video.pause(); video.removeAttribute("src"); video.load(); }
  $("grid").replaceChildren(...body.rows.map(tile));
  $("message").hidden = body.rows.length > 0;
  $("message").textContent = "No row matches these filters.";
  const first = page * PAGE_SIZE + 1;
  const total = body.total == null ? "…" : body.total;
  $("page-label").textContent = body.rows.length ? `rows ${first}–${first + body.rows.length - 1} of ${total}` : `0 of ${total}`;
  $("prev").disabled = page === 0;
  $("next").disabled = !body.has_more;
  select(selectAt === "last" ? body.rows.length - 1 : selectAt);
  document.body.dataset.state = "ready";
}

function select(position) {
  const tiles = [...$("grid").children];
  if (!tiles.length) return;
  state.selected = Math.max(0, Math.min(position, tiles.length - 1));
  tiles.forEach((t, i) => t.classList.toggle("selected", i === state.selected));
  tiles[state.selected].scrollIntoView({ block: "nearest" });
}

function move(step) {
  const next = state.selected + step;
  if (next >= state.rows.length) { if (state.hasMore) load(state.page + 1, 0); }
  else if (next < 0) { if (state.page > 0) load(state.page - 1, "last"); }
  else select(next);
}

// -- the detail view -----------------------------------------------------------------------------
async function openDetail(index) {
  const body = $("detail-body");
  body.replaceChildren(el("p", {}, `Loading row ${index}…`));
  if (!$("detail").open) $("detail").showModal();
  let row;
  try {
    row = await getJSON(`/api/row/${index}`);
  } catch (error) {
    body.replaceChildren(el("div", { class: "media" }, errorTile(`row ${index}`, error.message)));
    return;
  }
  const media = el("div", { class: "detail-media" });
  for (const [name, item] of Object.entries(row.media)) media.append(mediaBox(name, item, { controls: true }));
  const videos = [...media.querySelectorAll("video")];
  syncPlayers(videos, el("button"), el("input", { type: "range" }));
  const table = el("table", { class: "fields" });
  for (const [name, value] of Object.entries(row.fields)) {
    const text = value !== null && typeof value === "object" ? JSON.stringify(value, null, 1) : String(value ?? "");
    table.append(el("tr", {}, el("td", {}, name), el("td", {}, text)));
  }
  body.replaceChildren(el("h2", {}, `Row ${index}`), media, table);
}

function closeDetail() {
  for (const video of $("detail").querySelectorAll("video")) video.pause();
  if ($("detail").open) $("detail").close();
}

// -- wiring --------------------------------------------------------------------------------------
document.addEventListener("keydown", (event) => {
  if (event.target.closest && event.target.closest("input, select, textarea")) return;
  if (event.key === " " && event.target.closest && event.target.closest("button")) event.target.blur();
  if ($("detail").open) { if (event.key === "Escape") closeDetail(); return; }
  if (event.key === "ArrowRight") move(1);
  else if (event.key === "ArrowLeft") move(-1);
  else if (event.key === " ") {
    const tileNode = $("grid").children[state.selected];
    if (tileNode) toggle([...tileNode.querySelectorAll("video")]);
  } else if (event.key === "Enter" && state.rows[state.selected]) openDetail(state.rows[state.selected].index);
  else return;
  event.preventDefault();
});

let searchTimer = null;
$("filters").addEventListener("submit", (event) => { event.preventDefault(); load(0); });
$("category").addEventListener("change", () => load(0));
$("status").addEventListener("change", () => load(0));
$("search").addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(() => load(0), 250); });
$("prev").addEventListener("click", () => load(state.page - 1));
$("next").addEventListener("click", () => load(state.page + 1));
$("close").addEventListener("click", closeDetail);
$("detail").addEventListener("close", closeDetail);

getJSON("/api/info").then((info) => { $("title").textContent = `ditto-hf view — ${info.title}`; document.title = `ditto-hf view — ${info.title}`; });
load(0);
