// Drawing the annotator page. Every piece of task text goes in through textContent or a text node,
// never as HTML: a prompt holding <script> shows as those characters.

const $ = (id) => document.getElementById(id);

const ROLE_NAMES = { system: "System", user: "User", assistant: "Assistant", tool: "Tool" };

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function wordCount(text) {
  const words = text.trim().split(/\s+/).filter(Boolean).length;
  return `${words} ${words === 1 ? "word" : "words"}`;
}

function fillAnswer(container, text, segments, showDiff) {
  if (!showDiff || !segments) {
    container.replaceChildren(document.createTextNode(text));
    return;
  }
  const parts = segments.map((segment) =>
    segment.changed ? el("mark", "diff", segment.text) : document.createTextNode(segment.text),
  );
  container.replaceChildren(...parts);
}

function renderPrompt(messages) {
  const items = messages.map((message) => {
    const item = el("li", `turn turn-${message.role}`);
    item.append(el("p", "turn-role", ROLE_NAMES[message.role] || message.role));
    item.append(el("div", "turn-text", message.content));
    return item;
  });
  $("turns").replaceChildren(...items);
}

function taskMeta(task) {
  const kind = task.kind === "rewrite" ? "Rewrite: one answer to judge or improve" : "Compare two answers";
  return `${task.domain} · ${kind}`;
}

// The whole task: prompt, the two answers in screen order, the diff marks, which buttons apply.
export function renderTask(shown, showDiff) {
  const { task, shown_left: left } = shown;
  // Two answers with no word in common would be marked from end to end: that says nothing.
  const diff = shown.diff && shown.diff.similarity > 0 ? shown.diff : null;
  const isRewrite = task.kind === "rewrite";
  const right = left === "A" ? "B" : "A";
  $("task").dataset.taskId = task.task_id;
  $("task").dataset.kind = task.kind;
  $("task-meta").textContent = taskMeta(task);
  renderPrompt(task.prompt);
  const leftText = task.candidates[left].content;
  fillAnswer($("left-text"), leftText, diff && diff.left, showDiff);
  $("left-meta").textContent = wordCount(leftText);
  $("right").hidden = isRewrite;
  $("answers").classList.toggle("single", isRewrite);
  if (!isRewrite) {
    const rightText = task.candidates[right].content;
    fillAnswer($("right-text"), rightText, diff && diff.right, showDiff);
    $("right-meta").textContent = wordCount(rightText);
  } else {
    $("right-text").replaceChildren();
  }
  renderDiffLegend(task, shown.diff, showDiff);
  for (const id of ["act-left", "act-right", "act-tie", "act-both-bad", "copy-right"]) $(id).hidden = isRewrite;
  $("act-fine").hidden = !isRewrite;
  $("copy-left").textContent = isRewrite ? "Start from the answer" : "Start from Answer A";
}

function renderDiffLegend(task, diff, showDiff) {
  const legend = $("diff-legend");
  legend.classList.toggle("marked", Boolean(diff && diff.similarity > 0 && showDiff && task.kind !== "rewrite"));
  if (task.kind === "rewrite") {
    legend.textContent = "";
  } else if (!diff) {
    legend.textContent = "The answers are too long to mark their differences.";
  } else if (diff.similarity === 0) {
    legend.textContent = "The two answers have no word in common, so nothing is marked.";
  } else if (showDiff) {
    const similar = Math.round(diff.similarity * 100);
    legend.textContent = `Marked: words found in only one of the two answers (they share ${similar}% of their words). Press d to hide the marks.`;
  } else {
    legend.textContent = "Differences are not marked. Press d to mark them.";
  }
}

export function renderEditorHint(kind) {
  $("editor-hint").textContent =
    kind === "rewrite"
      ? "Edit the answer into a good one. It is sent as \u201cthe answer is bad\u201d with your rewrite."
      : "Write the answer you would want. It is sent as \u201cboth bad\u201d with your rewrite.";
}

export function renderGuidelines(domain, result) {
  $("guidelines-title").textContent = `Guidelines: ${domain}`;
  const body = $("guidelines");
  if (!result || !result.html) {
    body.replaceChildren(el("p", "hint", "No guidelines have been written for this domain yet."));
    return;
  }
  // Server-rendered from the operator's markdown with raw HTML escaped; not task or user text.
  const parsed = new DOMParser().parseFromString(result.html, "text/html");
  const nodes = [...parsed.body.childNodes];
  if (result.source && result.source !== `${domain}.md`) {
    nodes.unshift(el("p", "hint", "This domain has no guidelines of its own; these are the general ones."));
  }
  body.replaceChildren(...nodes);
}

function percent(value) {
  return value === null || value === undefined ? "–" : `${Math.round(value * 100)}%`;
}

export function renderProgress(stats, me, activeDomain) {
  const mine = stats.annotator || {};
  $("done-today").textContent = String(mine.verdicts_today ?? "–");
  const agreement = (stats.annotators || {})[me.annotator_id];
  const shown = agreement ? agreement.agreement_with_result ?? agreement.pairwise_agreement : null;
  $("agreement").textContent = percent(shown);
  $("agreement").title = agreement
    ? `How often your verdict matched the decided result, over ${agreement.tasks} tasks with several reviewers`
    : "None of your tasks has had a second reviewer yet";
  const domains = Object.entries(stats.domains || {}).filter(([d]) => !activeDomain || d === activeDomain);
  $("queue-depth").textContent = domains.length
    ? domains.map(([domain, entry]) => `${domain}: ${entry.queued}`).join(" · ")
    : "–";
  return domains.reduce((total, [, entry]) => total + entry.queued, 0);
}

export function renderEmpty(depth, activeDomain) {
  const where = activeDomain ? `in ${activeDomain}` : "in your domains";
  $("empty-depth").textContent =
    depth === null
      ? "Nothing is queued for you right now."
      : `Nothing is queued for you right now. Queue depth ${where}: ${depth} (tasks you judged or skipped, or that others hold, are not offered).`;
}

export function renderLease(secondsLeft, isLost) {
  const node = $("lease-left");
  $("lease").classList.toggle("lease-low", !isLost && secondsLeft < 60);
  $("lease").classList.toggle("lease-lost", isLost);
  if (isLost) {
    node.textContent = "lost";
    return;
  }
  const s = Math.max(0, Math.floor(secondsLeft));
  node.textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")} left`;
}
