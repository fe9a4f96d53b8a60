// The live signal panel: your requests, newest first, each as a small timeline of the
// signals it sent, streamed by GET /signals/stream (server-sent events, one JSON object
// per send or per on-commit call). No framework, no build step; text only through
// textContent.
(() => {
  "use strict";

  const panel = document.getElementById("signal-panel");
  if (!panel || !("EventSource" in window)) return;

  const requestList = panel.querySelector(".signal-requests");
  const status = panel.querySelector(".panel-status");
  const empty = panel.querySelector(".panel-empty");
  const clearButton = panel.querySelector(".panel-clear");
  const filters = panel.querySelector(".panel-filters");
  const filterButtons = [...panel.querySelectorAll(".panel-filters [data-kind]")];

  const KINDS = ["request", "model", "auth", "app"];
  const CLEARED = "todo-panel-cleared-through"; // the last event id cleared, per tab
  const HIDDEN_KINDS = "todo-panel-hidden-kinds"; // the filters turned off, per tab
  const MAX_REQUESTS = 50; // requests kept on the page; the oldest go
  const RECONNECT = [5, 15, 30, 60]; // seconds before each new try, once the stream failed

  const storage = {
    get(key) {
      try { return window.sessionStorage.getItem(key); } catch { return null; }
    },
    set(key, value) {
      try { window.sessionStorage.setItem(key, value); } catch { /* private mode */ }
    },
  };

  const requests = new Map(); // request id -> its group (see group())
  const seen = new Set();
  let lastId = null;
  let hidden = readHiddenKinds();

  function readHiddenKinds() {
    try {
      const kinds = JSON.parse(storage.get(HIDDEN_KINDS) || "[]");
      return new Set(Array.isArray(kinds) ? kinds.filter((kind) => KINDS.includes(kind)) : []);
    } catch {
      return new Set();
    }
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // -- formatting -------------------------------------------------------------------------

  function clock(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return "";
    const pad = (n, width = 2) => String(n).padStart(width, "0");
    return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}` +
      `.${pad(date.getMilliseconds(), 3)}`;
  }

  function milliseconds(ms) {
    if (ms === null || ms === undefined) return "";
    if (ms < 0.01) return "<0.01 ms";
    if (ms < 10) return `${ms.toFixed(2)} ms`;
    if (ms < 1000) return `${ms.toFixed(1)} ms`;
    return `${(ms / 1000).toFixed(2)} s`;
  }

  function offset(ms) {
    return ms === null || ms === undefined ? "" : `+${milliseconds(ms)}`;
  }

  // -- one line of a request's timeline --------------------------------------------------

  function receiverItem(name, detail, detailClass, error) {
    const item = element("li", "receiver");
    const label = element("span", "receiver-name", name);
    label.title = name;
    item.append(label, element("span", `receiver-ms ${detailClass}`.trim(), detail));
    if (error) {
      item.classList.add("failed");
      item.append(element("span", "receiver-error", error));
    }
    return item;
  }

  function argumentList(event) {
    const args = element("dl", "signal-args");
    args.hidden = true;
    args.id = `signal-args-${event.id.replace(/[^\w-]/g, "-")}`;
    const names = Object.keys(event.args || {});
    for (const name of names) {
      args.append(element("dt", null, name), element("dd", null, event.args[name]));
    }
    if (names.length === 0) args.append(element("dt", null, "no arguments"), element("dd"));
    return args;
  }

  function sendEntry(event, outcomes) {
    const entry = element("li", `signal-event send kind-${event.kind}`);
    entry.dataset.signal = event.signal;
    entry.dataset.kind = event.kind;

    const line = element("div", "signal-line");
    line.append(element("span", "signal-offset", offset(event.offset_ms)));
    const name = element("button", "signal-name", event.signal);
    name.type = "button";
    name.title = `${event.name} (${event.method}, at ${clock(event.at)}): show its arguments`;
    const args = argumentList(event);
    name.setAttribute("aria-expanded", "false");
    name.setAttribute("aria-controls", args.id);
    name.addEventListener("click", () => {
      args.hidden = !args.hidden;
      name.setAttribute("aria-expanded", String(!args.hidden));
    });
    const sender = element("span", "signal-sender", event.sender);
    sender.title = `sender: ${event.sender}`;
    line.append(name, sender);
    line.append(element("span", "signal-ms", milliseconds(event.ms)));
    entry.append(line, args);

    const receivers = element("ul", "signal-receivers");
    receivers.setAttribute("aria-label", `Receivers of ${event.signal}`);
    for (const call of event.receivers || []) {
      if (call.deferred) {
        // Called after the commit: its own line says when, below.
        const item = receiverItem(call.name, "deferred ↓", "deferred", call.error);
        const outcome = outcomes.get(call.deferred);
        item.title = outcome
          ? `deferred to the commit, then ${outcome.state}${outcome.at ? ` at ${clock(outcome.at)}` : ""}`
          : "deferred to the commit";
        receivers.append(item);
      } else {
        receivers.append(receiverItem(call.name, milliseconds(call.ms), "", call.error));
      }
      if (call.error) entry.classList.add("failed");
    }
    if (receivers.childElementCount) entry.append(receivers);
    else line.classList.add("no-receivers");
    if (event.signal === "got_request_exception") entry.classList.add("failed");
    if (event.error) {
      entry.classList.add("failed");
      entry.append(element("p", "signal-error", `raised ${event.error}`));
    }
    return entry;
  }

  function afterCommitEntry(event) {
    const entry = element("li", `signal-event after-commit kind-${event.kind}`);
    entry.dataset.signal = event.signal;
    entry.dataset.kind = event.kind;
    entry.dataset.receiver = event.receiver;
    entry.dataset.state = event.state;
    entry.title = `${event.receiver}, deferred by ${event.name}` +
      (event.at ? `, ran at ${clock(event.at)}` : "");

    const line = element("div", "signal-line");
    line.append(element("span", "signal-offset", offset(event.offset_ms)));
    line.append(element("span", "signal-name", "after the commit"));
    line.append(element("span", "signal-sender", event.signal));
    line.append(element("span", "signal-ms", milliseconds(event.ms)));
    entry.append(line);

    const receivers = element("ul", "signal-receivers");
    receivers.setAttribute("aria-label", `Ran after the commit, deferred by ${event.signal}`);
    const item = receiverItem(event.receiver, event.state, `state-${event.state}`, event.error);
    receivers.append(item);
    entry.append(receivers);
    if (event.state === "failed") entry.classList.add("failed");
    return entry;
  }

  // A remote receiver's attempt, in a worker (a thread of the app, or another process).
  function workerEntry(event) {
    const entry = element("li", `signal-event worker kind-${event.kind}`);
    entry.dataset.signal = event.signal;
    entry.dataset.kind = event.kind;
    entry.dataset.receiver = event.receiver;
    entry.dataset.state = event.state;
    entry.dataset.attempt = String(event.attempt);
    entry.title = `${event.receiver}: event ${event.event_id} from ${event.stream}, ` +
      `attempt ${event.attempt}, ran at ${clock(event.at)} in process ${event.pid}`;

    const line = element("div", "signal-line");
    line.append(element("span", "signal-offset", offset(event.offset_ms)));
    line.append(element("span", "signal-name", `worker, attempt ${event.attempt}`));
    line.append(element("span", "signal-sender", event.signal));
    line.append(element("span", "signal-ms", milliseconds(event.ms)));
    entry.append(line);

    let state = event.state;
    if (event.state === "failed") {
      state = event.retry_in === null || event.retry_in === undefined
        ? "failed" : `failed, retry within ${milliseconds(event.retry_in * 1000)}`;
      entry.classList.add("failed");
    }
    const receivers = element("ul", "signal-receivers");
    receivers.setAttribute("aria-label", `Ran in a worker, published by ${event.signal}`);
    receivers.append(receiverItem(event.receiver, state, `state-${event.state}`, event.error));
    entry.append(receivers);
    return entry;
  }

  // -- a request's group ----------------------------------------------------------------

  // request_started first, request_finished last, the rest by when they began (a call
  // dropped at a rollback never ran: it goes last of those); then the workers' attempts.
  function rank(event) {
    if (event.type === "send" && event.signal === "request_started") return 0;
    if (event.type === "send" && event.signal === "request_finished") return 2;
    if (event.type === "worker") return 3;
    return 1;
  }

  function byTime(a, b) {
    const order = rank(a) - rank(b);
    if (order) return order;
    const at = (event) => event.offset_ms ?? Number.MAX_VALUE;
    return at(a) - at(b);
  }

  function isPageView(group) {
    return group.label.startsWith("GET ") &&
      group.events.every((event) => event.kind === "request" && event.type === "send");
  }

  function group(event) {
    let found = requests.get(event.request_id);
    if (found) return found;
    const node = element("li", "request");
    node.dataset.requestId = event.request_id;
    const head = element("button", "request-head");
    head.type = "button";
    const list = element("ol", "request-signals");
    list.id = `request-${event.request_id}`;
    list.setAttribute("aria-label", `Signals of ${event.request}`);
    head.setAttribute("aria-controls", list.id);
    node.append(head, list);
    found = { id: event.request_id, label: event.request, at: event.request_at, events: [],
      node, head, list, open: null };
    head.addEventListener("click", () => {
      found.open = !expanded(found);
      render(found);
    });
    requests.set(event.request_id, found);
    insert(found);
    while (requests.size > MAX_REQUESTS) forget(oldest());
    return found;
  }

  // Newest request first, by when each request started.
  function insert(found) {
    let before = null;
    for (const other of requests.values()) {
      if (other !== found && other.at <= found.at && other.node.isConnected &&
          (before === null || other.at > before.at)) before = other;
    }
    requestList.insertBefore(found.node, before ? before.node : null);
  }

  function oldest() {
    let last = null;
    for (const found of requests.values()) if (last === null || found.at < last.at) last = found;
    return last;
  }

  function forget(found) {
    requests.delete(found.id);
    found.node.remove();
  }

  function expanded(found) {
    return found.open ?? !isPageView(found);
  }

  function render(found) {
    found.events.sort(byTime);
    const outcomes = new Map();
    for (const event of found.events) {
      if (event.type === "after_commit") outcomes.set(event.deferred, event);
    }
    const entries = found.events.map((event) => {
      if (event.type === "after_commit") return afterCommitEntry(event);
      if (event.type === "worker") return workerEntry(event);
      return sendEntry(event, outcomes);
    });
    found.list.replaceChildren(...entries);
    renderHead(found);
    applyFilters(found);
  }

  function renderHead(found) {
    const open = expanded(found);
    const finished = found.events.find((e) => e.type === "send" && e.signal === "request_finished");
    const count = found.events.filter((e) => e.type === "send").length;
    const summary = isPageView(found)
      ? "a page view"
      : `${count} signal${count === 1 ? "" : "s"}`;
    const time = element("time", "request-time", clock(found.at));
    time.dateTime = found.at;
    found.head.replaceChildren(
      element("span", "request-toggle", open ? "▾" : "▸"),
      element("span", "request-label", found.label),
      element("span", "request-summary",
        finished ? `${summary} · ${milliseconds(finished.offset_ms + finished.ms)}` : summary),
      time,
    );
    found.head.setAttribute("aria-expanded", String(open));
    found.list.hidden = !open;
    found.node.classList.toggle("page-view", isPageView(found));
  }

  // -- filters --------------------------------------------------------------------------

  function applyFilters(found) {
    let visible = 0;
    for (const entry of found.list.children) {
      entry.hidden = hidden.has(entry.dataset.kind);
      if (!entry.hidden) visible += 1;
    }
    found.node.hidden = visible === 0;
  }

  function setFilters() {
    for (const button of filterButtons) {
      button.setAttribute("aria-pressed", String(!hidden.has(button.dataset.kind)));
    }
    for (const found of requests.values()) applyFilters(found);
  }

  for (const button of filterButtons) {
    button.addEventListener("click", () => {
      const kind = button.dataset.kind;
      if (hidden.has(kind)) hidden.delete(kind);
      else hidden.add(kind);
      storage.set(HIDDEN_KINDS, JSON.stringify([...hidden]));
      setFilters();
    });
  }
  filters.hidden = false;
  setFilters();

  // -- the stream -----------------------------------------------------------------------

  function show(event) {
    if (!event || !event.id || !event.request_id || seen.has(event.id)) return;
    seen.add(event.id);
    lastId = event.id;
    const found = group(event);
    found.events.push(event);
    render(found);
    empty.hidden = true;
  }

  function setStatus(text, state) {
    status.textContent = text;
    status.className = `panel-status ${state}`;
  }

  clearButton.addEventListener("click", () => {
    if (lastId) storage.set(CLEARED, lastId);
    for (const found of [...requests.values()]) forget(found);
    seen.clear();
    empty.hidden = false;
  });

  let failures = 0;

  function connect() {
    const after = lastId || storage.get(CLEARED);
    const url = panel.dataset.stream + (after ? `?after=${encodeURIComponent(after)}` : "");
    const source = new EventSource(url);
    source.addEventListener("open", () => {
      failures = 0;
      setStatus("live", "live");
    });
    source.addEventListener("error", () => {
      if (source.readyState !== EventSource.CLOSED) {
        setStatus("reconnecting…", "");
        return;
      }
      // Refused (too many streams, or this panel has ended): try again later, a few times.
      setStatus("offline", "offline");
      if (failures < RECONNECT.length) {
        window.setTimeout(connect, RECONNECT[failures] * 1000);
        failures += 1;
      }
    });
    source.addEventListener("dropped", () => setStatus("live (some signals skipped)", "live"));
    source.addEventListener("signal", (message) => {
      try {
        show(JSON.parse(message.data));
      } catch (error) {
        console.error("signal panel: cannot show an event", error);
      }
    });
  }

  connect();
})();
