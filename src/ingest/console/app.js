// The Eventyard console: the router's admin snapshot every second, drawn as tables and charts;
// a live tap; dead letters to browse and replay. Every request carries the admin token the
// operator signs in with (kept in this tab's sessionStorage only); every figure is written as
// text, never as markup.
"use strict";

const HISTORY = 60;
const state = {
  token: sessionStorage.getItem("eventyard-token"), previous: null, takenAt: 0, series: {}, tap: null,
  // The dead letters ticked for a replay, by number: kept while the list refreshes.
  selected: new Set(),
};

const $ = (id) => document.getElementById(id);

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: `Bearer ${state.token}` }, options.headers || {});
  const response = await fetch(path, Object.assign({}, options, { headers }));
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

// Rates: a counter's growth per second between two snapshots, matched by name.
function perSecond(list, name, pick, seconds) {
  if (!state.previous || seconds <= 0) return 0;
  const before = (state.previous[list] || []).find((entry) => entry.name === name);
  const now = (state.current[list] || []).find((entry) => entry.name === name);
  if (!before || !now) return 0;
  return Math.max(0, pick(now) - pick(before)) / seconds;
}

function rate(value) {
  return value >= 10000 ? `${(value / 1000).toFixed(1)}k` : value.toFixed(value < 10 && value > 0 ? 1 : 0);
}

function bytes(n) {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(1)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

function remember(key, value) {
  const series = state.series[key] || (state.series[key] = []);
  series.push(value);
  if (series.length > HISTORY) series.shift();
  return series;
}

function draw(svg, series) {
  const max = Math.max(1, ...series);
  const width = 300, height = 60;
  const step = width / (HISTORY - 1);
  const offset = HISTORY - series.length;
  const points = series.map((v, i) => `${((offset + i) * step).toFixed(1)},${(height - (v / max) * (height - 4) - 2).toFixed(1)}`);
  svg.replaceChildren();
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points.join(" "));
  svg.appendChild(line);
}

function sparkline(key, value) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 300 60");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "spark");
  draw(svg, remember(key, value));
  const cell = element("td");
  cell.appendChild(svg);
  return cell;
}

function row(cells, numeric) {
  const tr = element("tr");
  cells.forEach((cell, i) => {
    if (cell instanceof Node) tr.appendChild(cell);
    else tr.appendChild(element("td", cell, numeric.includes(i) ? "num" : ""));
  });
  return tr;
}

// The call times of the window between two snapshots, from their power-of-two buckets.
function windowP99(plugin) {
  const before = state.previous && (state.previous.plugins || []).find((p) => p.name === plugin.name);
  const now = plugin.stats.call_micros_buckets || [];
  const window = now.map((n, i) => n - ((before && before.stats.call_micros_buckets[i]) || 0));
  const total = window.reduce((a, b) => a + b, 0);
  if (total === 0) return plugin.stats.p99_micros;
  let seen = 0;
  for (let i = 0; i < window.length; i++) {
    seen += window[i];
    if (seen >= Math.ceil(total * 0.99)) return 2 ** i;
  }
  return null;
}

function render(snapshot, seconds) {
  state.current = snapshot;
  const up = Math.floor(snapshot.uptime_seconds);
  $("uptime").textContent = `version ${snapshot.version} · up ${Math.floor(up / 3600)}h ${Math.floor(up / 60) % 60}m ${up % 60}s`;
  let totals = { matched: 0, delivered: 0, dead: 0 };

  const routes = $("routes").tBodies[0];
  routes.replaceChildren(...snapshot.routes.map((r) => {
    const matched = perSecond("routes", r.name, (x) => x.matched, seconds);
    totals.matched += matched;
    totals.dead += perSecond("routes", r.name, (x) => x.dead_lettered, seconds);
    const tr = row([r.name, r.subject, rate(matched), rate(perSecond("routes", r.name, (x) => x.forwarded, seconds)),
      rate(perSecond("routes", r.name, (x) => x.filtered, seconds)), r.handler_failures, r.dead_lettered,
      sparkline(`route:${r.name}`, matched)], [2, 3, 4, 5, 6]);
    tr.dataset.route = r.name;
    return tr;
  }));

  const sinks = $("sinks").tBodies[0];
  sinks.replaceChildren(...snapshot.sinks.map((s) => {
    const delivered = perSecond("sinks", s.name, (x) => x.delivered, seconds);
    totals.delivered += delivered;
    totals.dead += perSecond("sinks", s.name, (x) => x.dead_lettered, seconds);
    const error = s.last_error ? `${new Date(s.last_error.at * 1000).toLocaleTimeString()}: ${s.last_error.error}` : "";
    const tr = row([s.name, rate(delivered), `${s.queue.depth} / ${s.queue.capacity}`, bytes(s.queue.bytes), s.queue.dropped,
      s.queue.refused, s.failed_attempts, s.dead_lettered, element("td", error, "error"), sparkline(`sink:${s.name}`, delivered)],
      [1, 2, 3, 4, 5, 6, 7]);
    tr.dataset.sink = s.name;
    return tr;
  }));
  $("queues").textContent = `All queues hold ${bytes(snapshot.queues.bytes)} of ${bytes(snapshot.queues.capacity_bytes)}.`;

  const plugins = $("plugins").tBodies[0];
  plugins.replaceChildren(...snapshot.plugins.map((p) => {
    const p99 = windowP99(p);
    const tr = row([p.name, p.world || "", p.wit_version || "", p.generation, (p.sha256 || "").slice(0, 12),
      (p.capabilities || []).join(", "), rate(perSecond("plugins", p.name, (x) => x.stats.calls, seconds)),
      p.stats.errors, p.stats.faults, p99 ? `≤ ${p99} µs` : "–", p.stats.quarantines], [3, 6, 7, 8, 9, 10]);
    tr.dataset.plugin = p.name;
    return tr;
  }));

  drawRollouts(snapshot.plugins.filter((p) => p.rollout));

  const reloads = $("reloads");
  reloads.replaceChildren(...snapshot.reloads.map((r) => {
    if (r.kind === "rollout") {
      const generation = r.new_generation ? `generation ${r.stable_generation} → ${r.new_generation}` : `generation ${r.stable_generation} serves`;
      return element("li", `${r.at} rollout ${r.plugin} ${r.step.replace("_", " ")} by ${r.by} (${r.mode}, ${generation}): ${r.reason}`, r.step === "rolled_back" ? "failed" : "");
    }
    const what = r.kind === "plugin" ? `plugin ${r.plugin} ${r.change}` : "config";
    const generations = `${r.old_generation ?? "–"} → ${r.new_generation ?? "–"}`;
    const added = (r.capabilities_added || []).length ? ` +[${r.capabilities_added.join(", ")}]` : "";
    const removed = (r.capabilities_removed || []).length ? ` −[${r.capabilities_removed.join(", ")}]` : "";
    const error = r.error ? `: ${r.error}` : "";
    return element("li", `${r.at} ${what} ${r.result} (generation ${generations})${added}${removed}${error}`, r.result === "ok" ? "" : "failed");
  }));

  for (const [key, value] of Object.entries(totals)) {
    draw($(`chart-${key}`), remember(`total:${key}`, value));
    $(`rate-${key}`).textContent = rate(value);
  }
  const routeChoice = $("dl-route");
  const chosen = routeChoice.value;
  routeChoice.replaceChildren(element("option", "back where each failed"), ...snapshot.routes.map((r) => element("option", `through route ${r.name}`)));
  routeChoice.options[0].value = "";
  snapshot.routes.forEach((r, i) => { routeChoice.options[i + 1].value = r.name; });
  routeChoice.value = chosen;
  const dl = snapshot.dead_letters;
  $("dl-summary").textContent = dl ? `${dl.held} kept (${bytes(dl.bytes)} of ${bytes(dl.max_bytes)}), ${dl.replayed} replayed, ${dl.evicted} pushed out by newer ones` : "the dead-letter store is off";
}

// Each running rollout: the stable version's figures above the candidate's, the rules'
// progress, buttons to decide now; then the differences the shadows kept.
function drawRollouts(running) {
  $("rollouts-none").hidden = running.length > 0;
  $("rollouts").hidden = running.length === 0;
  const rows = [];
  for (const p of running) {
    const r = p.rollout, f = r.figures;
    const mode = f.mode === "canary" ? `canary ${f.share}%${f.key ? ` by ${f.key}` : ""}` : "shadow";
    const differences = f.mode === "shadow" ? `${f.differences} of ${f.compared}` : `${f.fallbacks} fallbacks`;
    const decides = r.automatic ? `rules, at ${r.rules.min_events} events` : "an operator";
    for (const [version, v] of [["stable", f.stable], ["candidate", f.candidate]]) {
      const label = version === "stable" ? `generation ${r.stable_generation}` : `candidate ${r.candidate_sha256.slice(0, 12)}`;
      const cells = [version === "stable" ? p.name : "", version === "stable" ? mode : "", label, v.events, v.errors, v.faults,
        v.error_rate.toFixed(4), v.p99_micros ? `≤ ${v.p99_micros} µs` : "–", version === "stable" ? "" : differences,
        version === "stable" ? "" : decides];
      const actions = element("td");
      if (version === "candidate") {
        for (const verb of ["promote", "abort"]) {
          const button = element("button", verb);
          button.type = "button";
          button.dataset.rollout = `${p.name}/${verb}`;
          button.addEventListener("click", () => decide(p.name, verb));
          actions.appendChild(button);
        }
      }
      const tr = row([...cells, actions], [3, 4, 5, 6]);
      tr.dataset.rollout = `${p.name}:${version}`;
      rows.push(tr);
    }
  }
  $("rollouts").tBodies[0].replaceChildren(...rows);
  loadDifferences(running.filter((p) => p.rollout.figures.mode === "shadow"));
}

async function loadDifferences(shadows) {
  const items = [];
  for (const p of shadows) {
    try {
      const rollout = await api(`/v1/admin/plugins/${encodeURIComponent(p.name)}/rollout`);
      for (const d of rollout.differences.slice().reverse()) {
        const item = element("li", `${d.at} ${p.name}: event ${d.input.id} (${d.input.subject}, type ${d.input.type}): ${d.what}`);
        item.appendChild(element("pre", `stable:    ${JSON.stringify(d.stable)}\ncandidate: ${JSON.stringify(d.candidate)}`));
        items.push(item);
      }
    } catch (error) {
      // The rollout ended between the snapshot and this call: nothing to show.
    }
  }
  $("rollout-differences").replaceChildren(...items);
}

async function decide(plugin, verb) {
  try {
    const report = await api(`/v1/admin/plugins/${encodeURIComponent(plugin)}/${verb}`, { method: "POST" });
    $("rollout-result").textContent = `${plugin}: ${report.step.replace("_", " ")} (${report.reason})`;
  } catch (error) {
    $("rollout-result").textContent = `${plugin}: ${error.message}`;
  }
  refresh();
}

async function refresh() {
  try {
    const snapshot = await api("/v1/admin/snapshot");
    const now = performance.now();
    const seconds = state.takenAt ? (now - state.takenAt) / 1000 : 0;
    render(snapshot, seconds);
    state.previous = snapshot;
    state.takenAt = now;
    $("status").textContent = "live";
  } catch (err) {
    $("status").textContent = `refresh failed: ${err.message}`;
  }
}

// The tap: a Server-Sent Events stream read through fetch, so it can carry the token.
async function startTap(pattern) {
  stopTap();
  const controller = new AbortController();
  state.tap = controller;
  $("tap-start").disabled = true;
  $("tap-stop").disabled = false;
  $("tap-events").replaceChildren();
  $("tap-status").textContent = `watching ${pattern}`;
  try {
    const response = await fetch(`/v1/admin/tap?subject=${encodeURIComponent(pattern)}`,
      { headers: { Authorization: `Bearer ${state.token}` }, signal: controller.signal });
    if (!response.ok) throw new Error((await response.json().catch(() => ({}))).error || response.statusText);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const message = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = message.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
        if (data) showTapped(JSON.parse(data));
      }
    }
  } catch (err) {
    if (err.name === "AbortError") return;
    $("tap-status").textContent = `tap ended: ${err.message}`;
    if (state.tap === controller) stopTap();
    return;
  }
  // The router ended the stream (a reload changed who is an administrator): watch again.
  if (state.tap === controller) setTimeout(() => { if (state.tap === controller) startTap(pattern); }, 1000);
}

function showTapped(message) {
  const event = message.event;
  const data = event.data !== undefined ? JSON.stringify(event.data) : (event.data_text ?? event.data_base64 ?? "");
  const item = element("li", `${event.subject}  ${event.id}  ${event.type}  ${data.slice(0, 200)}`);
  item.dataset.subject = event.subject;
  const list = $("tap-events");
  list.prepend(item);
  while (list.children.length > 100) list.lastChild.remove();
  $("tap-status").textContent = `watching; ${message.skipped} skipped (a sample of at most ${message.per_second} a second)`;
}

function stopTap() {
  if (state.tap) state.tap.abort();
  state.tap = null;
  $("tap-start").disabled = false;
  $("tap-stop").disabled = true;
}

async function loadDeadLetters() {
  const query = new URLSearchParams({ limit: "200" });
  if ($("dl-from").value) query.set("from", $("dl-from").value);
  if ($("dl-reason").value) query.set("reason", $("dl-reason").value);
  try {
    const listing = await api(`/v1/admin/dead-letters?${query}`);
    const body = $("dead-letters").tBodies[0];
    body.replaceChildren(...listing.dead_letters.map((l) => {
      const select = element("input");
      select.type = "checkbox";
      select.className = "dl-select";
      select.value = l.seq;
      select.checked = state.selected.has(l.seq);
      select.addEventListener("change", () => {
        if (select.checked) state.selected.add(l.seq); else state.selected.delete(l.seq);
      });
      const pick = element("td");
      pick.appendChild(select);
      const inspect = element("button", "inspect");
      inspect.type = "button";
      inspect.addEventListener("click", () => showDeadLetter(l.seq));
      const action = element("td");
      action.appendChild(inspect);
      const replays = l.replays.map((r) => `${r.target} ${r.outcome || r.error}`).join("; ");
      const tr = row([pick, l.seq, l.at, l.from, element("td", l.reason, "error"), l.attempts, l.subject, l.id, replays, action], [1, 5]);
      tr.dataset.seq = l.seq;
      return tr;
    }));
  } catch (err) {
    $("dl-result").textContent = `dead letters: ${err.message}`;
  }
}

async function showDeadLetter(seq) {
  try {
    $("dl-detail").textContent = JSON.stringify(await api(`/v1/admin/dead-letters/${seq}`), null, 2);
  } catch (err) {
    $("dl-detail").textContent = err.message;
  }
}

async function replaySelected() {
  const seqs = [...state.selected];
  if (seqs.length === 0) {
    $("dl-result").textContent = "select the dead letters to replay";
    return;
  }
  const request = { seqs };
  if ($("dl-route").value) request.route = $("dl-route").value;
  try {
    const answer = await api("/v1/admin/dead-letters/replay", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request),
    });
    state.selected.clear();
    const failed = answer.replayed.filter((r) => r.error);
    $("dl-result").textContent = `${answer.replayed.length - failed.length} replayed` +
      (failed.length ? `, ${failed.length} not: ${failed.map((r) => `#${r.seq} ${r.error}`).join("; ")}` : "");
  } catch (err) {
    $("dl-result").textContent = `replay refused: ${err.message}`;
  }
  await loadDeadLetters();
}

async function signIn(token) {
  state.token = token;
  try {
    render(await api("/v1/admin/snapshot"), 0);
  } catch (err) {
    $("login-error").textContent = err.message;
    sessionStorage.removeItem("eventyard-token");
    return;
  }
  sessionStorage.setItem("eventyard-token", token);
  $("login-panel").hidden = true;
  $("console").hidden = false;
  await refresh();
  setInterval(refresh, 1000);
  await loadDeadLetters();
  setInterval(loadDeadLetters, 5000);
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (e) => { e.preventDefault(); signIn($("token").value); });
  $("tap-form").addEventListener("submit", (e) => { e.preventDefault(); startTap($("tap-pattern").value); });
  $("tap-stop").addEventListener("click", stopTap);
  $("dl-filter").addEventListener("submit", (e) => { e.preventDefault(); loadDeadLetters(); });
  $("dl-replay-form").addEventListener("submit", (e) => { e.preventDefault(); replaySelected(); });
  if (state.token) signIn(state.token);
});
