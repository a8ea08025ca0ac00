// The time charts and bars of the analyst page: approval over time, pairs and tasks, the queue, dead letters.

import {
  COLORS,
  barChart,
  chartRoot,
  dataStart,
  clip,
  fmt,
  label,
  linear,
  niceMax,
  svg,
  timeLabel,
  timeTicks,
  titled,
  when,
  xAxis,
  yAxis,
} from "./charts.js";

const ms = (iso) => Date.parse(iso);
const FLOW = [
  { key: "pairs", name: "pairs published", color: "#0072B2" },
  { key: "tasks_requested", name: "tasks requested", color: "#E69F00" },
  { key: "tasks_answered", name: "tasks answered by experts", color: "#009E73" },
];
const REASON_COLORS = ["#c62828", "#ef6c00", "#8e24aa", "#6d4c41", "#00838f", "#9e9d24", "#5c6bc0", "#78909c"];

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function swatch(color) {
  const node = el("span", "swatch");
  node.dataset.color = color;
  return node;
}

// Paints swatches from their data-color (no inline style attribute in the markup: the CSP forbids those).
export function paintSwatches(root) {
  for (const node of root.querySelectorAll(".swatch[data-color]")) node.style.backgroundColor = node.dataset.color;
}

// ---- approval over time ------------------------------------------------------------------------

function runs(points, bucketMs) {
  const out = [];
  for (const point of points) {
    const last = out[out.length - 1];
    if (last && ms(point.start) - ms(last[last.length - 1].start) === bucketMs) last.push(point);
    else out.push([point]);
  }
  return out;
}

function pointText(series, point, bucketS) {
  const end = ms(point.start) + bucketS * 1000;
  return `${series.label}, ${when(ms(point.start))}–${timeLabel(end, 60)}: approval ${fmt.pct(point.rate)} (95% interval ${fmt.pctRange(point.ci_low, point.ci_high)}), ${fmt.int(point.up)} up and ${fmt.int(point.down)} down`;
}

function drawSeries(root, series, color, x, y, bucketS) {
  const bucketMs = bucketS * 1000;
  const mid = (p) => x(ms(p.start) + bucketMs / 2);
  const group = svg("g", { class: "series", "data-version": series.model_version });
  for (const run of runs(series.points, bucketMs)) {
    if (run.length > 1) {
      const upper = run.map((p) => `${mid(p)},${y(p.ci_high)}`);
      const lower = run.slice().reverse().map((p) => `${mid(p)},${y(p.ci_low)}`);
      group.append(svg("polygon", { points: [...upper, ...lower].join(" "), fill: color, "fill-opacity": 0.13, class: "band" }));
      group.append(svg("polyline", { points: run.map((p) => `${mid(p)},${y(p.rate)}`).join(" "), fill: "none", stroke: color, "stroke-width": 2, class: "line" }));
    } else {
      const p = run[0];
      group.append(svg("line", { x1: mid(p), x2: mid(p), y1: y(p.ci_low), y2: y(p.ci_high), stroke: color, "stroke-opacity": 0.4, "stroke-width": 3 }));
    }
  }
  for (const p of series.points) {
    group.append(titled(svg("circle", { cx: mid(p), cy: y(p.rate), r: 3, fill: color, class: "point" }), pointText(series, p, bucketS)));
  }
  root.append(group);
}

export function drawApproval(container, legend, data, colorOf) {
  const bucketS = data.range.bucket_s;
  const endMs = Math.max(Date.now(), ms(data.since) + bucketS * 1000);
  const firsts = data.series.filter((s) => s.points.length).map((s) => ms(s.points[0].start));
  const startMs = dataStart(ms(data.since), firsts.length ? Math.min(...firsts) : null, endMs, bucketS * 1000);
  const { root, width, height } = chartRoot(container, 260, `Approval per model version over time, ${data.range.name}, with 95% intervals`);
  const margin = { left: 44, right: 14, top: 10, bottom: 26 };
  const x = linear(startMs, endMs, margin.left, width - margin.right);
  const y = linear(0, 1, height - margin.bottom, margin.top);
  yAxis(root, { ticks: [0, 0.25, 0.5, 0.75, 1], y, x: margin.left, right: width - margin.right, text: fmt.pct });
  const { ticks, stepS } = timeTicks(startMs, endMs);
  xAxis(root, { ticks, x, y: height - margin.bottom, top: margin.top, text: (t) => timeLabel(t, stepS) });
  const items = [];
  // The legend best first (overall approval in the range), so it reads like the leaderboard.
  const rate = (s) => (s.up + s.down ? s.up / (s.up + s.down) : -1);
  for (const series of [...data.series].sort((a, b) => rate(b) - rate(a))) {
    const color = colorOf(series.label);
    drawSeries(root, series, color, x, y, bucketS);
    const item = el("li", "legend-item");
    const last = series.points[series.points.length - 1];
    const total = series.up + series.down;
    item.append(swatch(color), el("span", "legend-label", series.label));
    const detail = total ? `${fmt.pct(series.up / total)} of ${fmt.int(total)} thumbs${last ? `; latest ${fmt.pct(last.rate)}` : ""}` : "no thumbs in this range";
    item.append(el("span", "legend-detail", detail));
    items.push(item);
  }
  legend.replaceChildren(...items);
  paintSwatches(legend);
  return { count: data.series.length, startMs };
}

// ---- pairs and tasks ---------------------------------------------------------------------------

export function drawFlow(container, legend, data) {
  const all = data.buckets.map((b) => ({ start: ms(b.start), values: b }));
  const bucketMs = data.range.bucket_s * 1000;
  const first = all.find((b) => FLOW.some((s) => b.values[s.key]) || b.values.tasks_withdrawn);
  const endMs = all.length ? all[all.length - 1].start + bucketMs : Date.now();
  const startMs = dataStart(all.length ? all[0].start : endMs, first ? first.start : null, endMs, bucketMs);
  const buckets = all.filter((b) => b.start >= startMs);
  barChart(container, { buckets, series: FLOW, bucketS: data.range.bucket_s, label: "Pairs published, tasks requested and tasks answered per bucket" });
  const totals = Object.fromEntries([...FLOW.map((s) => s.key), "tasks_withdrawn"].map((k) => [k, data.buckets.reduce((n, b) => n + b[k], 0)]));
  const items = FLOW.map((s) => {
    const item = el("li", "legend-item");
    item.append(swatch(s.color), el("span", "legend-label", `${fmt.int(totals[s.key])} ${s.name}`));
    return item;
  });
  const withdrawn = totals.tasks_withdrawn;
  items.push(el("li", "legend-item legend-muted", `${fmt.int(withdrawn)} ${withdrawn === 1 ? "task" : "tasks"} withdrawn (settled by users, or no longer asked)`));
  legend.replaceChildren(...items);
  paintSwatches(legend);
  return { totals, startMs };
}

// ---- the queue per domain ----------------------------------------------------------------------

function age(isoTime) {
  const minutes = Math.max(0, Math.round((Date.now() - ms(isoTime)) / 60000));
  if (minutes < 1) return "under a minute";
  if (minutes < 60) return `${minutes} min`;
  if (minutes < 48 * 60) return `${Math.round(minutes / 60)} h`;
  return `${Math.round(minutes / 1440)} days`;
}

export function drawQueue(container, data, selectedDomain) {
  if (!data.domains.length) {
    container.replaceChildren(el("p", "empty-note", "No open annotation requests."));
    return;
  }
  const row = 30;
  const { root, width } = chartRoot(container, data.domains.length * row + 28, "Open annotation requests per domain, by kind");
  const left = 110;
  const right = width - 150;
  const x = linear(0, niceMax(Math.max(...data.domains.map((d) => d.open))), left, right);
  const kinds = [["compare", "#0072B2", "compare"], ["rewrite", "#CC79A7", "rewrite"]];
  data.domains.forEach((d, i) => {
    const y = 6 + i * row;
    const isSelected = d.domain === selectedDomain;
    label(root, left - 8, y + 15, clip(d.domain, 14), { "text-anchor": "end", "font-weight": isSelected ? 700 : 500 });
    let base = 0;
    const bar = svg("g", { class: "queue-bar", "data-domain": d.domain, "data-open": d.open });
    for (const [key, color, name] of kinds) {
      if (!d[key]) continue;
      bar.append(titled(svg("rect", { x: x(base), y, width: Math.max(2, x(base + d[key]) - x(base)), height: 20, fill: color, rx: 2 }), `${d.domain}: ${fmt.int(d[key])} open ${name} requests`));
      base += d[key];
    }
    root.append(bar);
    label(root, x(base) + 6, y + 15, fmt.int(d.open), { "font-weight": 700 });
    label(root, width - 4, y + 15, `oldest ${age(d.oldest_requested_at)}`, { "text-anchor": "end", fill: COLORS.muted, "font-size": 11 });
  });
  const legendY = data.domains.length * row + 22;
  kinds.forEach(([, color, name], i) => {
    root.append(svg("rect", { x: left + i * 90, y: legendY - 9, width: 10, height: 10, fill: color, rx: 2 }));
    label(root, left + i * 90 + 14, legendY, name, { fill: COLORS.muted, "font-size": 11 });
  });
}

// ---- dead letters ------------------------------------------------------------------------------

export function reasonLabel(r) {
  return `${r.service} · ${r.error_code}`;
}

export function drawDeadLetters(reasons, hours, data) {
  if (!data.total) {
    reasons.replaceChildren(el("p", "empty-note", "No dead letters in this span."));
    hours.replaceChildren();
    return;
  }
  const colors = new Map(data.reasons.map((r, i) => [reasonLabel(r), REASON_COLORS[i % REASON_COLORS.length]]));
  const row = 26;
  const { root, width } = chartRoot(reasons, data.reasons.length * row + 6, "Dead letters by service and reason");
  const left = Math.min(230, width * 0.5);
  const x = linear(0, niceMax(data.reasons[0].letters), left, width - 50);
  data.reasons.forEach((r, i) => {
    const y = 4 + i * row;
    const name = reasonLabel(r);
    label(root, left - 8, y + 13, clip(name, 34), { "text-anchor": "end" });
    const bar = svg("rect", { x: left, y, width: Math.max(2, x(r.letters) - left), height: 18, fill: colors.get(name), rx: 2, class: "reason-bar", "data-reason": name });
    root.append(titled(bar, `${name}: ${fmt.int(r.letters)} dead letters`));
    label(root, x(r.letters) + 6, y + 13, fmt.int(r.letters), { "font-weight": 700 });
  });
  const buckets = data.hours.map((h) => ({ start: ms(h.start), values: Object.fromEntries(h.letters.map((l) => [reasonLabel(l), l.letters])) }));
  const series = data.reasons.map((r) => ({ key: reasonLabel(r), name: `dead letters: ${reasonLabel(r)}`, color: colors.get(reasonLabel(r)) }));
  barChart(hours, { buckets, series, bucketS: data.span.bucket_s, height: 170, stacked: true, label: "Dead letters per hour, by reason" });
}
