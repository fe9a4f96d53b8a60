// The live signal panel: this browser's signals, streamed by GET /signals/stream
// (server-sent events, one JSON object per send). No framework, no build step.
(() => {
  "use strict";

  const panel = document.getElementById("signal-panel");
  if (!panel || !("EventSource" in window)) return;

  const events = panel.querySelector(".signal-events");
  const status = panel.querySelector(".panel-status");
  const empty = panel.querySelector(".panel-empty");
  const clearButton = panel.querySelector(".panel-clear");
  const CLEARED = "todo-panel-cleared-through"; // the last event id cleared, per tab
  const MAX_EVENTS = 200;
  const seen = new Set();
  let lastId = null;

  const storage = {
    get(key) {
      try { return window.sessionStorage.getItem(key); } catch { return null; }
    },
    set(key, value) {
      try { window.sessionStorage.setItem(key, value); } catch { /* private mode */ }
    },
  };

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // request, model, auth or app: the colour of the card.
  function kindOf(event) {
    if (!event.name.startsWith("tocsin.signals.")) return "app";
    const name = event.signal;
    if (name.startsWith("request_") || name === "got_request_exception") return "request";
    if (name.startsWith("user_")) return "auth";
    return "model";
  }

  function clock(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return "";
    const pad = (n, width = 2) => String(n).padStart(width, "0");
    return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}` +
      `.${pad(date.getMilliseconds(), 3)}`;
  }

  function milliseconds(ms) {
    if (ms < 0.01) return "<0.01 ms";
    if (ms < 10) return `${ms.toFixed(2)} ms`;
    return `${ms.toFixed(1)} ms`;
  }

  function card(event) {
    const article = element("article", `signal-event kind-${kindOf(event)}`);
    article.dataset.signal = event.signal;
    article.dataset.id = event.id;
    article.title = `${event.name} (${event.method}, ${milliseconds(event.ms)})`;

    const head = element("header", "signal-head");
    head.append(element("span", "signal-name", event.signal));
    const time = element("time", "signal-time", clock(event.at));
    time.dateTime = event.at;
    head.append(time);
    article.append(head);

    const meta = element("p", "signal-meta");
    meta.append("sender ", element("span", "signal-sender", event.sender));
    if (event.request) meta.append(" · ", element("span", "signal-request", event.request));
    article.append(meta);

    const args = element("dl", "signal-args");
    const names = Object.keys(event.args || {});
    for (const name of names) {
      args.append(element("dt", null, name), element("dd", null, event.args[name]));
    }
    if (names.length === 0) args.append(element("dt", null, "no arguments"), element("dd"));
    article.append(args);

    const receivers = element("ul", "signal-receivers");
    receivers.setAttribute("aria-label", "Receivers");
    for (const call of event.receivers || []) {
      const item = element("li");
      item.append(element("span", "receiver-name", call.name));
      if (call.deferred) {
        item.append(element("span", "receiver-ms deferred", "after the commit"));
      } else {
        item.append(element("span", "receiver-ms", milliseconds(call.ms)));
      }
      if (call.error) {
        item.classList.add("failed");
        item.append(element("span", "receiver-error", call.error));
        article.classList.add("failed");
      }
      receivers.append(item);
    }
    article.append(receivers);
    if (!event.receivers || event.receivers.length === 0) {
      article.append(element("p", "signal-no-receivers", "No receiver listens."));
    }
    if (event.signal === "got_request_exception") article.classList.add("failed");
    if (event.error) {
      article.classList.add("failed");
      article.append(element("p", "signal-error", `raised ${event.error}`));
    }
    return article;
  }

  function show(event) {
    if (!event || !event.id || seen.has(event.id)) return;
    seen.add(event.id);
    lastId = event.id;
    events.prepend(card(event));
    while (events.childElementCount > MAX_EVENTS) events.lastElementChild.remove();
    empty.hidden = true;
  }

  function setStatus(text, state) {
    status.textContent = text;
    status.className = `panel-status ${state}`;
  }

  clearButton.addEventListener("click", () => {
    if (lastId) storage.set(CLEARED, lastId);
    events.replaceChildren();
    empty.hidden = false;
  });

  const after = storage.get(CLEARED);
  const url = panel.dataset.stream + (after ? `?after=${encodeURIComponent(after)}` : "");
  const source = new EventSource(url);
  source.addEventListener("open", () => setStatus("live", "live"));
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) setStatus("offline", "offline");
    else setStatus("reconnecting…", "");
  });
  source.addEventListener("signal", (message) => {
    try {
      show(JSON.parse(message.data));
    } catch (error) {
      console.error("signal panel: cannot show an event", error);
    }
  });
})();
