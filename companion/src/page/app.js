// The companion's page: the library, progress, receipts, the transfer
// log, and the consent dialog. Plain DOM; every text from the companion
// goes in with textContent, never as HTML. The token lives in this tab's
// sessionStorage and goes out only in the Authorization header.
"use strict";

const TOKEN_KEY = "minimodel-companion-token";
const items = new Map();
let token = sessionStorage.getItem(TOKEN_KEY) || "";
let streaming = null;

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
  await loadLog();
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

function showItem(item) {
  items.set(item.id, item);
  let card = document.querySelector(`li.item[data-id="${item.id}"]`);
  if (!card) {
    card = element("li", "item");
    card.dataset.id = item.id;
  }
  const list = listFor(item);
  if (card.parentElement !== list) list.appendChild(card);
  card.dataset.state = item.state;
  card.replaceChildren();

  const title = element("h3", "", `${item.model_id} `);
  title.appendChild(element("span", "state", item.state));
  card.appendChild(title);

  if (item.signature) {
    const signed = item.signature.status === "signed";
    card.appendChild(element("p", signed ? "" : "unsigned",
      signed ? item.signature.text : `unsigned: ${item.signature.text}`));
  }

  const progress = element("progress");
  progress.max = Math.max(item.artifact_bytes, 1);
  progress.value = item.verified_bytes;
  progress.setAttribute("aria-label", `${item.model_id}: verified bytes`);
  card.appendChild(progress);
  const percent = item.artifact_bytes ? Math.floor(100 * item.verified_bytes / item.artifact_bytes) : 0;
  const parts = [`${human(item.verified_bytes)} of ${human(item.artifact_bytes)} verified (${percent}%)`];
  if (item.state === "fetching") parts.push(`${human(item.rate_bytes_per_second)}/s`);
  parts.push(`${item.peers} peer${item.peers === 1 ? "" : "s"}`);
  if (item.uploaded_bytes) parts.push(`${human(item.uploaded_bytes)} served (${human(item.upload_rate_bytes_per_second)}/s)`);
  card.appendChild(element("p", "figures", parts.join(", ")));

  if (item.sources.length) {
    const details = element("details", "sources");
    details.appendChild(element("summary", "", "Where the bytes came from and went"));
    const list = element("ul");
    for (const source of item.sources) {
      list.appendChild(element("li", "",
        `${source.peer_id.slice(0, 10)}: ${human(source.downloaded_bytes)} from it, ${human(source.uploaded_bytes)} to it`));
    }
    details.appendChild(list);
    card.appendChild(details);
  }

  if (item.serving) {
    const addrs = (item.serving.offer.addrs || []).join(", ");
    card.appendChild(element("p", "serving", `Serving on ${item.serving.listen}: peers reach it at ${addrs}.`));
    const details = element("details");
    details.appendChild(element("summary", "", "Peer offer"));
    details.appendChild(element("pre", "offer", JSON.stringify(item.serving.offer, null, 2)));
    card.appendChild(details);
    if (item.serving.ticket) {
      const ticket = element("p", "ticket", "Ticket (minimodel fetch TICKET -o DIR): ");
      ticket.appendChild(element("code", "ticket-text", item.serving.ticket));
      card.appendChild(ticket);
    }
  }

  if (item.error) card.appendChild(element("p", "error", item.error));
  if (item.handoff) card.appendChild(element("p", "handoff", item.handoff.text));

  const actions = element("div", "buttons");
  if (item.receipt) actions.appendChild(button("Receipt", () => showReceipt(item.id)));
  if (item.paused || item.state === "failed") {
    actions.appendChild(button(item.state === "failed" ? "Try again" : "Resume", () => act(item.id, "resume")));
  } else {
    actions.appendChild(button("Pause", () => act(item.id, "pause")));
  }
  actions.appendChild(button("Remove…", () => askRemove(item)));
  card.appendChild(actions);
  updateEmpty();
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
    line.textContent = signature.status === "signed"
      ? signature.text : `This manifest is unsigned: ${signature.text}.`;
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
      offers,
      serve: $("fetch-serve").checked,
      seed_after: $("fetch-seed-after").checked,
      dht: $("fetch-dht").checked,
    });
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
