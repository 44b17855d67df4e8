// The companion's page: the library, progress, receipts, the transfer
// log, the consent dialog, and pictures of the swarm: each item's chunk
// map, its peers, and the rates up and down over the last minutes, per
// item and for the library, drawn as inline SVG from the event stream.
// Plain DOM; every text from the companion goes in with textContent,
// never as HTML. The token lives in this tab's sessionStorage and goes
// out only in the Authorization header.
"use strict";

const TOKEN_KEY = "minimodel-companion-token";
const SVG = "http://www.w3.org/2000/svg";
// Samples kept for the rate graphs (five minutes at one a second).
const RATE_SAMPLES = 300;
const items = new Map();
// Rates by item id, and the library's: arrays of {up, down}, oldest first.
const rateHistory = new Map();
let libraryRates = [];
// When each waiting item's view was received (its countdown runs here).
const received = new Map();
let token = sessionStorage.getItem(TOKEN_KEY) || "";
let streaming = null;
let followsTimer = null;

const $ = (id) => document.getElementById(id);

function human(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(bytes) || 0;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function say(text) { $("status").textContent = text; }

async function api(method, path, body) {
  const options = { method, headers: { Authorization: `Bearer ${token}` } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (response.status === 401) { disconnect("The token was refused; paste it again."); }
  return { ok: response.ok, status: response.status, data };
}

function errorText(data) {
  if (!data) return "the companion did not answer";
  return data.hint ? `${data.error} (${data.hint})` : data.error;
}

function disconnect(message) {
  token = "";
  sessionStorage.removeItem(TOKEN_KEY);
  if (streaming) { streaming.abort(); streaming = null; }
  $("app").hidden = true;
  $("connect-section").hidden = false;
  $("who").textContent = message || "";
}

async function connect() {
  const answer = await api("GET", "/api/v1/library");
  if (!answer.ok) { if (answer.status !== 401) say(errorText(answer.data)); return; }
  $("connect-section").hidden = true;
  $("app").hidden = false;
  const companion = answer.data.companion;
  $("who").textContent = `${companion.version}, peer ${companion.peer_id}, library ${companion.library}`;
  showLimits(answer.data.limits);
  for (const item of answer.data.items) showItem(item);
  await loadPictures(answer.data);
  await loadLog();
  await loadFollows();
  if (!followsTimer) followsTimer = setInterval(() => { if (token) loadFollows(); }, 30000);
  listen();
}

function showLimits(limits) {
  const q = limits.quota;
  const quota = q.quota_bytes == null ? "no quota" : `quota ${human(q.quota_bytes)}`;
  const free = q.free_bytes == null ? "" : `, ${human(q.free_bytes)} free on disk`;
  const up = limits.caps.max_upload == null ? "no upload cap" : `upload cap ${human(limits.caps.max_upload)}/s`;
  const down = limits.caps.max_download == null ? "no download cap" : `download cap ${human(limits.caps.max_download)}/s`;
  $("limits-text").textContent = `Downloads take ${human(q.used_bytes)} (${quota}${free}); ${up}; ${down}.`;
}

function listFor(item) {
  if (item.kind === "share") return $("shared-list");
  if (item.state === "done" || item.state === "seeding" || item.receipt) return $("done-list");
  return $("fetching-list");
}

function updateEmpty() {
  for (const note of document.querySelectorAll("[data-empty-for]")) {
    note.hidden = $(note.dataset.emptyFor).children.length > 0;
  }
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(label, action) {
  const node = element("button", "", label);
  node.type = "button";
  node.addEventListener("click", action);
  return node;
}

function rate(bytes) { return `${human(bytes)}/s`; }

function capText(cap) { return cap == null ? "none" : rate(cap); }

// The words of a waiting item's tries, counted on from when its view came.
function waitingText(item) {
  const problem = item.problem;
  const waiting = problem && problem.waiting;
  if (!waiting) return problem ? problem.text : "";
  const gone = Math.floor((Date.now() - (received.get(item.id) || Date.now())) / 1000);
  const ago = waiting.last_try_seconds_ago + gone;
  const next = Math.max(0, waiting.next_try_in_seconds - gone);
  const what = problem.kind === "network" ? "waiting for the network" : "waiting for peers";
  const known = waiting.addresses_known === 1 ? "1 address" : `${waiting.addresses_known} addresses`;
  return `${what}: last tried ${span(ago)} ago, next in ${span(next)}, ${known} known`;
}

function span(seconds) {
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return seconds % 60 ? `${Math.floor(seconds / 60)} min ${seconds % 60} s` : `${seconds / 60} min`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}

// An item's card: the part an item event redraws, and its pictures,
// which activity and rate events redraw.
function cardFor(item) {
  let card = document.querySelector(`li.item[data-id="${item.id}"]`);
  if (card) return card;
  card = element("li", "item");
  card.dataset.id = item.id;
  card.appendChild(element("div", "info"));
  const pictures = element("div", "pictures");
  const chunks = element("figure", "chunks");
  chunks.appendChild(svgElement("svg", { class: "chunk-map", role: "img" }));
  chunks.appendChild(element("figcaption", "chunk-summary muted", "No chunk map yet: it comes while the item runs."));
  pictures.appendChild(chunks);
  const rates = element("figure", "rates");
  rates.appendChild(svgElement("svg", { class: "rate-graph", role: "img", viewBox: "0 0 300 60", preserveAspectRatio: "none" }));
  rates.appendChild(element("figcaption", "rate-summary muted", ""));
  pictures.appendChild(rates);
  const details = element("details", "peers-box");
  details.open = true;
  details.appendChild(element("summary", "", "Peers"));
  const table = element("table", "peers");
  const head = element("thead");
  const row = element("tr");
  for (const title of ["Peer", "Address", "Found by", "Direction", "Down", "Up", "Received", "Sent", "Since"]) {
    const cell = element("th", "", title);
    cell.scope = "col";
    row.appendChild(cell);
  }
  head.appendChild(row);
  table.appendChild(head);
  table.appendChild(element("tbody"));
  details.appendChild(table);
  pictures.appendChild(details);
  card.appendChild(pictures);
  drawRates(card, rateHistory.get(item.id) || []);
  return card;
}

function showItem(item) {
  items.set(item.id, item);
  received.set(item.id, Date.now());
  const card = cardFor(item);
  const list = listFor(item);
  if (card.parentElement !== list) list.appendChild(card);
  card.dataset.state = item.state;
  const info = card.querySelector(".info");
  info.replaceChildren();

  const title = element("h3", "", `${item.model_id} `);
  title.appendChild(element("span", "state", item.state));
  info.appendChild(title);

  if (item.signature) {
    const signed = item.signature.status === "signed";
    // The text says "manifest unsigned: ..." itself.
    info.appendChild(element("p", signed ? "signature" : "signature unsigned", item.signature.text));
  }

  const progress = element("progress");
  progress.max = Math.max(item.artifact_bytes, 1);
  progress.value = item.verified_bytes;
  progress.setAttribute("aria-label", `${item.model_id}: verified bytes`);
  info.appendChild(progress);
  const percent = item.artifact_bytes ? Math.floor(100 * item.verified_bytes / item.artifact_bytes) : 0;
  const parts = [`${human(item.verified_bytes)} of ${human(item.artifact_bytes)} verified (${percent}%)`];
  if (item.state === "fetching") parts.push(`${rate(item.rate_bytes_per_second)} down`);
  parts.push(`${item.peers} peer${item.peers === 1 ? "" : "s"}`);
  if (item.uploaded_bytes) parts.push(`${human(item.uploaded_bytes)} served (${rate(item.upload_rate_bytes_per_second)})`);
  info.appendChild(element("p", "figures", parts.join(", ")));
  const caps = item.effective_caps;
  const own = item.caps;
  info.appendChild(element("p", "caps",
    `Caps in force: up ${capText(caps.max_upload)}, down ${capText(caps.max_download)}` +
    ` (its own: up ${capText(own.max_upload)}, down ${capText(own.max_download)})`));

  if (item.serving) {
    const addrs = (item.serving.offer.addrs || []).join(", ");
    info.appendChild(element("p", "serving", `Serving on ${item.serving.listen}: peers reach it at ${addrs}.`));
    const details = element("details");
    details.appendChild(element("summary", "", "Peer offer"));
    details.appendChild(element("pre", "offer", JSON.stringify(item.serving.offer, null, 2)));
    info.appendChild(details);
    if (item.serving.ticket) {
      const ticket = element("p", "ticket", "Ticket (minimodel fetch TICKET -o DIR): ");
      ticket.appendChild(element("code", "ticket-text", item.serving.ticket));
      info.appendChild(ticket);
    }
  }
  if (item.reach && item.reach.verdict !== "not-listening") {
    const reach = element("p", item.reach.unreachable ? "reach problem waiting" : "reach",
      `Reachability: ${item.reach.text}.`);
    reach.dataset.verdict = item.reach.verdict;
    info.appendChild(reach);
    if (item.reach.advice) info.appendChild(element("p", "hint muted", item.reach.advice));
  }

  if (item.problem) {
    const problem = element("p", item.state === "failed" || item.state === "withdrawn" ? "problem error" : "problem waiting", waitingText(item));
    problem.dataset.kind = item.problem.kind;
    info.appendChild(problem);
    if (item.problem.hint) info.appendChild(element("p", "hint muted", item.problem.hint));
  }
  if (item.reuse) info.appendChild(element("p", "reuse muted", `${item.reuse[0].toUpperCase()}${item.reuse.slice(1)}.`));
  if (item.handoff) info.appendChild(element("p", "handoff", item.handoff.text));

  const actions = element("div", "buttons");
  if (item.receipt) actions.appendChild(button("Receipt", () => showReceipt(item.id)));
  if (item.paused || item.state === "failed" || item.state === "waiting") {
    const label = item.paused ? "Resume" : "Try now";
    actions.appendChild(button(label, () => act(item.id, "resume")));
  }
  if (!item.paused) actions.appendChild(button("Pause", () => act(item.id, "pause")));
  actions.appendChild(button("Remove…", () => askRemove(item)));
  info.appendChild(actions);
  updateEmpty();
}

// Waiting items count their tries on between events.
setInterval(() => {
  for (const item of items.values()) {
    if (!item.problem || !item.problem.waiting) continue;
    const line = document.querySelector(`li.item[data-id="${item.id}"] .problem`);
    if (line) line.textContent = waitingText(item);
  }
}, 1000);

function svgElement(tag, attributes) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, String(value));
  return node;
}

// The chunk map: one square per cell (a run of chunks), in rows of 32.
// A download's cells say verified, in flight or missing; a share's say
// how many connected peers hold them.
function drawChunkMap(card, map, kind) {
  const svg = card.querySelector("svg.chunk-map");
  const cells = map.cell_chunks.length;
  // Always 32 columns: a small artifact's few cells stay small.
  const columns = 32;
  const rows = Math.max(1, Math.ceil(cells / columns));
  const size = 10;
  svg.setAttribute("viewBox", `0 0 ${columns * size} ${rows * size}`);
  svg.replaceChildren();
  let verified = 0, inFlight = 0;
  const share = kind === "share";
  for (let i = 0; i < cells; i += 1) {
    const chunks = map.cell_chunks[i];
    const done = map.verified[i];
    const flying = map.in_flight[i];
    const held = map.holders[i];
    verified += done;
    inFlight += flying;
    let state;
    if (share) state = held >= 3 ? "held-many" : `held-${held}`;
    else if (done === chunks) state = "verified";
    else if (flying > 0) state = "in-flight";
    else if (done > 0) state = "partial";
    else state = "missing";
    const rect = svgElement("rect", {
      class: `cell ${state}`,
      x: (i % columns) * size, y: Math.floor(i / columns) * size,
      width: size - 1, height: size - 1,
      "data-chunks": chunks, "data-verified": done, "data-in-flight": flying, "data-holders": held,
    });
    const tip = svgElement("title");
    tip.textContent = `${chunks} chunk${chunks === 1 ? "" : "s"}: ${done} verified, ${flying} in flight, held by ${held} peer${held === 1 ? "" : "s"}`;
    rect.appendChild(tip);
    svg.appendChild(rect);
  }
  svg.dataset.verified = verified;
  svg.dataset.chunks = map.chunks;
  svg.setAttribute("aria-label", `chunk map: ${verified} of ${map.chunks} chunks verified, ${inFlight} in flight`);
  const summary = card.querySelector(".chunk-summary");
  summary.textContent = share
    ? `${map.chunks} chunks; the darker, the more connected peers hold them (fewest: ${Math.min(...map.holders)})`
    : `${verified} of ${map.chunks} chunks verified, ${inFlight} in flight`;
}

function peerRow(peer) {
  const row = element("tr");
  row.dataset.peer = peer.peer_id;
  const found = { given: "given", remembered: "remembered", "peer-exchange": "peer exchange", dht: "DHT", lan: "LAN", incoming: "incoming" };
  const since = peer.since ? new Date(peer.since).toLocaleTimeString() : "";
  for (const text of [
    peer.peer_id.slice(0, 10), peer.address || "", found[peer.found_by] || "",
    peer.direction || (peer.connected ? "" : "gone"),
    rate(peer.download_rate_bytes_per_second), rate(peer.upload_rate_bytes_per_second),
    human(peer.downloaded_bytes), human(peer.uploaded_bytes), since,
  ]) row.appendChild(element("td", "", text));
  if (!peer.connected) row.className = "muted";
  return row;
}

function showActivity(activity) {
  const item = items.get(activity.id);
  const card = document.querySelector(`li.item[data-id="${activity.id}"]`);
  if (!item || !card) return;
  drawChunkMap(card, activity.chunk_map, item.kind === "share" || item.state === "seeding" ? "share" : "download");
  const body = card.querySelector("table.peers tbody");
  body.replaceChildren(...activity.peers.map(peerRow));
}

// A rate graph: down and up over the last samples, scaled to the larger.
function drawRateGraph(svg, samples) {
  svg.replaceChildren();
  const width = 300, height = 60;
  const peak = Math.max(1024, ...samples.map((s) => Math.max(s.up, s.down)));
  const step = width / (RATE_SAMPLES - 1);
  const start = RATE_SAMPLES - samples.length;
  for (const [key, name] of [["down", "rate-down"], ["up", "rate-up"]]) {
    const points = samples.map((s, i) =>
      `${((start + i) * step).toFixed(1)},${(height - 2 - (s[key] / peak) * (height - 4)).toFixed(1)}`);
    const line = svgElement("polyline", { class: name, points: points.join(" "), fill: "none" });
    svg.appendChild(line);
  }
  svg.dataset.samples = samples.length;
  svg.dataset.peak = Math.round(peak);
  return peak;
}

function drawRates(card, samples) {
  const svg = card.querySelector("svg.rate-graph");
  const peak = drawRateGraph(svg, samples);
  const last = samples.length ? samples[samples.length - 1] : { up: 0, down: 0 };
  svg.setAttribute("aria-label", `rates over the last ${samples.length} s`);
  card.querySelector(".rate-summary").textContent =
    `down ${rate(last.down)}, up ${rate(last.up)}; the graph's top is ${rate(peak)} (last ${Math.ceil(samples.length / 60)} min)`;
}

function drawLibraryRates() {
  const svg = $("library-rates");
  const peak = drawRateGraph(svg, libraryRates);
  const last = libraryRates.length ? libraryRates[libraryRates.length - 1] : { up: 0, down: 0 };
  $("library-rate-summary").textContent =
    `The library: down ${rate(last.down)}, up ${rate(last.up)}; the graph's top is ${rate(peak)}.`;
}

function keep(array, sample) {
  array.push(sample);
  if (array.length > RATE_SAMPLES) array.splice(0, array.length - RATE_SAMPLES);
}

function addRates(sample) {
  keep(libraryRates, sample.library);
  for (const id of items.keys()) {
    if (!rateHistory.has(id)) rateHistory.set(id, []);
    keep(rateHistory.get(id), sample.items[id] || { up: 0, down: 0 });
    const card = document.querySelector(`li.item[data-id="${id}"]`);
    if (card) drawRates(card, rateHistory.get(id));
  }
  drawLibraryRates();
}

async function loadPictures(library) {
  const rates = await api("GET", "/api/v1/rates");
  if (rates.ok) {
    libraryRates = rates.data.samples.map((s) => s.library);
    for (const item of library.items) {
      rateHistory.set(item.id, rates.data.samples.map((s) => s.items[item.id] || { up: 0, down: 0 }));
      const card = document.querySelector(`li.item[data-id="${item.id}"]`);
      if (card) drawRates(card, rateHistory.get(item.id));
    }
    drawLibraryRates();
  }
  for (const item of library.items) {
    const activity = await api("GET", `/api/v1/items/${item.id}/activity`);
    if (activity.ok) showActivity(activity.data);
  }
}

async function act(id, what) {
  const answer = await api("POST", `/api/v1/items/${id}/${what}`);
  if (answer.ok) showItem(answer.data); else say(errorText(answer.data));
}

async function showReceipt(id) {
  const answer = await api("GET", `/api/v1/items/${id}/receipt`);
  if (!answer.ok) { say(errorText(answer.data)); return; }
  $("receipt-text").textContent = JSON.stringify(answer.data, null, 2);
  $("receipt-dialog").showModal();
}

function askRemove(item) {
  $("remove-text").textContent = item.kind === "share"
    ? `Stop serving ${item.model_id} and forget it. Your file stays where it is.`
    : `Stop ${item.model_id} and forget it.`;
  $("remove-files-label").hidden = item.kind === "share";
  $("remove-files").checked = false;
  const dialog = $("remove-dialog");
  $("remove-yes").onclick = async () => {
    dialog.close();
    const files = item.kind !== "share" && $("remove-files").checked;
    const answer = await api("DELETE", `/api/v1/items/${item.id}${files ? "?delete_files=true" : ""}`);
    if (answer.ok) dropItem(item.id); else say(errorText(answer.data));
  };
  $("remove-no").onclick = () => dialog.close();
  dialog.showModal();
}

function dropItem(id) {
  items.delete(id);
  rateHistory.delete(id);
  const card = document.querySelector(`li.item[data-id="${id}"]`);
  if (card) card.remove();
  updateEmpty();
}

function logRow(entry) {
  const row = element("tr");
  const receipt = entry.receipt ? entry.receipt.path : "";
  for (const text of [entry.at, entry.model_id, entry.direction, entry.peer_id.slice(0, 10),
    human(entry.bytes), entry.ended, receipt]) {
    row.appendChild(element("td", "", text));
  }
  return row;
}

// The followed publishers: their last lookup, a version offered, and
// what a person can do about each.
function followPath(follow) {
  return `/api/v1/follows/${encodeURIComponent(follow.publisher_key)}/${encodeURIComponent(follow.model_id)}`;
}

function followRow(follow) {
  const row = element("li", "follow");
  row.appendChild(element("p", "follow-title", `${follow.model_id} of ${follow.publisher_key} (${follow.policy === "auto" ? "fetched by itself" : "offered"})`));
  row.appendChild(element("p", "muted", follow.seq === null ? "no channel item read yet" : `channel sequence number ${follow.seq}`));
  if (follow.last_lookup) {
    const lookup = element("p", follow.last_lookup.ok ? "follow-lookup" : "follow-lookup problem waiting", `Last lookup: ${follow.last_lookup.text}`);
    row.appendChild(lookup);
  }
  const actions = element("div", "buttons");
  if (follow.offer) {
    row.appendChild(element("p", "offer", `New version ${follow.offer.manifest_sha256} offered.`));
    actions.appendChild(button("Fetch it…", () => addWithConsent("downloads", { ticket: follow.offer.ticket })));
  }
  actions.appendChild(button("Look up now", async () => {
    const answer = await api("POST", `${followPath(follow)}/lookup`);
    say(answer.ok ? `Looking up the channel of ${follow.model_id}.` : errorText(answer.data));
    setTimeout(loadFollows, 3000);
  }));
  actions.appendChild(button("Unfollow", async () => {
    const answer = await api("DELETE", followPath(follow));
    say(answer.ok ? `No longer following ${follow.model_id}.` : errorText(answer.data));
    loadFollows();
  }));
  row.appendChild(actions);
  return row;
}

async function loadFollows() {
  const answer = await api("GET", "/api/v1/follows");
  if (!answer.ok) return;
  const list = $("follows-list");
  list.replaceChildren();
  for (const follow of answer.data.follows) list.appendChild(followRow(follow));
  $("follows-empty").hidden = answer.data.follows.length > 0;
}

async function addFollow() {
  const request = {
    publisher_key: $("follow-key").value.trim(),
    model_id: $("follow-model").value.trim(),
    policy: $("follow-auto").checked ? "auto" : "ask",
  };
  if (request.policy === "auto") {
    // The same dialog as any add: the words, then one explicit yes.
    const yes = await consent({
      // Nothing is signed yet: each version is checked when it comes.
      signature: { status: "to-check", text: `Publisher key ${request.publisher_key}: nothing checked yet; each version must be signed by it` },
      asks: [
        { consent: "fetch", words: `Fetch each new version of ${request.model_id} that this publisher's channel names, from the peers it names, into the library, beside the versions there; each manifest must be signed by this key, and every chunk is checked against it. Nothing here opens or runs the model.` },
        { consent: "trust_key", words: "Trust this key and pin it in the companion's keyring at the first version fetched, if it is not pinned yet." },
      ],
    });
    if (!yes) { say("Not followed: consent not given."); return; }
    request.consent = { fetch: true, trust_key: true };
  }
  const answer = await api("POST", "/api/v1/follows", request);
  if (!answer.ok) { say(errorText(answer.data)); return; }
  say(`Following ${request.model_id}.`);
  loadFollows();
  setTimeout(loadFollows, 3000);
}

async function loadLog() {
  const answer = await api("GET", "/api/v1/log?limit=200");
  if (!answer.ok) return;
  const rows = $("log-rows");
  rows.replaceChildren();
  for (const entry of answer.data.entries.slice().reverse()) rows.appendChild(logRow(entry));
}

// The consent dialog: the words of every ask, then one explicit yes.
function consent(preview) {
  return new Promise((resolve) => {
    const signature = preview.signature;
    const line = $("consent-signature");
    line.className = signature.status === "signed" ? "" : "unsigned";
    // An unsigned manifest's text says so ("manifest unsigned: ...").
    line.textContent = signature.text;
    const list = $("consent-asks");
    list.replaceChildren();
    for (const ask of preview.asks) list.appendChild(element("li", "", ask.words));
    const dialog = $("consent-dialog");
    const done = (yes) => { dialog.close(); resolve(yes); };
    $("consent-yes").onclick = () => done(true);
    $("consent-no").onclick = () => done(false);
    dialog.oncancel = () => resolve(false);
    dialog.showModal();
    $("consent-no").focus();
  });
}

async function addWithConsent(kind, request) {
  const preview = await api("POST", `/api/v1/${kind}/preview`, request);
  if (!preview.ok) { say(errorText(preview.data)); return; }
  if (!(await consent(preview.data))) { say("Nothing was added: consent not given."); return; }
  const given = {};
  for (const ask of preview.data.asks) given[ask.consent] = true;
  const answer = await api("POST", `/api/v1/${kind}`, { ...request, consent: given });
  if (answer.ok) { showItem(answer.data); say(`Added ${answer.data.model_id}.`); }
  else say(errorText(answer.data));
}

function splitOffers(text) {
  const offers = [];
  let depth = 0, start = -1, inString = false, escaped = false;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (inString) {
      if (escaped) escaped = false;
      else if (c === "\\") escaped = true;
      else if (c === "\"") inString = false;
    } else if (c === "\"") inString = true;
    else if (c === "{") { if (depth === 0) start = i; depth += 1; }
    else if (c === "}") { depth -= 1; if (depth === 0 && start >= 0) offers.push(JSON.parse(text.slice(start, i + 1))); }
  }
  return offers;
}

function optionalNumber(id) {
  const value = $(id).value.trim();
  return value === "" ? null : Number(value);
}

async function readEvents(signal) {
  const response = await fetch("/api/v1/events", {
    headers: { Authorization: `Bearer ${token}`, Accept: "text/event-stream" }, signal,
  });
  if (!response.ok || !response.body) throw new Error(`events: ${response.status}`);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).replace(/^ /, "");
      }
      if (data) handleEvent(name, JSON.parse(data));
    }
  }
}

function handleEvent(name, data) {
  if (name === "item") showItem(data);
  else if (name === "removed") dropItem(data.id);
  else if (name === "log") $("log-rows").prepend(logRow(data));
  else if (name === "limits") showLimits(data);
  else if (name === "activity") showActivity(data);
  else if (name === "rates") addRates(data);
  else if (name === "lagged") connect();
}

function listen() {
  if (streaming) streaming.abort();
  const controller = new AbortController();
  streaming = controller;
  readEvents(controller.signal).catch(() => {}).finally(() => {
    if (streaming === controller && token) setTimeout(() => { if (token) { listen(); } }, 2000);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("connect-form").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("token").value.trim();
    $("token").value = "";
    sessionStorage.setItem(TOKEN_KEY, token);
    connect();
  });
  $("share-form").addEventListener("submit", (event) => {
    event.preventDefault();
    addWithConsent("shares", {
      manifest_path: $("share-manifest").value.trim(),
      file: $("share-file").value.trim(),
      mirrors: $("share-mirrors").value.split("\n").map((l) => l.trim()).filter((l) => l),
    });
  });
  $("fetch-form").addEventListener("submit", (event) => {
    event.preventDefault();
    let offers;
    try { offers = splitOffers($("fetch-offers").value); }
    catch (error) { say(`The offers are not JSON: ${error.message}`); return; }
    // A ticket names the manifest and its peers in one string; anything
    // else is a manifest file's path.
    const named = $("fetch-manifest").value.trim();
    const manifest = named.startsWith("mm1") ? { ticket: named } : { manifest_path: named };
    addWithConsent("downloads", {
      ...manifest,
      peers: $("fetch-peers").value.split("\n").map((l) => l.trim()).filter((l) => l),
      mirrors: $("fetch-mirrors").value.split("\n").map((l) => l.trim()).filter((l) => l),
      offers,
      serve: $("fetch-serve").checked,
      seed_after: $("fetch-seed-after").checked,
      dht: $("fetch-dht").checked,
    });
  });
  $("follow-form").addEventListener("submit", (event) => {
    event.preventDefault();
    addFollow();
  });
  $("limits-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const answer = await api("PUT", "/api/v1/limits", {
      caps: { max_upload: optionalNumber("limit-upload"), max_download: optionalNumber("limit-download") },
      quota_bytes: optionalNumber("limit-quota"),
    });
    if (answer.ok) { showLimits(answer.data); say("Limits saved."); } else say(errorText(answer.data));
  });
  $("receipt-close").addEventListener("click", () => $("receipt-dialog").close());
  updateEmpty();
  if (token) connect();
});
