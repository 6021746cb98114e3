// imagebot usage page: fetches the JSON and draws its charts as inline SVG (no libraries).
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#f2bd1d", "#4c8bf5", "#34a853", "#e8710a", "#9c6ade", "#ea4335"];
const $ = (id) => document.getElementById(id);

function money(value) {
  if (value > 0 && value < 0.01) return "$" + value.toFixed(4);
  return "$" + value.toLocaleString("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 2});
}

function svgNode(name, attrs, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

// A tick step that reads well (0.15, 2, 250...), four ticks reaching at least ``value``.
function niceStep(value, integer) {
  const raw = Math.max(value, integer ? 1 : 0.01) / 4;
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10].map((m) => m * power).find((s) => s >= raw);
  return integer ? Math.max(1, Math.ceil(step)) : step;
}

function chartFrame(container, width, height, label) {
  container.replaceChildren();
  const svg = svgNode("svg", {viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label,
                              class: "chart-svg"});
  container.append(svg);
  return svg;
}

function emptyNote(svg, width, height) {
  svg.append(svgNode("text", {x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty"},
                     "No turns in this period yet."));
}

// Vertical bars per day, stacked by series: series = [{label, color, values: [number per day]}].
function columns(container, days, series, format, label, integer) {
  const width = 1000, height = 260, left = 56, bottom = 26, top = 10;
  const svg = chartFrame(container, width, height, label);
  const totals = days.map((_, i) => series.reduce((sum, s) => sum + (s.values[i] || 0), 0));
  const max = 4 * niceStep(Math.max(0, ...totals), integer);
  const plotH = height - bottom - top, plotW = width - left - 8;
  const y = (v) => top + plotH - (v / max) * plotH;
  for (let t = 0; t <= 4; t++) {
    const value = (max * t) / 4;
    svg.append(svgNode("line", {x1: left, x2: width - 8, y1: y(value), y2: y(value), class: "gridline"}));
    svg.append(svgNode("text", {x: left - 6, y: y(value) + 4, "text-anchor": "end"}, format(value)));
  }
  svg.append(svgNode("line", {x1: left, x2: width - 8, y1: y(0), y2: y(0), class: "axis"}));
  if (!totals.some((v) => v > 0)) {
    emptyNote(svg, width, height);
    return;
  }
  const slot = plotW / Math.max(days.length, 1);
  const barW = Math.max(2, Math.min(36, slot * 0.7));
  const every = Math.ceil(days.length / 12);
  let bars = 0;
  days.forEach((day, i) => {
    const x = left + i * slot + (slot - barW) / 2;
    let base = 0;
    for (const s of series) {
      const value = s.values[i] || 0;
      if (value <= 0) continue;
      const rect = svgNode("rect", {x, y: y(base + value), width: barW,
                                    height: Math.max(1, y(base) - y(base + value)),
                                    fill: s.color, rx: 2, class: "bar", "data-day": day});
      rect.append(svgNode("title", {}, `${day} · ${s.label}: ${format(value)}`));
      svg.append(rect);
      base += value;
      bars += 1;
    }
    if (i % every === 0) {
      svg.append(svgNode("text", {x: x + barW / 2, y: height - 8, "text-anchor": "middle"},
                         day.slice(5)));
    }
  });
  svg.dataset.bars = String(bars);
}

// Horizontal bars, one per row: rows = [{label, value, note}].
function ranking(container, rows, format, label) {
  const rowH = 30, width = 520, labelW = 170, height = Math.max(1, rows.length) * rowH + 8;
  const svg = chartFrame(container, width, height, label);
  if (!rows.length) {
    emptyNote(svg, width, height);
    return;
  }
  const max = Math.max(...rows.map((r) => r.value)) || 1;
  rows.forEach((row, i) => {
    const y = 4 + i * rowH;
    const text = row.label.length > 24 ? row.label.slice(0, 23) + "…" : row.label;
    svg.append(svgNode("text", {x: labelW - 8, y: y + 18, "text-anchor": "end"}, text));
    const barW = Math.max(2, ((width - labelW - 110) * row.value) / max);
    const rect = svgNode("rect", {x: labelW, y: y + 5, width: barW, height: rowH - 12, rx: 3,
                                  fill: PALETTE[1], class: "bar"});
    rect.append(svgNode("title", {}, `${row.label}: ${format(row.value)} (${row.note})`));
    svg.append(rect);
    svg.append(svgNode("text", {x: labelW + barW + 6, y: y + 18, class: "value"},
                       `${format(row.value)} · ${row.note}`));
  });
  svg.dataset.bars = String(rows.length);
}

function drawCharts(data) {
  const colors = new Map(data.models.map((m, i) => [m.id, PALETTE[i % PALETTE.length]]));
  const index = new Map(data.days.map((d, i) => [d, i]));
  const series = data.models.map((m) => ({label: m.label, color: colors.get(m.id),
                                          values: data.days.map(() => 0)}));
  const images = data.days.map(() => 0);
  for (const row of data.daily) {
    const i = index.get(row.day);
    if (i === undefined) continue;
    series[data.models.findIndex((m) => m.id === row.model)].values[i] += row.cost;
    images[i] += row.images;
  }
  columns($("chart-cost"), data.days, series, money, "Daily cost by model", false);
  columns($("chart-images"), data.days, [{label: "Images", color: PALETTE[1], values: images}],
          (v) => v.toLocaleString("en-US"), "Images per day", true);
  const note = (r) => `${r.images} image${r.images === 1 ? "" : "s"}`;
  ranking($("chart-people"), data.top_people.map((r) => ({label: r.label, value: r.cost, note: note(r)})),
          money, "Top people by cost");
  ranking($("chart-channels"), data.top_channels.map((r) => ({label: r.label, value: r.cost, note: note(r)})),
          money, "Top channels by cost");
  $("legend").replaceChildren(...data.models.map((m) => {
    const item = document.createElement("li");
    const swatch = document.createElement("i");
    swatch.style.background = colors.get(m.id);
    item.append(swatch, m.label);
    return item;
  }));
  $("total-cost").textContent = money(data.totals.cost);
  $("total-images").textContent = data.totals.images.toLocaleString("en-US");
  $("total-turns").textContent = data.totals.turns.toLocaleString("en-US");
  $("offline").hidden = !data.offline;
  $("prices").textContent = `Costs from the configured price table (Google's prices as of ${data.prices.source_date}). ` +
    `Days and quotas in ${data.timezone}.`;
}

function cell(row, content, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  td.append(content);
  row.append(td);
}

function rulesText(rules) {
  const entries = Object.entries(rules);
  if (!entries.length) return "—";
  return entries.map(([k, v]) => `${k} = ${Array.isArray(v) ? "[" + v.join(", ") + "]" : v === null ? "inherited" : v}`).join("; ");
}

function drawPolicy(data) {
  const body = $("policy").querySelector("tbody");
  body.replaceChildren(...data.scopes.map((scope) => {
    const row = document.createElement("tr");
    const id = document.createElement("code");
    id.textContent = scope.scope === "*" ? "* (installation)" : scope.scope;
    cell(row, id);
    cell(row, rulesText(scope.rules), Object.keys(scope.rules).length ? "" : "empty");
    const changed = scope.changed_by
      ? `${rulesText(scope.changed)} — by ${scope.changed_by}, ${new Date(scope.changed_at * 1000).toLocaleString()}`
      : "—";
    cell(row, changed, scope.changed_by ? "" : "empty");
    return row;
  }));
}

function drawAudit(data) {
  const select = $("audit-action");
  if (select.options.length === 1) {
    for (const action of data.actions) select.append(new Option(action, action));
  }
  const body = $("audit").querySelector("tbody");
  if (!data.entries.length) {
    const row = document.createElement("tr");
    cell(row, "Nothing recorded in this period.", "empty");
    row.firstChild.colSpan = 5;
    body.replaceChildren(row);
    return;
  }
  body.replaceChildren(...data.entries.map((entry) => {
    const row = document.createElement("tr");
    cell(row, new Date(entry.at * 1000).toLocaleString());
    cell(row, entry.action);
    cell(row, entry.actor_name ? `${entry.actor_name} (${entry.actor})` : entry.actor);
    cell(row, entry.where || "—");
    cell(row, entry.detail.message || entry.summary);
    return row;
  }));
}

async function getJSON(url) {
  const response = await fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}});
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

async function load(since) {
  for (const button of document.querySelectorAll("#range button")) {
    button.setAttribute("aria-pressed", String(button.dataset.since === since));
  }
  const action = $("audit-action").value;
  try {
    const [charts, policy, audit] = await Promise.all([
      getJSON(`/api/usage?since=${encodeURIComponent(since)}`),
      getJSON("/api/usage/policy"),
      getJSON(`/api/usage/audit?since=${encodeURIComponent(since)}&action=${encodeURIComponent(action)}`),
    ]);
    $("error").hidden = true;
    drawCharts(charts);
    drawPolicy(policy);
    drawAudit(audit);
  } catch (error) {
    $("error").textContent = `Could not load usage: ${error.message}`;
    $("error").hidden = false;
  }
  document.body.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", () => {
  let since = new URLSearchParams(location.search).get("since") || "30d";
  for (const button of document.querySelectorAll("#range button")) {
    button.addEventListener("click", () => { since = button.dataset.since; load(since); });
  }
  $("audit-action").addEventListener("change", () => load(since));
  load(since);
});
