// The leaderboard as a forest plot: one row per ranked version, ordered by rank, its rating with the
// 95% bootstrap interval; between two ranks the battles the order rests on; approval with its Beta
// interval at the right. Unrated versions are listed apart with their reason.

import { COLORS, chartRoot, clip, fmt, interval, label, linear, niceTicks, svg, titled } from "./charts.js";

const ROW = 46;
const AXIS = 46;
const REASONS = {
  too_few_battles: (m, min) => `${fmt.int(m.battles)} of the ${fmt.int(min)} battles a rating needs`,
  not_connected: () => "never met the rated versions in a battle, so no rating can compare them",
};

export function versionLabel(entry) {
  return `${entry.model} ${entry.model_version}`;
}

function fragilityText(entry) {
  if (entry.battles_to_swap === null || entry.battles_to_swap === undefined) return "no removal of battles swaps these two";
  const n = entry.battles_to_swap;
  const battles = `${fmt.int(n)} ${n === 1 ? "battle" : "battles"}`;
  return entry.is_exact ? `order rests on ${battles}` : `order rests on at most ${battles}`;
}

function sameVersion(a, b) {
  return a.model === b.model && a.model_version === b.model_version;
}

function ratingDomain(ranked) {
  const low = Math.min(...ranked.map((m) => m.ci_low), 1000);
  const high = Math.max(...ranked.map((m) => m.ci_high), 1000);
  const pad = Math.max(10, (high - low) * 0.06);
  const ticks = niceTicks(low - pad, high + pad, 6);
  return [Math.min(ticks[0], low - pad), Math.max(ticks[ticks.length - 1], high + pad)];
}

function drawRow(root, m, i, geo, colorOf) {
  const y = AXIS + i * ROW + ROW / 2;
  if (i % 2 === 0) root.append(svg("rect", { x: 0, y: y - ROW / 2, width: geo.width, height: ROW, fill: COLORS.band }));
  const color = colorOf(versionLabel(m));
  const badge = svg("g", { class: "rank" });
  badge.append(svg("circle", { cx: 16, cy: y, r: 13, fill: color }));
  label(badge, 16, y + 4, String(m.rank), { "text-anchor": "middle", fill: "#fff", "font-weight": 700 });
  root.append(titled(badge, `Rank ${m.rank}`));
  label(root, 38, y - 3, clip(m.model, 26), { "font-weight": 650 });
  label(root, 38, y + 13, clip(m.model_version, 30), { fill: COLORS.muted, "font-size": 11 });

  const text = `${versionLabel(m)}: rank ${m.rank}, rating ${fmt.int(m.rating)} (95% interval ${fmt.int(m.ci_low)}–${fmt.int(m.ci_high)}), ${fmt.int(m.wins)} wins and ${fmt.int(m.losses)} losses in ${fmt.int(m.battles)} battles`;
  const mark = svg("g", {
    class: "interval",
    "data-model": m.model,
    "data-version": m.model_version,
    "data-rank": m.rank,
    "data-rating": m.rating,
    "data-ci-low": m.ci_low,
    "data-ci-high": m.ci_high,
  });
  interval(mark, { x: geo.rating, y, low: m.ci_low, high: m.ci_high, estimate: m.rating, color });
  root.append(titled(mark, text));
  label(root, geo.ratingRight + 10, y - 2, fmt.int(m.rating), { "font-weight": 700 });
  label(root, geo.ratingRight + 10, y + 13, `${fmt.int(m.ci_low)}–${fmt.int(m.ci_high)}`, { fill: COLORS.muted, "font-size": 11 });
  drawApproval(root, m, y, geo, color);
}

function drawApproval(root, m, y, geo, color) {
  root.append(svg("line", { x1: geo.approval(0), x2: geo.approval(1), y1: y, y2: y, stroke: COLORS.grid, "stroke-width": 6, "stroke-linecap": "round" }));
  if (m.approval_rate === null || m.approval_rate === undefined) {
    label(root, geo.approvalRight + 8, y + 4, "no votes", { fill: COLORS.muted, "font-size": 11 });
    return;
  }
  const mark = svg("g", { class: "approval", "data-version": m.model_version });
  interval(mark, { x: geo.approval, y, low: m.approval_ci_low, high: m.approval_ci_high, estimate: m.approval_rate, color, thick: 6, radius: 4 });
  root.append(titled(mark, `${versionLabel(m)}: approval ${fmt.pct(m.approval_rate)} (95% interval ${fmt.pctRange(m.approval_ci_low, m.approval_ci_high)}) from ${fmt.int(m.votes)} votes`));
  label(root, geo.approvalRight + 8, y - 2, fmt.pct(m.approval_rate), { "font-weight": 700 });
  label(root, geo.approvalRight + 8, y + 13, `${fmt.int(m.votes)} votes`, { fill: COLORS.muted, "font-size": 11 });
}

function drawFragility(root, ranked, fragility, geo) {
  for (const entry of fragility) {
    const upper = ranked.findIndex((m) => sameVersion(m, entry.upper));
    const lower = ranked.findIndex((m) => sameVersion(m, entry.lower));
    if (upper < 0 || lower !== upper + 1) continue;
    const y = AXIS + lower * ROW;
    const text = fragilityText(entry);
    const note = svg("g", { class: "fragility", "data-upper": entry.upper.model_version, "data-lower": entry.lower.model_version });
    const x = geo.ratingRight - 4;
    note.append(svg("rect", { x: x - 7 * text.length - 10, y: y - 8, width: 7 * text.length + 12, height: 16, rx: 8, fill: "#fff", stroke: COLORS.grid }));
    label(note, x - 4, y + 4, text, { "text-anchor": "end", fill: COLORS.muted, "font-size": 11 });
    root.append(titled(note, `Between ${versionLabel(entry.upper)} and ${versionLabel(entry.lower)}: ${text}`));
  }
}

// Draws the ranked versions; returns the number drawn.
export function drawLeaderboard(container, body, colorOf) {
  const ranked = body.models.filter((m) => m.rank !== null && m.rank !== undefined);
  if (!ranked.length) {
    container.replaceChildren();
    return 0;
  }
  const height = AXIS + ranked.length * ROW + 8;
  const { root, width } = chartRoot(container, height, `Leaderboard of ${body.app_id}${body.domain ? `, domain ${body.domain}` : ""}: ratings with 95% intervals, by rank`);
  const approvalWidth = Math.min(160, Math.max(90, width * 0.16));
  const geo = { width, ratingLeft: 230, ratingRight: width - approvalWidth - 170 };
  geo.approvalLeft = geo.ratingRight + 100;
  geo.approvalRight = geo.approvalLeft + approvalWidth;
  const [lo, hi] = ratingDomain(ranked);
  geo.rating = linear(lo, hi, geo.ratingLeft, geo.ratingRight);
  geo.approval = linear(0, 1, geo.approvalLeft, geo.approvalRight);
  const bottom = AXIS + ranked.length * ROW;
  for (const tick of niceTicks(lo, hi, 6)) {
    label(root, geo.rating(tick), AXIS - 6, fmt.int(tick), { "text-anchor": "middle", fill: COLORS.muted, "font-size": 11 });
  }
  ranked.forEach((m, i) => drawRow(root, m, i, geo, colorOf));
  for (const tick of niceTicks(lo, hi, 6)) {
    root.append(svg("line", { x1: geo.rating(tick), x2: geo.rating(tick), y1: AXIS, y2: bottom, stroke: COLORS.grid, "stroke-dasharray": "2 3" }));
  }
  root.append(svg("line", { x1: geo.rating(1000), x2: geo.rating(1000), y1: AXIS, y2: bottom, stroke: COLORS.axis }));
  label(root, 38, AXIS - 26, "Version", { fill: COLORS.muted, "font-size": 11 });
  label(root, geo.ratingLeft, AXIS - 26, "Rating, 95% interval (the rated versions' mean is 1000)", { fill: COLORS.muted, "font-size": 11 });
  label(root, geo.approvalLeft, AXIS - 26, "Approval", { fill: COLORS.muted, "font-size": 11 });
  label(root, geo.approval(0), AXIS - 6, "0", { fill: COLORS.muted, "font-size": 10, "text-anchor": "middle" });
  label(root, geo.approval(1), AXIS - 6, "100%", { fill: COLORS.muted, "font-size": 10, "text-anchor": "middle" });
  drawFragility(root, ranked, body.fragility || [], geo);
  // Marks above the stripes and grid: the intervals are what the eye looks for.
  for (const node of root.querySelectorAll("g.interval, g.approval, g.fragility")) root.append(node);
  return ranked.length;
}

export function unratedItems(body) {
  return body.models
    .filter((m) => m.rank === null || m.rank === undefined)
    .map((m) => {
      const why = REASONS[m.unrated_reason] || (() => m.unrated_reason || "not rated");
      const approval = m.approval_rate === null || m.approval_rate === undefined ? "no votes yet" : `approval ${fmt.pct(m.approval_rate)} of ${fmt.int(m.votes)} votes`;
      return { label: versionLabel(m), reason: why(m, body.min_battles), approval, battles: m.battles };
    });
}

// A regression alert's two readings on one axis: the previous version above, the new one below.
export function drawAlertReadings(container, alert) {
  if (!alert.previous || !alert.new) {
    container.replaceChildren();
    return;
  }
  const isApproval = alert.metric === "approval";
  const show = isApproval ? fmt.pct : fmt.int;
  const rows = [
    ["previous", alert.previous_version, alert.previous, "#6a7785"],
    ["new", alert.new_version, alert.new, alert.state === "raised" ? "#c62828" : "#0072B2"],
  ];
  const { root, width } = chartRoot(container, 62, `${alert.metric} of ${alert.previous_version} and ${alert.new_version}, with 95% intervals`);
  const lows = rows.map((r) => r[2].ci_low);
  const highs = rows.map((r) => r[2].ci_high);
  const pad = (Math.max(...highs) - Math.min(...lows)) * 0.08 || 0.01;
  const x = linear(Math.min(...lows) - pad, Math.max(...highs) + pad, 120, width - 70);
  rows.forEach(([, version, reading, color], i) => {
    const y = 16 + i * 28;
    label(root, 0, y + 4, clip(version, 16), { fill: COLORS.muted, "font-size": 11 });
    const mark = svg("g", { class: "reading" });
    interval(mark, { x, y, low: reading.ci_low, high: reading.ci_high, estimate: reading.estimate, color, thick: 5, radius: 4 });
    const evidence = isApproval ? `${fmt.int(reading.evidence)} votes` : `${fmt.int(reading.evidence)} battles`;
    root.append(titled(mark, `${version}: ${alert.metric} ${show(reading.estimate)} (95% interval ${show(reading.ci_low)}–${show(reading.ci_high)}), ${evidence}`));
    label(root, width - 64, y + 4, show(reading.estimate), { "font-weight": 700, fill: color });
  });
}
