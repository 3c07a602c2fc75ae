// The page of mixlens-attn --html: one self-contained HTML file (inline style
// and script, no network), the data embedded as JSON where /*MIXLENS_DATA*/
// stands. See docs/report.md.
//
// The data: {"title", "tokens": [{"id", "text" (or null)}],
//            "maps": [{"name", "kind": "matrix" | "vector", "rows", "cols",
//                      "causal", "data": [row-major values], "target" (vector only)}]}
// Opened with #selftest, the page catches script errors, walks every map,
// clicks a token and hovers a cell, then writes the result into <pre id="selftest">
// ("mixlens-selftest: ok; ..." or "mixlens-selftest: FAILED ..."). #map=K&row=I
// selects a map and a query row.
#pragma once

#include <string_view>

namespace mixlens::tools {

inline constexpr std::string_view report_page = R"mixlens_page(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>mixlens report</title>
<style>
  body { font: 14px/1.4 "DejaVu Sans", sans-serif; margin: 16px 24px; color: #222; }
  h1 { font-size: 18px; margin: 0 0 8px; }
  .controls { margin: 8px 0 12px; display: flex; gap: 16px; align-items: center; flex-wrap: wrap; }
  .main { display: flex; gap: 24px; align-items: flex-start; }
  .plot { position: relative; display: flex; gap: 8px; align-items: flex-start; }
  canvas { flex: none; }
  #tip { position: absolute; pointer-events: none; background: rgba(255,255,255,.95); border: 1px solid #999;
         padding: 2px 6px; font-size: 12px; white-space: pre; display: none; }
  .bar { display: flex; flex-direction: column; align-items: flex-start; gap: 2px; font-size: 12px; margin-top: 4px; }
  .side { max-width: 520px; }
  #tokens { line-height: 2.1; white-space: pre-wrap; font-family: "DejaVu Sans Mono", monospace; }
  #tokens span { padding: 2px 1px; border-radius: 3px; cursor: pointer; border: 1px solid transparent; }
  #tokens span.sel { border-color: #000; }
  #tokens span.after { color: #aaa; }
  .hint { color: #666; font-size: 12px; margin: 0 0 6px; }
  #selftest { font-size: 12px; color: #555; }
</style>
</head>
<body>
<h1 id="title"></h1>
<div class="controls">
  <label>Map <select id="map"></select></label>
  <span id="range"></span>
</div>
<div class="main">
  <div class="plot">
    <canvas id="heat"></canvas>
    <div class="bar"><span id="bar-hi"></span><canvas id="bar" width="14" height="200"></canvas><span id="bar-lo"></span></div>
    <div id="tip"></div>
  </div>
  <div class="side">
    <p class="hint" id="hint"></p>
    <div id="tokens"></div>
  </div>
</div>
<pre id="selftest"></pre>
<script type="application/json" id="data">/*MIXLENS_DATA*/</script>
<script>
"use strict";
const errors = [];
window.onerror = (message) => { errors.push(String(message)); };

const D = JSON.parse(document.getElementById("data").textContent);
const L = D.tokens.length;
const $ = (id) => document.getElementById(id);
const label = (i) => {
  const t = D.tokens[i].text;
  if (t === null) return "#" + D.tokens[i].id;
  return t === "" ? "\u2205" : t.replace(/ /g, "\u2423").replace(/\n/g, "\u21b5").replace(/\t/g, "\u2192");
};
const fmt = (v) => (v === null ? "-" : Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(2) : v.toPrecision(3));

// Colour maps: viridis (sequential) and blue-white-red (signed), linear between anchors.
const VIRIDIS = [[68,1,84],[71,44,122],[59,81,139],[44,113,142],[33,144,141],[39,173,129],[92,200,99],[170,220,50],[253,231,37]];
const DIVERGING = [[49,54,149],[69,117,180],[116,173,209],[171,217,233],[255,255,255],[253,174,97],[244,109,67],[215,48,39],[165,0,38]];
function ramp(anchors, x) {
  x = Math.min(1, Math.max(0, x)) * (anchors.length - 1);
  const i = Math.min(anchors.length - 2, Math.floor(x)), f = x - i;
  return anchors[i].map((c, k) => Math.round((1 - f) * c + f * anchors[i + 1][k]));
}
// value -> [r, g, b] for a map's range: diverging around 0 when a value is negative.
function scale(lo, hi) {
  const signed = lo < 0, half = Math.max(Math.abs(lo), Math.abs(hi)) || 1, span = hi > lo ? hi - lo : 1;
  return signed ? (v) => ramp(DIVERGING, 0.5 + 0.5 * v / half) : (v) => ramp(VIRIDIS, (v - lo) / span);
}
const css = (rgb) => "rgb(" + rgb.join(",") + ")";

const state = { map: 0, row: L - 1 };
const masked = (m, i, j) => m.causal && j > i;
const value = (m, i, j) => (m.kind === "vector" ? m.data[j] : m.data[i * m.cols + j]);
function range(m) {
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < m.rows; ++i)
    for (let j = 0; j < m.cols; ++j) {
      if (masked(m, i, j)) continue;
      const v = value(m, i, j);
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  return lo <= hi ? [lo, hi] : [0, 0];
}

// The heatmap (or, for a vector, a bar chart) with token labels on the axes.
const heat = $("heat"), ctx = heat.getContext("2d");
const layout = { left: 0, top: 8, cell: 1 };
function draw() {
  const m = D.maps[state.map], [lo, hi] = range(m), colour = scale(lo, hi);
  const cell = Math.max(1, Math.floor(560 / L)), labels = cell >= 6;
  const step = Math.max(1, Math.ceil(14 / cell));
  ctx.font = "11px sans-serif";
  let widest = 0;
  for (let i = 0; i < L; i += step) widest = Math.max(widest, ctx.measureText(label(i).slice(0, 10)).width);
  layout.left = labels ? Math.ceil(widest) + 10 : 30;
  layout.cell = cell;
  const size = cell * L, rows = m.kind === "vector" ? 1 : L, plotH = m.kind === "vector" ? 220 : size;
  heat.width = layout.left + size + 8;
  heat.height = layout.top + plotH + (labels ? Math.ceil(widest) + 12 : 20);
  heat.style.width = heat.width + "px";
  heat.style.height = heat.height + "px";
  ctx.font = "11px sans-serif";
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, heat.width, heat.height);
  if (m.kind === "vector") {
    const top = Math.max(hi, 0), bottom = Math.min(lo, 0), span = top - bottom || 1;
    const y = (v) => layout.top + (top - v) / span * plotH;
    for (let j = 0; j < L; ++j) {
      const v = m.data[j];
      ctx.fillStyle = v >= 0 ? "#d62728" : "#1f77b4";
      ctx.fillRect(layout.left + j * cell, Math.min(y(v), y(0)), Math.max(1, cell - (cell >= 4 ? 1 : 0)), Math.abs(y(v) - y(0)));
    }
    ctx.fillStyle = "#000";
    ctx.fillRect(layout.left, y(0), size, 1);
  } else {
    const img = ctx.createImageData(L, rows);
    for (let i = 0; i < rows; ++i)
      for (let j = 0; j < L; ++j) {
        const rgb = masked(m, i, j) ? [200, 200, 200] : colour(value(m, i, j)), k = 4 * (i * L + j);
        img.data[k] = rgb[0]; img.data[k + 1] = rgb[1]; img.data[k + 2] = rgb[2]; img.data[k + 3] = 255;
      }
    const off = document.createElement("canvas");
    off.width = L; off.height = rows;
    off.getContext("2d").putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(off, layout.left, layout.top, size, size);
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 2;
    ctx.strokeRect(layout.left + 1, layout.top + state.row * cell, size - 2, cell);
  }
  // Axis labels: token strings, thinned; the x axis rotated.
  ctx.fillStyle = "#222";
  for (let i = 0; i < L; i += step) {
    const text = labels ? label(i).slice(0, 10) : String(i), c = (i + 0.5) * cell;
    if (m.kind !== "vector") {
      ctx.textAlign = "right";
      ctx.fillText(text, layout.left - 4, layout.top + c + 4);
    }
    ctx.save();
    ctx.translate(layout.left + c + 4, layout.top + plotH + 4);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "right";
    ctx.fillText(text, 0, 0);
    ctx.restore();
  }
  // The colour bar spans the data's range.
  const bar = $("bar"), b = bar.getContext("2d");
  bar.height = Math.max(120, Math.min(plotH, 400));
  bar.style.width = bar.width + "px";
  bar.style.height = bar.height + "px";
  for (let y = 0; y < bar.height; ++y) {
    b.fillStyle = css(m.kind === "vector" ? (hi - (hi - lo) * y / (bar.height - 1) >= 0 ? [214, 39, 40] : [31, 119, 180])
                                          : colour(hi - (hi - lo) * y / (bar.height - 1)));
    b.fillRect(0, y, bar.width, 1);
  }
  $("bar-hi").textContent = fmt(hi);
  $("bar-lo").textContent = fmt(lo);
  $("range").textContent = "range " + fmt(lo) + " \u2026 " + fmt(hi) + (m.causal ? "; upper triangle masked (causal)" : "");
  colourTokens();
}

// The text, coloured by the selected query's row (a vector: by its values).
const tokenEls = [];
function colourTokens() {
  const m = D.maps[state.map], vector = m.kind === "vector";
  const row = [];
  for (let j = 0; j < L; ++j) row.push(masked(m, state.row, j) ? null : value(m, state.row, j));
  const finite = row.filter((v) => v !== null);
  const colour = scale(Math.min(0, ...finite), Math.max(...finite));
  tokenEls.forEach((el, j) => {
    el.style.background = row[j] === null ? "transparent" : css(colour(row[j]));
    const rgb = row[j] === null ? [255, 255, 255] : colour(row[j]);
    el.style.color = row[j] === null ? "" : 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] < 110 ? "#fff" : "#000";
    el.className = (!vector && j === state.row ? "sel" : "") + (row[j] === null ? " after" : "");
  });
  $("hint").textContent = vector ? m.name + (m.target !== undefined ? " (target position " + m.target + ")" : "")
                                 : "Query " + state.row + " \u201c" + label(state.row) + "\u201d: its row colours the text. Click a token to choose another.";
}

function tip(text, x, y) {
  const t = $("tip");
  t.textContent = text;
  t.style.left = x + 12 + "px";
  t.style.top = y + 12 + "px";
  t.style.display = text ? "block" : "none";
}
heat.addEventListener("mousemove", (e) => {
  const m = D.maps[state.map], r = heat.getBoundingClientRect();
  const j = Math.floor((e.clientX - r.left - layout.left) / layout.cell);
  const i = m.kind === "vector" ? 0 : Math.floor((e.clientY - r.top - layout.top) / layout.cell);
  if (j < 0 || j >= L || i < 0 || i >= L) return tip("", 0, 0);
  const key = "key " + j + " \u201c" + label(j) + "\u201d";
  if (m.kind === "vector") return tip(key + "\nscore " + fmt(value(m, 0, j)), e.clientX - r.left, e.clientY - r.top);
  tip("query " + i + " \u201c" + label(i) + "\u201d\n" + key + "\n" + (masked(m, i, j) ? "masked (causal)" : "value " + fmt(value(m, i, j))),
      e.clientX - r.left, e.clientY - r.top);
});
heat.addEventListener("mouseleave", () => tip("", 0, 0));
heat.addEventListener("click", (e) => {
  const r = heat.getBoundingClientRect(), i = Math.floor((e.clientY - r.top - layout.top) / layout.cell);
  if (D.maps[state.map].kind !== "vector" && i >= 0 && i < L) select(i);
});
function select(i) { state.row = i; draw(); }

// Set-up: title, map selector, token spans; #map=K&row=I from the address.
$("title").textContent = D.title;
D.maps.forEach((m, k) => $("map").add(new Option(m.name, String(k))));
$("map").addEventListener("change", () => { state.map = Number($("map").value); draw(); });
D.tokens.forEach((t, j) => {
  const el = document.createElement("span");
  el.textContent = t.text === null ? "#" + t.id + " " : t.text.replace(/\n/g, "\u21b5\n");
  el.title = j + ": id " + t.id;
  el.addEventListener("click", () => select(j));
  $("tokens").appendChild(el);
  tokenEls.push(el);
});
const params = new URLSearchParams(location.hash.slice(1));
if (params.has("map")) state.map = Math.min(D.maps.length - 1, Math.max(0, Number(params.get("map")) || 0));
if (params.has("row")) state.row = Math.min(L - 1, Math.max(0, Number(params.get("row")) || 0));
$("map").value = String(state.map);
draw();

// #selftest: every map drawn, a token clicked (the row and the colours must
// change), a cell hovered; the result written into the page.
if (params.has("selftest")) {
  const problems = [];
  try {
    for (let k = 0; k < D.maps.length; ++k) { $("map").value = String(k); $("map").dispatchEvent(new Event("change")); }
    const first = D.maps.findIndex((m) => m.kind === "matrix");
    if (first < 0) problems.push("no matrix map");
    $("map").value = String(first); $("map").dispatchEvent(new Event("change"));
    const before = state.row, colours = tokenEls.map((el) => el.style.background).join("|");
    const target = before === 0 ? L - 1 : 0;
    tokenEls[target].dispatchEvent(new MouseEvent("click", { bubbles: true }));
    if (state.row !== target) problems.push("row " + state.row + " after clicking token " + target);
    if (L > 1 && tokenEls.map((el) => el.style.background).join("|") === colours) problems.push("the colours did not change");
    if (!tokenEls[target].classList.contains("sel")) problems.push("the clicked token is not marked");
    const r = heat.getBoundingClientRect();
    heat.dispatchEvent(new MouseEvent("mousemove", { clientX: r.left + layout.left + (target + 0.5) * layout.cell,
                                                     clientY: r.top + layout.top + (target + 0.5) * layout.cell }));
    if (!$("tip").textContent.includes("query " + target)) problems.push("hover shows '" + $("tip").textContent + "'");
    var summary = "row " + before + " -> " + state.row + "; maps " + D.maps.length + "; tokens " + L;
  } catch (e) {
    problems.push("exception: " + e);
  }
  problems.push(...errors.map((m) => "script error: " + m));
  $("selftest").textContent = problems.length === 0 ? "mixlens-selftest: ok; errors 0; " + summary
                                                    : "mixlens-selftest: FAILED; errors " + errors.length + "; " + problems.join("; ");
}
</script>
</body>
</html>
)mixlens_page";

}  // namespace mixlens::tools
