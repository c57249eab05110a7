/**
 * The dashboard's page, script and style sheet, held as strings so that they ship inside the package's
 * `dist/` with nothing to build.
 *
 * The script never writes data as HTML: every worker name, error message and setting goes through
 * `textContent` or `setAttribute`, and the Content-Security-Policy forbids inline scripts and styles (so
 * the page has none). The token comes from the address's fragment (`#token=...`, never sent to the
 * server) or the token form, is kept in `sessionStorage`, and travels only in the `Authorization` header;
 * the fragment is removed from the address bar at once.
 *
 * The events are read with `fetch` rather than `EventSource`, because `EventSource` cannot send an
 * `Authorization` header.
 *
 * @internal
 */

/** `GET /`. */
export const pageHtml = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>bgworker dashboard</title>
<link rel="stylesheet" href="/app.css">
<script src="/app.js" defer></script>
</head>
<body>
<header>
  <h1>effect-bgworker</h1>
  <span id="conn" class="conn conn-connecting">connecting</span>
  <div class="slots" title="slots used of max_worker_processes">
    <span id="slots-text">slots</span>
    <div class="slots-bar"><div id="slots-used"></div></div>
  </div>
  <span class="spacer"></span>
  <form id="token-form" hidden>
    <input id="token-input" type="password" placeholder="dashboard token" autocomplete="off" spellcheck="false">
    <button type="submit">use token</button>
  </form>
  <span id="mode" class="mode"></span>
  <button id="reload" type="button" hidden title="re-read the configuration, set every worker's reload flag (SIGHUP)">reload</button>
</header>
<main>
  <section>
    <h2>Workers <span id="worker-count" class="count"></span></h2>
    <table id="workers" class="grid">
      <thead><tr>
        <th>pid</th><th>name</th><th>type</th><th>state</th><th>wait event</th><th class="num">restarts</th>
        <th>last exit</th><th>next restart</th><th id="actions-head" hidden>actions</th>
      </tr></thead>
      <tbody></tbody>
    </table>
    <p id="no-workers" class="empty" hidden>no background workers registered</p>
  </section>
  <section>
    <h2>Timeline <span id="timeline-span" class="count"></span></h2>
    <div id="lanes" class="lanes"></div>
    <div class="legend">
      <span class="mark m-started"></span>start <span class="mark m-restarted"></span>restart
      <span class="mark m-exited-done"></span>done <span class="mark m-exited-failed"></span>failed
      <span class="mark m-exited-crashed"></span>crashed <span class="mark m-exited-killed"></span>killed
      <span class="mark m-given-up"></span>given up <span class="mark m-removed"></span>removed
    </div>
    <ol id="events" class="events"></ol>
  </section>
  <section>
    <h2>Settings <span id="settings-count" class="count"></span></h2>
    <table id="settings" class="grid">
      <thead><tr><th>name</th><th>setting</th><th>unit</th><th>source</th><th>context</th><th>pending restart</th></tr></thead>
      <tbody></tbody>
    </table>
    <p id="no-settings" class="empty" hidden>no GUC registry in this supervisor's context</p>
  </section>
</main>
<footer><span id="message"></span></footer>
</body>
</html>
`

/** `GET /app.css`. */
export const appCss = `:root {
  --bg: #0f1419; --panel: #161d26; --line: #253040; --text: #d7dde5; --dim: #8493a6; --accent: #6cb6ff;
  --green: #3fb950; --teal: #39c5bb; --amber: #d29922; --red: #f85149; --grey: #6e7681; --violet: #a371f7;
  font-family: ui-sans-serif, system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; font-size: 13px;
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text); }
header { display: flex; align-items: center; gap: 14px; padding: 10px 18px; background: var(--panel);
  border-bottom: 1px solid var(--line); position: sticky; top: 0; z-index: 1; }
h1 { font-size: 15px; margin: 0; letter-spacing: .02em; }
h2 { font-size: 13px; margin: 0 0 8px; color: var(--dim); text-transform: uppercase; letter-spacing: .06em; }
.count { color: var(--dim); font-weight: normal; text-transform: none; letter-spacing: 0; }
main { padding: 14px 18px; display: grid; gap: 18px; }
section { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 12px 14px; overflow-x: auto; }
.spacer { flex: 1; }
.conn { padding: 2px 8px; border-radius: 10px; font-size: 11px; border: 1px solid var(--line); }
.conn-live { color: var(--green); border-color: var(--green); }
.conn-connecting { color: var(--amber); border-color: var(--amber); }
.conn-error { color: var(--red); border-color: var(--red); }
.mode { color: var(--dim); font-size: 11px; }
.slots { display: flex; align-items: center; gap: 8px; color: var(--dim); }
.slots-bar { width: 160px; height: 8px; background: var(--line); border-radius: 4px; overflow: hidden; }
#slots-used { height: 100%; width: 0; background: var(--accent); transition: width .2s; }
#slots-used.full { background: var(--red); }
table.grid { border-collapse: collapse; width: 100%; }
.grid th { text-align: left; font-weight: 600; color: var(--dim); border-bottom: 1px solid var(--line); padding: 5px 7px; white-space: nowrap; }
.grid td { border-bottom: 1px solid var(--line); padding: 5px 7px; vertical-align: top; }
.grid tr:last-child td { border-bottom: none; }
.num { text-align: right; }
.mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
.dim { color: var(--dim); }
.badge { display: inline-block; padding: 1px 7px; border-radius: 9px; font-size: 11px; white-space: nowrap; border: 1px solid currentColor; }
.s-active { color: var(--green); } .s-idle { color: var(--teal); } .s-starting { color: var(--accent); }
.s-idle-in-transaction, .s-idle-in-transaction-aborted, .s-fastpath-function-call { color: var(--violet); }
.s-disabled { color: var(--grey); }
.s-waiting-for-restart { color: var(--amber); } .s-given-up { color: var(--red); } .s-not-yet-started { color: var(--grey); }
.exit { max-width: 300px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.grid td.name, .grid td.nowrap { white-space: nowrap; }
.grid td.name { max-width: 200px; overflow: hidden; text-overflow: ellipsis; }
.k-done { color: var(--green); } .k-failed { color: var(--amber); } .k-crashed { color: var(--red); } .k-killed { color: var(--violet); }
button { background: transparent; color: var(--accent); border: 1px solid var(--line); border-radius: 4px; padding: 2px 8px;
  font: inherit; font-size: 11px; cursor: pointer; }
button:hover { border-color: var(--accent); }
button.danger { color: var(--red); } button.danger:hover { border-color: var(--red); }
button:disabled { opacity: .5; cursor: default; }
.actions { white-space: nowrap; display: flex; gap: 4px; }
input { background: var(--bg); color: var(--text); border: 1px solid var(--line); border-radius: 4px; padding: 3px 8px; font: inherit; }
.empty { color: var(--dim); margin: 6px 0; }
.lanes { display: grid; grid-template-columns: minmax(120px, max-content) 1fr; gap: 4px 12px; align-items: center; }
.lane-label { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; max-width: 260px; }
.lane { position: relative; height: 16px; background: var(--bg); border-radius: 3px; }
.run { position: absolute; top: 6px; height: 4px; background: var(--green); opacity: .55; border-radius: 2px; }
.mark { display: inline-block; width: 9px; height: 9px; border-radius: 50%; vertical-align: middle; margin: 0 3px 0 10px; }
.lane .mark { position: absolute; top: 3.5px; margin: 0 0 0 -4.5px; }
.m-started { background: var(--green); } .m-restarted { background: var(--accent); }
.m-exited-done { background: var(--green); border: 2px solid var(--bg); } .m-exited-failed { background: var(--amber); }
.m-exited-crashed { background: var(--red); } .m-exited-killed { background: var(--violet); }
.m-given-up { background: var(--red); border-radius: 1px; transform: rotate(45deg); } .m-removed { background: var(--grey); border-radius: 1px; }
.m-registered { background: var(--line); }
.legend { color: var(--dim); margin: 8px 0 6px; font-size: 11px; }
.legend .mark { margin-left: 12px; }
.legend .mark:first-child { margin-left: 0; }
.events { list-style: none; padding: 0; margin: 6px 0 0; max-height: 180px; overflow-y: auto; border-top: 1px solid var(--line); }
.events li { padding: 3px 0; border-bottom: 1px solid var(--line); display: flex; gap: 10px; }
.events .when { color: var(--dim); width: 90px; flex: none; }
.events .who { width: 200px; flex: none; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.events .what { width: 90px; flex: none; }
.events .detail { color: var(--dim); overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.pending { color: var(--amber); font-weight: 600; }
footer { padding: 6px 18px 14px; color: var(--dim); min-height: 20px; }
footer .error { color: var(--red); }
`

/**
 * `GET /app.js`. Plain ES2017 for any current browser; written without template literals, since it sits
 * inside one.
 */
export const appJs = String.raw`"use strict";
(function () {
  var tokenKey = "effect-bgworker-dashboard-token";
  var state = { seq: -1, rows: new Map(), timeline: [], settings: null, slots: null, offset: 0, actions: false };
  var historySize = 500;
  var token = null;
  var controller = null;
  var retryTimer = null;
  var renderQueued = false;

  function $(id) { return document.getElementById(id); }
  function el(tag, className, text) {
    var e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function keyOf(row) { return row.slot + ":" + row.generation; }
  function slug(text) { return String(text).toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, ""); }
  function now() { return Date.now() + state.offset; }
  function clock(ms) {
    var d = new Date(ms);
    function pad(n, w) { return String(n).padStart(w || 2, "0"); }
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + "." + pad(d.getMilliseconds(), 3);
  }
  function duration(ms) {
    if (ms < 1000) return Math.max(0, Math.round(ms)) + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 1 : 0) + " s";
    if (ms < 3600000) return Math.floor(ms / 60000) + " min " + Math.round((ms % 60000) / 1000) + " s";
    return Math.floor(ms / 3600000) + " h " + Math.round((ms % 3600000) / 60000) + " min";
  }
  function say(text, isError) {
    var m = $("message");
    m.textContent = text || "";
    m.className = isError ? "error" : "";
  }

  // --- the token: from the fragment (never sent to the server) or the form; kept for this tab only ---
  function readToken() {
    var match = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (match) {
      token = decodeURIComponent(match[1]) || null;
      history.replaceState(null, "", location.pathname + location.search);
      try { if (token) sessionStorage.setItem(tokenKey, token); } catch (e) { /* storage disabled */ }
    } else {
      try { token = sessionStorage.getItem(tokenKey); } catch (e) { token = null; }
    }
  }
  function authHeaders(extra) {
    var h = extra || {};
    if (token) h["Authorization"] = "Bearer " + token;
    return h;
  }
  function showTokenForm(show) { $("token-form").hidden = !show; }

  // --- the event stream (fetch, so that it can carry the Authorization header) ---
  function setConn(kind, text) {
    var c = $("conn");
    c.className = "conn conn-" + kind;
    c.textContent = text;
  }
  function retry() {
    if (retryTimer) return;
    retryTimer = setTimeout(function () { retryTimer = null; connect(); }, 1000);
  }
  function connect() {
    if (controller) controller.abort();
    var mine = new AbortController();
    controller = mine;
    setConn("connecting", "connecting");
    fetch("/events", { headers: authHeaders(), cache: "no-store", signal: mine.signal }).then(function (res) {
      if (res.status === 401) {
        setConn("error", "token needed");
        say(token ? "the token was refused" : "this dashboard needs its token", true);
        showTokenForm(true);
        return;
      }
      if (!res.ok || !res.body) throw new Error("HTTP " + res.status);
      setConn("live", "live");
      var reader = res.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) throw new Error("the server closed the stream");
          buffer += decoder.decode(chunk.value, { stream: true });
          var end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            var block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            onBlock(block);
            if (controller !== mine) return;
          }
          return pump();
        });
      }
      return pump();
    }).catch(function (err) {
      if (controller !== mine || (err && err.name === "AbortError")) return;
      setConn("error", "reconnecting");
      retry();
    });
  }
  function onBlock(block) {
    var data = "";
    block.split("\n").forEach(function (line) { if (line.indexOf("data: ") === 0) data += line.slice(6); });
    if (data) onMessage(JSON.parse(data));
  }
  function onMessage(m) {
    if (m.type === "snapshot") {
      state.seq = m.seq;
      state.rows = new Map();
      m.rows.forEach(function (row) { state.rows.set(keyOf(row), row); });
      state.timeline = m.timeline;
      state.settings = m.settings;
      state.slots = m.slots;
      state.offset = m.now - Date.now();
      state.actions = m.actions === true;
      showTokenForm(state.actions && !token);
      say(state.actions ? (token ? "" : "enter the token to enable actions") : "read-only: no token configured, actions disabled");
      return queueRender();
    }
    if (m.seq <= state.seq) return;
    var first = m.type === "timeline" ? m.seq - m.entries.length + 1 : m.seq;
    if (first !== state.seq + 1) return connect(); // missed messages: start again from a snapshot
    state.seq = m.seq;
    if (m.type === "row") { state.rows.set(keyOf(m.row), m.row); state.slots = m.slots; }
    else if (m.type === "removed") { state.rows.delete(m.worker); state.slots = m.slots; }
    else if (m.type === "timeline") {
      state.timeline = state.timeline.concat(m.entries);
      if (state.timeline.length > historySize) state.timeline = state.timeline.slice(-historySize);
    } else if (m.type === "settings") state.settings = m.settings;
    queueRender();
  }

  // --- actions ---
  function act(action, worker, button) {
    if (button) button.disabled = true;
    var body = worker ? { action: action, worker: worker } : { action: action };
    fetch("/api/actions", {
      method: "POST",
      headers: authHeaders({ "Content-Type": "application/json" }),
      body: JSON.stringify(body),
      cache: "no-store",
      credentials: "omit"
    }).then(function (res) {
      return res.json().then(function (answer) {
        if (!res.ok) say(action + " refused: " + (answer.error || res.status), true);
        else say(action + (worker ? " " + worker : "") + " done");
        if (res.status === 401) showTokenForm(true);
      });
    }).catch(function (err) { say(action + " failed: " + err, true); })
      .then(function () { if (button) button.disabled = false; });
  }

  // --- rendering ---
  function queueRender() {
    if (renderQueued) return;
    renderQueued = true;
    setTimeout(function () { renderQueued = false; render(); }, 0);
  }
  function stateOf(row) {
    if (row.registration === "running") return row.state || "starting";
    return row.registration;
  }
  function button(label, action, worker, title, danger) {
    var b = el("button", danger ? "danger" : "", label);
    b.type = "button";
    b.setAttribute("data-action", action);
    b.setAttribute("data-worker", worker);
    b.title = title;
    return b;
  }
  // Rows are kept and updated in place (keyed by handle), so that a button stays under the pointer while
  // the worker's other cells change.
  var rowElements = new Map();
  function setText(node, text) {
    var value = text === undefined || text === null ? "" : String(text);
    if (node.textContent !== value) node.textContent = value;
  }
  // Rebuilds the children of node with build, only when signature changed.
  function rebuild(node, signature, build) {
    if (node.getAttribute("data-sig") === signature) return;
    node.setAttribute("data-sig", signature);
    node.replaceChildren();
    build(node);
  }
  function rowElement(key, canAct) {
    var tr = rowElements.get(key);
    if (!tr) {
      tr = el("tr");
      tr.setAttribute("data-worker", key);
      ["mono num", "name", "dim nowrap", "", "mono nowrap", "num", "exit", "dim nowrap"].forEach(function (cls) { tr.appendChild(el("td", cls)); });
      rowElements.set(key, tr);
    }
    var hasActions = tr.cells.length === 9;
    if (canAct && !hasActions) {
      var actions = el("td");
      var box = el("div", "actions");
      box.appendChild(button("terminate", "terminate", key, "TerminateBackgroundWorker: end it and unregister it", true));
      box.appendChild(button("signal", "signal-terminate", key, "pg_terminate_backend: end this incarnation; its restart policy applies", false));
      box.appendChild(button("set latch", "set-latch", key, "SetLatch: wake it from its wait", false));
      actions.appendChild(box);
      tr.appendChild(actions);
    } else if (!canAct && hasActions) tr.deleteCell(8);
    return tr;
  }
  function renderWorkers(t) {
    var canAct = state.actions && !!token;
    $("actions-head").hidden = !canAct;
    $("reload").hidden = !canAct;
    $("mode").textContent = state.actions ? (token ? "actions enabled" : "") : "read-only";
    var rows = Array.from(state.rows.values()).sort(function (a, b) { return a.slot - b.slot; });
    var body = $("workers").tBodies[0];
    var keep = new Set();
    rows.forEach(function (row, index) {
      var key = keyOf(row);
      keep.add(key);
      var tr = rowElement(key, canAct);
      if (tr.getAttribute("data-name") !== row.name) tr.setAttribute("data-name", row.name);
      var cells = tr.cells;
      setText(cells[0], row.pid);
      setText(cells[1], row.name);
      cells[1].title = "handle " + key + (row.query ? " | query: " + row.query : "");
      setText(cells[2], row.backendType);
      var st = stateOf(row);
      rebuild(cells[3], st, function (cell) { cell.appendChild(el("span", "badge s-" + slug(st), st)); });
      setText(cells[4], row.waitEvent ? (row.waitEventType ? row.waitEventType + ": " : "") + row.waitEvent : "");
      setText(cells[5], row.restartCount);
      var exit = row.lastExit;
      rebuild(cells[6], exit ? exit.kind + "|" + exit.at + "|" + exit.message : "", function (cell) {
        if (!exit) return;
        cell.appendChild(el("span", "k-" + exit.kind, exit.kind));
        cell.appendChild(document.createTextNode(": " + exit.message));
      });
      var tip = exit ? exit.kind + ": " + exit.message + " (" + clock(exit.at) + ")" +
        (exit.query ? "\nwhile running: " + exit.query : "") : "";
      if (row.givenUpReason) tip = (tip ? tip + "\n" : "") + "given up: " + row.givenUpReason;
      if (cells[6].title !== tip) cells[6].title = tip;
      setText(cells[7], row.nextRestartAt === null ? "" : "in " + duration(row.nextRestartAt - t));
      if (cells.length === 9) {
        // Signals and latches reach a running incarnation only.
        Array.prototype.forEach.call(cells[8].querySelectorAll("button"), function (b) {
          var hide = b.getAttribute("data-action") !== "terminate" && row.registration !== "running";
          if (b.hidden !== hide) b.hidden = hide;
        });
      }
      if (body.children[index] !== tr) body.insertBefore(tr, body.children[index] || null);
    });
    rowElements.forEach(function (tr, key) {
      if (!keep.has(key)) { tr.remove(); rowElements.delete(key); }
    });
    $("no-workers").hidden = rows.length > 0;
    $("worker-count").textContent = "(" + rows.length + ")";
    if (state.slots) {
      setText($("slots-text"), "slots " + state.slots.used + " used, " + state.slots.free + " free of " + state.slots.max);
      var used = $("slots-used");
      used.style.width = (state.slots.max === 0 ? 0 : Math.min(100, 100 * state.slots.used / state.slots.max)) + "%";
      used.className = state.slots.free === 0 ? "full" : "";
    }
  }
  function renderTimeline(t) {
    var lanes = $("lanes");
    var fresh = document.createDocumentFragment();
    var entries = state.timeline;
    var oldest = entries.length > 0 ? entries[0].at : t;
    var span = Math.min(Math.max(t - oldest, 5000), 3600000) * 1.04;
    var start = t - span;
    $("timeline-span").textContent = "(last " + duration(span) + ", " + entries.length + " events)";
    var byWorker = new Map();
    entries.forEach(function (e) {
      if (!byWorker.has(e.worker)) byWorker.set(e.worker, []);
      byWorker.get(e.worker).push(e);
    });
    state.rows.forEach(function (row, key) { if (!byWorker.has(key)) byWorker.set(key, []); });
    function x(at) { return Math.max(0, Math.min(100, 100 * (at - start) / span)); }
    byWorker.forEach(function (list, key) {
      var row = state.rows.get(key);
      var name = row ? row.name : (list.length > 0 ? list[0].name : key);
      var label = el("div", "lane-label", name);
      if (!row) label.className += " dim";
      label.title = key + (row ? "" : " (no longer registered)");
      fresh.appendChild(label);
      var lane = el("div", "lane");
      lane.setAttribute("data-worker", key);
      var runStart = null;
      function run(from, to) {
        var bar = el("div", "run");
        bar.style.left = x(from) + "%";
        bar.style.width = Math.max(0.3, x(to) - x(from)) + "%";
        lane.appendChild(bar);
      }
      list.forEach(function (e) {
        if (e.event === "started" || e.event === "restarted") runStart = e.at;
        if ((e.event === "exited" || e.event === "removed") && runStart !== null) { run(runStart, e.at); runStart = null; }
      });
      if (runStart !== null && row && row.registration === "running") run(runStart, t);
      list.forEach(function (e) {
        var cls = e.event === "exited" ? "m-exited-" + e.outcome : "m-" + slug(e.event);
        var mark = el("span", "mark " + cls);
        mark.style.left = x(e.at) + "%";
        mark.title = clock(e.at) + " " + e.event + (e.outcome ? " (" + e.outcome + ")" : "") + (e.detail ? ": " + e.detail : "");
        lane.appendChild(mark);
      });
      fresh.appendChild(lane);
    });
    lanes.replaceChildren(fresh);
    var list = $("events");
    var items = document.createDocumentFragment();
    entries.slice(-40).reverse().forEach(function (e) {
      var li = el("li");
      li.appendChild(el("span", "when mono", clock(e.at)));
      li.appendChild(el("span", "who", e.name));
      li.appendChild(el("span", "what " + (e.outcome ? "k-" + e.outcome : ""), e.event));
      li.appendChild(el("span", "detail", (e.outcome ? e.outcome + ": " : "") + e.detail));
      items.appendChild(li);
    });
    list.replaceChildren(items);
  }
  function renderSettings() {
    var settings = state.settings;
    var body = document.createElement("tbody");
    (settings || []).forEach(function (s) {
      var tr = el("tr");
      var name = el("td", "mono", s.name);
      name.title = s.short_desc + (s.extra_desc ? "\n" + s.extra_desc : "");
      tr.appendChild(name);
      tr.appendChild(el("td", "mono", s.setting === null ? "" : s.setting));
      tr.appendChild(el("td", "dim", s.unit || ""));
      var source = el("td", "dim", s.source);
      if (s.sourcefile) source.title = s.sourcefile + (s.sourceline ? ":" + s.sourceline : "");
      tr.appendChild(source);
      tr.appendChild(el("td", "dim", s.context));
      tr.appendChild(el("td", s.pending_restart ? "pending" : "dim", s.pending_restart ? "yes" : "no"));
      body.appendChild(tr);
    });
    var table = $("settings");
    table.replaceChild(body, table.tBodies[0]);
    table.hidden = settings === null;
    $("no-settings").hidden = settings !== null;
    $("settings-count").textContent = settings === null ? "" : "(" + settings.length + ")";
  }
  function render() {
    var t = now();
    renderWorkers(t);
    renderTimeline(t);
    renderSettings();
    document.body.setAttribute("data-seq", String(state.seq));
  }

  document.addEventListener("DOMContentLoaded", function () {
    readToken();
    $("workers").addEventListener("click", function (event) {
      var target = event.target;
      if (!(target instanceof HTMLButtonElement)) return;
      var action = target.getAttribute("data-action");
      if (action) act(action, target.getAttribute("data-worker"), target);
    });
    $("reload").addEventListener("click", function (event) { act("reload", null, event.currentTarget); });
    $("token-form").addEventListener("submit", function (event) {
      event.preventDefault();
      var value = $("token-input").value.trim();
      $("token-input").value = "";
      token = value || null;
      try { if (token) sessionStorage.setItem(tokenKey, token); else sessionStorage.removeItem(tokenKey); } catch (e) { /* storage disabled */ }
      showTokenForm(false);
      connect();
    });
    setInterval(function () { if (state.seq >= 0) render(); }, 1000);
    connect();
  });
})();
`
