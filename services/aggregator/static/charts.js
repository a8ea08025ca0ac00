// Small SVG charts built with DOM APIs: no library, no innerHTML. Every label goes in through
// textContent, and every mark carries a <title> with its numbers (shown on hover, read by screen readers).

const SVG_NS = "http://www.w3.org/2000/svg";

export const FONT = 12;
export const COLORS = {
  text: "#1c2128",
  muted: "#59636e",
  grid: "#e3e7ec",
  axis: "#b8c0ca",
  band: "#f7f8fa",
};
// Okabe-Ito: told apart with every common colour-vision deficiency.
export const SERIES = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#6b4c9a", "#8c6d31"];

const number = new Intl.NumberFormat("en-US");
const decimal = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

export const fmt = {
  int: (v) => number.format(Math.round(v)),
  one: (v) => decimal.format(v),
  pct: (v) => `${Math.round(v * 100)}%`,
  pctRange: (low, high) => `${Math.round(low * 100)}–${Math.round(high * 100)}%`,
};

export function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) node.setAttribute(key, String(value));
  }
  if (text !== undefined) node.textContent = text;
  return node;
}

export function titled(node, text) {
  node.append(svg("title", {}, text));
  return node;
}

// The root of a chart: as wide as its container, `height` tall, named for assistive technology.
export function chartRoot(container, height, label) {
  const width = Math.max(320, Math.floor(container.clientWidth || 640));
  const root = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
    "aria-label": label,
    class: "chart-svg",
  });
  container.replaceChildren(root);
  return { root, width, height };
}

export function linear(d0, d1, r0, r1) {
  const k = d1 === d0 ? 0 : (r1 - r0) / (d1 - d0);
  return (v) => r0 + (v - d0) * k;
}

// About `count` round numbers covering [lo, hi].
export function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const ratio = raw / magnitude;
  const step = (ratio >= 7.5 ? 10 : ratio >= 3.5 ? 5 : ratio >= 1.5 ? 2 : 1) * magnitude;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toFixed(10)));
  return ticks;
}

export function niceMax(value) {
  if (value <= 0) return 1;
  const ticks = niceTicks(0, value, 4);
  const last = ticks[ticks.length - 1];
  return last >= value ? last : last + (ticks[1] - ticks[0]);
}

// Shorten a label to `max` characters (the whole text stays in the mark's <title>).
export function clip(text, max) {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

export function label(parent, x, y, text, attrs = {}) {
  const node = svg("text", { x, y, "font-size": FONT, fill: COLORS.text, ...attrs }, text);
  parent.append(node);
  return node;
}

// Where a time chart starts: the range's start, or later when the data starts later (a chart of the last
// hour of a pipeline up for two minutes shows those minutes), never fewer than `minBuckets` buckets.
export function dataStart(sinceMs, firstMs, endMs, bucketMs, minBuckets = 10) {
  if (firstMs === null || firstMs === undefined) return sinceMs;
  const shown = Math.min(firstMs, endMs - minBuckets * bucketMs);
  return Math.max(sinceMs, Math.floor(shown / bucketMs) * bucketMs);
}

// Time ticks for a span: a round step, labels in the viewer's time zone.
const TIME_STEPS = [60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

export function timeTicks(startMs, endMs, count = 6) {
  const spanS = (endMs - startMs) / 1000;
  const step = TIME_STEPS.find((s) => spanS / s <= count) || 86400 * Math.ceil(spanS / 86400 / count);
  const stepMs = step * 1000;
  const offsetMs = new Date(startMs).getTimezoneOffset() * 60000;
  const ticks = [];
  for (let t = Math.ceil((startMs - offsetMs) / stepMs) * stepMs + offsetMs; t <= endMs; t += stepMs) ticks.push(t);
  return { ticks, stepS: step };
}

export function timeLabel(ms, stepS) {
  const date = new Date(ms);
  if (stepS >= 86400) return date.toLocaleDateString("en-GB", { weekday: "short", day: "numeric" });
  return date.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
}

export function when(ms) {
  return new Date(ms).toLocaleString("en-GB", { hour: "2-digit", minute: "2-digit", day: "numeric", month: "short" });
}

// A horizontal axis at `y` with vertical grid lines up to `top`.
export function xAxis(parent, { ticks, x, y, top, text }) {
  for (const tick of ticks) {
    const px = x(tick);
    parent.append(svg("line", { x1: px, x2: px, y1: top, y2: y, stroke: COLORS.grid }));
    label(parent, px, y + 15, text(tick), { "text-anchor": "middle", fill: COLORS.muted, "font-size": 11 });
  }
  parent.append(svg("line", { x1: x(ticks[0]), x2: x(ticks[ticks.length - 1]), y1: y, y2: y, stroke: COLORS.axis }));
}

// A vertical axis at `x` with horizontal grid lines across to `right`.
export function yAxis(parent, { ticks, y, x, right, text }) {
  for (const tick of ticks) {
    const py = y(tick);
    parent.append(svg("line", { x1: x, x2: right, y1: py, y2: py, stroke: COLORS.grid }));
    label(parent, x - 6, py + 4, text(tick), { "text-anchor": "end", fill: COLORS.muted, "font-size": 11 });
  }
}

// One interval with its point: a bar from low to high and a dot at the estimate, at height `y`.
export function interval(parent, { x, y, low, high, estimate, color, thick = 4, radius = 5 }) {
  parent.append(
    svg("line", {
      x1: x(low),
      x2: x(high),
      y1: y,
      y2: y,
      stroke: color,
      "stroke-width": thick,
      "stroke-linecap": "round",
      "stroke-opacity": 0.55,
      class: "ci",
    }),
  );
  parent.append(svg("circle", { cx: x(estimate), cy: y, r: radius, fill: color, stroke: "#fff", "stroke-width": 1.5, class: "point" }));
}

// Bars per bucket: `series` [{key, name, color}], `buckets` [{start (ms), values {key: n}}], grouped or stacked.
export function barChart(container, { buckets, series, bucketS, height = 220, stacked = false, label: name, unit }) {
  const { root, width } = chartRoot(container, height, name);
  const margin = { left: 44, right: 12, top: 12, bottom: 26 };
  const right = width - margin.right;
  const bottom = height - margin.bottom;
  const startMs = buckets.length ? buckets[0].start : Date.now();
  const endMs = buckets.length ? buckets[buckets.length - 1].start + bucketS * 1000 : startMs + bucketS * 1000;
  const x = linear(startMs, endMs, margin.left, right);
  const totals = buckets.map((b) => (stacked ? series.reduce((s, k) => s + (b.values[k.key] || 0), 0) : Math.max(0, ...series.map((k) => b.values[k.key] || 0))));
  const top = niceMax(Math.max(0, ...totals));
  const y = linear(0, top, bottom, margin.top);
  yAxis(root, { ticks: niceTicks(0, top, 4).filter((t) => Number.isInteger(t)), y, x: margin.left, right, text: fmt.int });
  const { ticks, stepS } = timeTicks(startMs, endMs);
  xAxis(root, { ticks, x, y: bottom, top: margin.top, text: (t) => timeLabel(t, stepS) });
  const slot = (x(startMs + bucketS * 1000) - x(startMs)) * 0.8;
  const group = stacked ? slot : slot / series.length;
  for (const bucket of buckets) {
    let base = 0;
    series.forEach((s, i) => {
      const value = bucket.values[s.key] || 0;
      if (!value) return;
      const left = x(bucket.start) + (slot * 0.125) + (stacked ? 0 : i * group);
      const y0 = y(stacked ? base + value : value);
      const h = y(stacked ? base : 0) - y0;
      const bar = svg("rect", { x: left, y: y0, width: Math.max(1, group - (stacked ? 0 : 0.5)), height: Math.max(1, h), fill: s.color, class: "bar", "data-series": s.key });
      root.append(titled(bar, `${when(bucket.start)}: ${fmt.int(value)} ${s.name}${unit ? ` ${unit}` : ""}`));
      base += value;
    });
  }
  return root;
}
