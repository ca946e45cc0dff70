// The SLA dashboard: reads the public API with the key pasted once (session storage only, never in a URL),
// redraws every 10 s without reloading, and counts remaining time down every second. No dependencies.
"use strict";

(() => {
  const KEY = "takedown.dashboard.key";
  const REFRESH_MS = 10000;
  const STATUSES = ["awaiting_delivery", "on_track", "at_risk", "breached", "met", "met_late", "contested", "withdrawn", "declined"];
  const OUTCOMES = ["removed", "restricted", "not_found", "declined", "contested", "withdrawn", "no_answer"];
  const LABELS = {
    awaiting_delivery: "Awaiting delivery", on_track: "On track", at_risk: "At risk", breached: "Breached",
    met: "Met", met_late: "Met late", contested: "Contested", withdrawn: "Withdrawn", declined: "Declined",
    removed: "Removed", restricted: "Restricted", not_found: "Not found", no_answer: "No answer",
  };
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  let overview = null;
  let fetchedAt = 0;
  let timer = null;
  let openOrder = null;
  let latest = 0; // only the newest request's answer is drawn (filters can change while one is in flight)

  // ------------------------------------------------------------------------------------------ helpers

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "text") node.textContent = v;
      else if (k === "cls") node.className = v;
      else if (k === "color") node.style.setProperty("--c", v);
      else node.setAttribute(k, v);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function svg(tag, attrs = {}, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const color = (name) => `var(--${name}, #888)`;
  const label = (name) => LABELS[name] || name;

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const sign = seconds < 0 ? "-" : "";
    let s = Math.abs(Math.round(seconds));
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    const pad = (n) => String(n).padStart(2, "0");
    return d ? `${sign}${d}d ${pad(h)}h ${pad(m)}m` : `${sign}${h}h ${pad(m)}m ${pad(s)}s`;
  }

  function hours(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    return seconds < 3600 ? `${Math.round(seconds / 60)} min` : `${(seconds / 3600).toFixed(1)} h`;
  }

  const when = (iso) => (iso ? new Date(iso).toISOString().replace("T", " ").slice(0, 16) + " UTC" : "—");

  // ------------------------------------------------------------------------------------------ the API

  function key() { return sessionStorage.getItem(KEY); }

  async function api(path) {
    const response = await fetch(path, { headers: { Authorization: `Bearer ${key()}`, Accept: "application/json" }, cache: "no-store" });
    if (response.status === 401) {
      signOut("That key was not accepted.");
      throw new Error("unauthenticated");
    }
    const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
    return { status: response.status, body };
  }

  function filters() {
    const params = new URLSearchParams();
    const add = (name, id) => { const v = $(id).value; if (v) params.set(name, v); };
    add("days", "f-period"); add("authority", "f-authority"); add("category", "f-category"); add("platform", "f-platform");
    return params;
  }

  async function refresh() {
    if (!key()) return;
    const mine = ++latest;
    const query = filters().toString();
    try {
      const { status, body } = await api(`/v1/dashboard/overview?${query}`);
      if (mine !== latest) return;
      if (status === 403) { signOut("This key may not read the dashboard (use an auditor or admin key)."); return; }
      if (status !== 200) { $("status").textContent = `The service answered ${status}; retrying.`; return; }
      overview = body;
      fetchedAt = performance.now();
      render();
      $("status").textContent = `Figures as of ${when(body.as_of)} · refreshed every ${REFRESH_MS / 1000} s`;
      document.body.dataset.loaded = query || "all"; // which filter the page now shows (for tests and tools)
    } catch (error) {
      if (error.message !== "unauthenticated") $("status").textContent = "The service cannot be reached; retrying.";
    }
  }

  // ------------------------------------------------------------------------------------------ drawing

  function fillSelect(id, options) {
    const select = $(id);
    const chosen = select.value;
    select.replaceChildren(el("option", { value: "", text: "All" }));
    for (const [value, text] of options) select.append(el("option", { value, text }));
    select.value = options.some(([v]) => v === chosen) ? chosen : "";
  }

  function render() {
    const o = overview;
    fillSelect("f-authority", o.options.authorities.map((a) => [a, a]));
    fillSelect("f-category", o.options.categories.map((c) => [c, c.replaceAll("_", " ")]));
    fillSelect("f-platform", o.options.platforms.map((p) => [p.id, p.name]));
    renderTiles(o.tiles);
    renderPlatforms(o.platforms);
    renderUrgent(o.urgent, o.urgent_total);
    renderAnswers(o.answer_times, o.sla_hours);
    renderDaily(o.daily);
    tick();
  }

  function renderTiles(t) {
    const tiles = [
      el("div", { cls: "tile", "data-status": "total", color: "var(--accent)" },
        el("span", { cls: "n", text: String(t.total) }), el("span", { cls: "label", text: "Orders" })),
      el("div", { cls: "tile", "data-status": "percent_met", color: color("met") },
        el("span", { cls: "n", text: t.percent_met === null ? "—" : `${t.percent_met}%` }),
        el("span", { cls: "label", text: "Met within SLA" })),
    ];
    for (const status of STATUSES) {
      if (!(status in t.counts)) continue;
      tiles.push(el("div", { cls: "tile", "data-status": status, color: color(status) },
        el("span", { cls: "n", text: String(t.counts[status]) }), el("span", { cls: "label", text: label(status) })));
    }
    $("tiles").replaceChildren(...tiles);
  }

  function renderPlatforms(groups) {
    const rows = groups.map((g) => el("tr", { "data-platform-id": g.key },
      el("td", { text: g.name || g.key }),
      el("td", { cls: "num", "data-col": "orders", text: String(g.total) }),
      el("td", { cls: "num", "data-col": "percent_met", text: g.percent_met === null ? "—" : `${g.percent_met}%` }),
      el("td", { cls: "num", "data-col": "median", text: hours(g.median_answer_seconds) }),
      el("td", { cls: "num hide-narrow", "data-col": "p90", text: hours(g.p90_answer_seconds) }),
      el("td", { cls: "num", "data-col": "breached", text: String(g.counts.breached ?? 0) })));
    if (!rows.length) rows.push(el("tr", {}, el("td", { cls: "empty", colspan: "6", text: "No orders for this filter" })));
    $("platforms").tBodies[0].replaceChildren(...rows);
  }

  function renderUrgent(items, total) {
    $("urgent-count").textContent = total > items.length ? `(${items.length} of ${total})` : `(${total})`;
    const rows = items.map((r) => {
      const row = el("tr", { cls: "clickable", tabindex: "0", "data-order-id": r.order_id, "data-remaining": String(r.remaining_seconds) },
        el("td", {}, el("code", { title: r.order_id, text: r.order_id.slice(-8) })),
        el("td", { text: r.platform }),
        el("td", { cls: "hide-narrow", text: r.category.replaceAll("_", " ") }),
        el("td", {}, el("span", { cls: "pill", color: color(r.status), text: label(r.status) })),
        el("td", { cls: "hide-narrow", text: when(r.deadline) }),
        el("td", { cls: "num remaining", text: duration(r.remaining_seconds) }));
      row.addEventListener("click", () => openTimeline(r.order_id));
      row.addEventListener("keydown", (e) => { if (e.key === "Enter") openTimeline(r.order_id); });
      return row;
    });
    if (!rows.length) rows.push(el("tr", {}, el("td", { cls: "empty", colspan: "6", text: "Nothing at risk or breached" })));
    $("urgent").tBodies[0].replaceChildren(...rows);
  }

  // Remaining time counts down between refreshes (negative once the deadline has passed).
  function tick() {
    const elapsed = (performance.now() - fetchedAt) / 1000;
    for (const row of $("urgent").querySelectorAll("tr[data-remaining]")) {
      const left = Number(row.dataset.remaining) - elapsed;
      const cell = row.querySelector(".remaining");
      cell.textContent = duration(left);
      cell.classList.toggle("neg", left < 0);
    }
  }

  function bars(container, series, { stacked, marker, yLabel }) {
    // Drawn at the container's own width, so that labels keep their size on a phone.
    const W = Math.max(280, Math.min(720, container.clientWidth || 560)), H = 220, L = 36, B = 34, T = 12, R = 8;
    const highest = Math.max(1, ...series.map((s) => s.parts.reduce((a, p) => a + p.value, 0)));
    const tick = Math.max(1, Math.ceil(highest / 4));
    const max = tick * 4;
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": yLabel });
    const plotW = W - L - R, plotH = H - T - B;
    const step = plotW / Math.max(1, series.length);
    const width = Math.max(1, step * (stacked ? 0.8 : 0.7));
    for (let i = 0; i <= 4; i++) {
      const v = tick * i, y = T + plotH - (plotH * v) / max;
      chart.append(svg("line", { x1: L, x2: W - R, y1: y, y2: y, stroke: "#e6e9ee" }));
      chart.append(svg("text", { x: L - 6, y: y + 4, "text-anchor": "end" }, String(v)));
    }
    const every = Math.ceil(series.length / Math.max(3, Math.floor(plotW / 64)));
    series.forEach((s, i) => {
      let y = T + plotH;
      const x = L + i * step + (step - width) / 2;
      const group = svg("g", { "data-label": s.label });
      group.append(svg("title", {}, `${s.title}`));
      for (const part of s.parts) {
        if (!part.value) continue;
        const h = (plotH * part.value) / max;
        y -= h;
        group.append(svg("rect", { x, y, width, height: h, fill: part.color, "data-key": part.key, "data-value": part.value }));
      }
      chart.append(group);
      if (i % every === 0) chart.append(svg("text", { x: x + width / 2, y: H - B + 16, "text-anchor": "middle" }, s.short));
    });
    if (marker !== undefined) {
      const x = L + marker * step;
      chart.append(svg("line", { x1: x, x2: x, y1: T, y2: T + plotH, stroke: "var(--breached)", "stroke-dasharray": "4 3" }));
      chart.append(svg("text", { x: x + 4, y: T + 10 }, "deadline"));
    }
    chart.append(svg("line", { x1: L, x2: W - R, y1: T + plotH, y2: T + plotH, stroke: "#9aa5b1" }));
    container.replaceChildren(chart);
  }

  function renderAnswers(answerTimes, slaHours) {
    const series = answerTimes.map((b) => ({
      label: b.label, short: b.label, title: `${b.label}: ${b.orders} orders`,
      parts: [{ key: "orders", value: b.orders, color: b.upper_hours !== null && b.upper_hours <= slaHours ? color("met") : color("met_late") }],
    }));
    const at = answerTimes.findIndex((b) => b.lower_hours >= slaHours);
    bars($("chart-answers"), series, { stacked: false, marker: at < 0 ? undefined : at, yLabel: "Orders by time to answer" });
  }

  function renderDaily(days) {
    const series = days.map((d) => ({
      label: d.day, short: d.day.slice(5), title: `${d.day}: ${d.orders} orders; ` + OUTCOMES.filter((o) => d.outcomes[o]).map((o) => `${label(o)} ${d.outcomes[o]}`).join(", "),
      parts: OUTCOMES.map((o) => ({ key: o, value: d.outcomes[o] || 0, color: color(o) })),
    }));
    bars($("chart-daily"), series, { stacked: true, yLabel: "Items per day of issue, by outcome" });
    $("legend").replaceChildren(...OUTCOMES.map((o) => el("li", { color: color(o), text: label(o) })));
  }

  // ------------------------------------------------------------------------------------------ timeline

  const DETAIL = {
    "order.issued": (d) => `${d.items.length} item(s), ${d.category.replaceAll("_", " ")}, ${d.legal_basis.act} ${d.legal_basis.article}`,
    "order.delivered": (d) => `notified by ${d.channel}${d.attempt ? ` (attempt ${d.attempt})` : ""} at ${when(d.notified_at)}`,
    "order.delivery_attempt_failed": (d) => `attempt ${d.attempt}: ${d.status_code ?? d.error_kind}${d.next_attempt_at ? `, next at ${when(d.next_attempt_at)}` : ""}`,
    "order.acknowledged": () => "the platform has it",
    "order.item_outcome_reported": (d) => `${d.item_id}: ${label(d.outcome)}`,
    "order.closed": () => "every item has an outcome",
    "order.contested": (d) => `grounds: ${d.grounds.replaceAll("_", " ")}`,
    "order.upheld": () => "the contest was reviewed; the order stands",
    "order.withdrawn": () => "withdrawn by the issuer",
    "order.escalated": (d) => `escalation level ${d.level}`,
  };
  const EVENT_COLORS = { "order.delivery_attempt_failed": "at_risk", "order.escalated": "breached", "order.contested": "contested", "order.withdrawn": "withdrawn", "order.closed": "met" };

  async function openTimeline(orderId) {
    openOrder = orderId;
    const panel = $("timeline");
    panel.hidden = false;
    $("tl-id").textContent = orderId;
    $("tl-summary").replaceChildren(el("dd", { text: "Loading…" }));
    $("tl-events").replaceChildren();
    $("tl-deliveries").replaceChildren();
    $("tl-receipt").replaceChildren();
    const [order, events, deliveries, checkpoint] = await Promise.all([
      api(`/v1/orders/${encodeURIComponent(orderId)}`),
      api(`/v1/orders/${encodeURIComponent(orderId)}/events`),
      api(`/v1/deliveries?order_id=${encodeURIComponent(orderId)}`),
      api("/v1/ledger/checkpoint"),
    ]);
    if (openOrder !== orderId) return;
    if (order.status !== 200) { $("tl-summary").replaceChildren(el("dd", { text: `Cannot read this order (${order.status}).` })); return; }
    const o = order.body;
    const platform = overview?.options.platforms.find((p) => p.id === o.platform_id)?.name || o.platform_id;
    const facts = [["Platform", platform], ["Authority", o.authority?.name || o.authority_id || "—"], ["Category", o.category.replaceAll("_", " ")],
      ["Status", o.status], ["Issued", when(o.issued_at)], ["Notified", when(o.notified_at)], ["Deadline", when(o.deadline)],
      ["Escalations", (o.escalation_levels || []).length ? o.escalation_levels.join(", ") : "none"]];
    $("tl-summary").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
    const list = events.status === 200 ? events.body : [];
    $("tl-events").replaceChildren(...list.map((e) => el("li", { "data-type": e.type, color: color(EVENT_COLORS[e.type] || "on_track") },
      el("span", { cls: "when", text: when(e.recorded_at) }), el("span", { cls: "type", text: e.type.replace("order.", "").replaceAll("_", " ") }),
      el("span", { cls: "detail", text: (DETAIL[e.type] || (() => ""))(e.data) }),
      el("span", { cls: "pos", text: e.position ? `ledger position ${e.position}${e.leaf_hash ? ` · leaf ${e.leaf_hash}` : ""}` : "not yet sequenced" }))));
    if (deliveries.status === 200) {
      const attempts = deliveries.body.flatMap((d) => d.attempt_log.map((a) => `${d.webhook_type} attempt ${a.attempt} at ${when(a.started_at)}: ${a.status_code ?? a.error_kind} (${Math.round(a.duration_ms)} ms)`));
      $("tl-deliveries").replaceChildren(attempts.length ? el("ul", {}, ...attempts.map((t) => el("li", { text: t }))) : el("p", { cls: "muted", text: "No webhook attempts (notified through the inbox, or not yet)." }));
    } else {
      $("tl-deliveries").replaceChildren(el("p", { cls: "muted", text: "The attempt log is for admin keys; failed attempts and the delivery appear among the events above." }));
    }
    await renderReceipt(list, checkpoint);
    panel.scrollIntoView({ behavior: "smooth", block: "start" });
  }

  async function renderReceipt(list, checkpoint) {
    const first = list.find((e) => e.position);
    if (!first) { $("tl-receipt").replaceChildren(el("p", { cls: "muted", text: "Not yet in the ledger." })); return; }
    const rows = [["Event", first.type], ["Position", String(first.position)]];
    if (first.leaf_hash) rows.push(["Leaf hash", first.leaf_hash]);
    if (checkpoint.status === 200 && checkpoint.body.tree_size >= first.position) {
      const proof = await api(`/v1/ledger/proofs/inclusion?position=${first.position}&tree_size=${checkpoint.body.tree_size}`);
      if (proof.status === 200) {
        if (!first.leaf_hash) rows.push(["Leaf hash", proof.body.leaf_hash]);
        rows.push(["Tree size", String(proof.body.tree_size)], ["Root hash", proof.body.root_hash], ["Proof", `${proof.body.proof.length} hashes (signed checkpoint ${when(checkpoint.body.created_at)})`]);
      }
    } else {
      rows.push(["Checkpoint", "no signed checkpoint covers it yet"]);
    }
    $("tl-receipt").replaceChildren(el("dl", { cls: "summary" }, ...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, el("code", { text: v }))])));
  }

  // ------------------------------------------------------------------------------------------ sign-in

  function signIn(value) {
    sessionStorage.setItem(KEY, value);
    $("signin").hidden = true;
    $("board").hidden = false;
    $("forget").hidden = false;
    refresh();
    clearInterval(timer);
    timer = setInterval(refresh, REFRESH_MS);
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY);
    clearInterval(timer);
    $("board").hidden = true;
    $("forget").hidden = true;
    $("signin").hidden = false;
    $("key-error").textContent = message || "";
    $("status").textContent = "Not signed in";
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("key-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const value = $("key-input").value.trim();
      $("key-input").value = "";
      if (value) signIn(value);
    });
    $("forget").addEventListener("click", () => signOut());
    $("tl-close").addEventListener("click", () => { openOrder = null; $("timeline").hidden = true; });
    for (const id of ["f-period", "f-authority", "f-category", "f-platform"]) $(id).addEventListener("change", refresh);
    setInterval(tick, 1000);
    if (key()) signIn(key());
  });
})();
