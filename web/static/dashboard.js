// Media Pipeline dashboard: polls the JSON API and renders it with DOM nodes only.
// Data from the daemon (file names, error messages) is always inserted as text, never
// parsed as HTML, so a hostile file name cannot inject markup.
(function () {
  "use strict";

  const KEY_STORAGE = "mediaPipeline.apiKey";
  const REFRESH_MS = 5000;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const GOOD_STATES = ["ok", "inotify", "polling"];
  const NEUTRAL_STATES = ["disabled"];
  const FOLDERS = [
    ["inbox", "Inbox"],
    ["duplicates_dir", "Duplicates"],
    ["batch_dir", "Batches"],
    ["sync_dir", "Syncthing folder"],
    ["sorted_dir", "Library (sorted)"],
  ];

  const ACTIONS = {
    dedup: {
      label: "Scan inbox",
      path: "/api/dedup/start",
      body: {},
      describe: (d) => jobSummary("Inbox scan", d.job),
    },
    batch: {
      label: "Create batch",
      path: "/api/batch/create",
      body: {},
      describe: (d) =>
        d.batch
          ? `Created ${d.batch.name}: ${plural(d.batch.file_count, "file")}, ` +
            `${humanBytes(d.batch.size_bytes)}.`
          : "Nothing is waiting to be batched.",
    },
    sync: {
      label: "Start sync",
      path: "/api/sync/start",
      body: {},
      describe: (d) =>
        d.batches.length
          ? `Handed ${plural(d.batches.length, "batch", "batches")} to Syncthing: ` +
            d.batches.map((b) => b.name).join(", ") + "."
          : "No batch was waiting for Syncthing.",
    },
    sort: {
      label: "Sort now",
      path: "/api/sort/start",
      body: {},
      describe: (d) => jobSummary("Sort", d.job),
    },
    cleanup: {
      label: "Cleanup dry run",
      path: "/api/cleanup/run",
      body: { dry_run: true },
      describe: (d) =>
        `Cleanup dry run: ${plural(d.actions.length, "action")} would be taken.`,
      details: (d) => d.actions.map((a) => `${a.action} ${a.path} — ${a.reason}`),
    },
  };

  const state = {
    timer: null,
    running: false,
    again: false,
    authNeeded: false,
    online: true,
    jobs: {},
  };

  // ---- small helpers ---------------------------------------------------------------

  function $(id) {
    return document.getElementById(id);
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "class") node.className = value;
      else node.setAttribute(name, String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    for (const child of children) {
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function setText(id, value) {
    $(id).textContent = String(value);
  }

  function plural(n, one, many) {
    return `${n} ${n === 1 ? one : many || one + "s"}`;
  }

  function humanBytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let value = Number(n) || 0;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    const digits = unit === 0 || value >= 100 ? 0 : value >= 10 ? 1 : 2;
    return `${value.toFixed(digits)} ${units[unit]}`;
  }

  function humanDuration(seconds) {
    const s = Math.floor(Number(seconds) || 0);
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (d) return `${d} d ${h} h`;
    if (h) return `${h} h ${m} min`;
    if (m) return `${m} min`;
    return `${s} s`;
  }

  function localTime(iso) {
    if (!iso) return "";
    const when = new Date(iso);
    return Number.isNaN(when.getTime()) ? String(iso) : when.toLocaleString();
  }

  function hourLabel(iso) {
    const when = new Date(iso);
    if (Number.isNaN(when.getTime())) return String(iso);
    return when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function jobSummary(name, job) {
    if (!job) return `${name}: no job.`;
    const parts = [`${name} job #${job.id}: ${job.status}`];
    if (job.total) parts.push(`${job.done} of ${job.total}`);
    if (job.errors) parts.push(plural(job.errors, "error"));
    if (job.message) parts.push(job.message);
    return parts.join(" · ");
  }

  function announce(text) {
    const region = $("announcer");
    // Clearing first makes screen readers repeat an identical message.
    region.textContent = "";
    window.setTimeout(() => {
      region.textContent = text;
    }, 50);
  }

  // ---- the API ---------------------------------------------------------------------

  class ApiError extends Error {
    constructor(httpStatus, code, message) {
      super(message);
      this.httpStatus = httpStatus;
      this.code = code;
    }
  }

  // Fallback when session storage is unavailable (the key then lasts until reload).
  let memoryKey = "";

  function storedKey() {
    try {
      return window.sessionStorage.getItem(KEY_STORAGE) || "";
    } catch (err) {
      return "";
    }
  }

  function storeKey(key) {
    try {
      window.sessionStorage.setItem(KEY_STORAGE, key);
    } catch (err) {
      // Storage may be disabled; the key then lasts until the page reloads.
    }
    memoryKey = key;
  }

  async function api(method, path, body, acceptStatuses) {
    const headers = { Accept: "application/json" };
    const key = storedKey() || memoryKey;
    if (key) headers["X-API-Key"] = key;
    const init = { method, headers, cache: "no-store", credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, "NETWORK", "cannot reach the daemon");
    }
    let payload = null;
    try {
      payload = await response.json();
    } catch (err) {
      payload = null;
    }
    const accepted = response.ok || (acceptStatuses || []).includes(response.status);
    if (accepted && payload && payload.status === "ok") return payload.data;
    const code = (payload && payload.code) || `HTTP_${response.status}`;
    const message = (payload && payload.message) || `HTTP ${response.status}`;
    throw new ApiError(response.status, code, message);
  }

  // ---- authentication --------------------------------------------------------------

  function showKeyPrompt(error) {
    const section = $("auth");
    const first = section.hidden;
    section.hidden = false;
    const hadKey = Boolean(storedKey() || memoryKey);
    const text = hadKey ? `The API key was not accepted: ${error.message}` : "";
    const changed = $("auth-error").textContent !== text;
    if (changed) $("auth-error").textContent = text;
    if (first) {
      $("key-input").focus();
      announce(text || "An API key is needed to show the dashboard.");
    } else if (changed && text) {
      announce(text);
    }
    state.authNeeded = true;
  }

  function hideKeyPrompt() {
    if (!state.authNeeded) return;
    state.authNeeded = false;
    $("auth").hidden = true;
    $("auth-error").textContent = "";
    announce("API key accepted.");
  }

  function onKeySubmit(event) {
    event.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) return;
    storeKey(key);
    $("key-input").value = "";
    $("auth-error").textContent = "Checking the key…";
    refreshNow();
  }

  // ---- rendering -------------------------------------------------------------------

  function renderCounts(listId, byStatus) {
    const list = $(listId);
    const items = [];
    for (const [status, count] of Object.entries(byStatus || {})) {
      const cls = count ? "" : "zero";
      items.push(el("dt", { class: cls }, status), el("dd", { class: cls, "data-status": status }, String(count)));
    }
    list.replaceChildren(...items);
  }

  function renderStorage(storage) {
    const rows = FOLDERS.map(([key, label]) =>
      el(
        "tr",
        { "data-folder": key },
        el("th", { scope: "row" }, label),
        el("td", { title: `${storage[key] || 0} bytes` }, humanBytes(storage[key])),
      ),
    );
    $("storage-body").replaceChildren(...rows);
  }

  function renderHourly(points) {
    const chart = $("hourly-chart");
    const width = 720;
    const top = 8;
    const base = 124;
    const slot = width / Math.max(points.length, 1);
    const peak = Math.max(1, ...points.map((p) => p.count));
    const nodes = [svg("line", { x1: 0, y1: base, x2: width, y2: base, class: "axis" })];
    points.forEach((point, i) => {
      const label = hourLabel(point.hour);
      const height = point.count ? Math.max(2, ((base - top) * point.count) / peak) : 0;
      nodes.push(
        svg(
          "rect",
          {
            x: (i * slot + slot * 0.15).toFixed(1),
            y: (base - height).toFixed(1),
            width: (slot * 0.7).toFixed(1),
            height: height.toFixed(1),
            class: "bar",
            "data-count": point.count,
          },
          svg("title", {}, `${label}: ${plural(point.count, "file")}`),
        ),
      );
      if (i % 4 === 2) {
        nodes.push(
          svg("text", { x: (i * slot + slot / 2).toFixed(1), y: 142, class: "tick" }, label),
        );
      }
    });
    chart.replaceChildren(...nodes);
    const total = points.reduce((sum, p) => sum + p.count, 0);
    let summary = `${plural(total, "file")} arrived in the last ${points.length} hours.`;
    if (total) {
      const busiest = points.reduce((a, b) => (b.count > a.count ? b : a));
      summary += ` Busiest hour: ${hourLabel(busiest.hour)} with ${busiest.count}.`;
    }
    setText("hourly-summary", summary);
  }

  function renderErrors(errors) {
    const rows = errors.map((e) =>
      el(
        "tr",
        { "data-file-id": e.file_id },
        el("td", { class: "when" }, localTime(e.at)),
        el("td", { class: "path" }, el("code", {}, String(e.path ?? ""))),
        el("td", { class: "message" }, String(e.error ?? "")),
      ),
    );
    $("errors-body").replaceChildren(...rows);
    $("errors-table").hidden = rows.length === 0;
    $("errors-empty").hidden = rows.length !== 0;
  }

  function renderDashboard(d) {
    setText("files-total", d.files.total);
    renderCounts("files-by-status", d.files.by_status);
    setText("count-unique", d.unique);
    setText("count-duplicates", d.duplicates);
    setText("count-near", d.near_duplicates);
    setText("batches-total", d.batches.total);
    renderCounts("batches-by-status", d.batches.by_status);
    renderStorage(d.storage);
    renderHourly(d.files_per_hour);
    renderErrors(d.recent_errors);
  }

  function renderSync(data) {
    const items = data.batches.map((b) => {
      const pct = Math.max(0, Math.min(100, Number(b.progress) || 0));
      const left = `${humanBytes(b.bytes_needed)} of ${humanBytes(b.bytes_total)} left`;
      return el(
        "li",
        { "data-batch": b.name, class: `batch status-${String(b.status).toLowerCase()}` },
        el("span", { class: "name" }, b.name),
        " ",
        el("span", { class: "badge" }, b.status),
        el("progress", { max: 100, value: pct, "aria-label": `${b.name} sync progress` }),
        el("span", { class: "muted" }, `${pct.toFixed(0)} % · ${left}`),
        b.last_error ? el("p", { class: "error" }, `Last error: ${b.last_error}`) : null,
      );
    });
    $("sync-list").replaceChildren(...items);
    $("sync-empty").hidden = items.length !== 0;
  }

  function renderJob(kind, name, data, countsText) {
    const job = data.job;
    setText(`job-${kind}-line`, job ? jobSummary(name, job) : "No job has run yet.");
    $(`job-${kind}-progress`).value = job ? Number(job.progress) || 0 : 0;
    setText(`job-${kind}-counts`, countsText(data.counts || {}));
    const previous = state.jobs[kind];
    const finished = job && ["DONE", "FAILED"].includes(job.status);
    if (previous && job && previous.id === job.id && previous.status !== job.status && finished) {
      announce(`${name} job #${job.id} finished: ${job.status}.`);
    }
    state.jobs[kind] = job ? { id: job.id, status: job.status } : null;
  }

  function renderHealth(h) {
    setText("version", h.version);
    setText("health-text", `up ${humanDuration(h.uptime_seconds)}`);
    const items = Object.entries(h.components || {}).map(([name, value]) => {
      const cls = GOOD_STATES.includes(value) ? "ok" : NEUTRAL_STATES.includes(value) ? "off" : "bad";
      return el("li", { class: cls, "data-component": name }, `${name}: ${value}`);
    });
    $("components").replaceChildren(...items);
  }

  // ---- refresh loop ----------------------------------------------------------------

  const SOURCES = [
    ["/health", (h) => renderHealth(h), [503]],
    ["/api/dashboard", renderDashboard],
    ["/api/sync/status", renderSync],
    [
      "/api/dedup/status",
      (d) =>
        renderJob("dedup", "Inbox scan", d, (c) =>
          `seen ${c.seen ?? 0} · unique ${c.unique ?? 0} · duplicates ${c.duplicates ?? 0}` +
          ` · near ${c.near_duplicates ?? 0} · errors ${c.errors ?? 0}`,
        ),
    ],
    [
      "/api/sort/status",
      (d) =>
        renderJob("sort", "Sort", d, (c) =>
          `sorted ${c.sorted ?? 0} · pending ${c.pending ?? 0} · errors ${c.errors ?? 0}`,
        ),
    ],
  ];

  async function refresh() {
    const results = await Promise.allSettled(
      SOURCES.map(([path, , accept]) => api("GET", path, undefined, accept)),
    );
    const failures = [];
    let unauthorized = null;
    results.forEach((result, i) => {
      const [path, render] = SOURCES[i];
      if (result.status === "fulfilled") {
        try {
          render(result.value);
        } catch (err) {
          failures.push(`${path}: ${err.message}`);
        }
      } else if (result.reason.httpStatus === 401) {
        unauthorized = result.reason;
      } else {
        failures.push(`${path}: ${result.reason.message}`);
      }
    });
    if (unauthorized) showKeyPrompt(unauthorized);
    else hideKeyPrompt();
    const now = new Date().toLocaleTimeString();
    if (failures.length) {
      setText("updated", `Update at ${now} incomplete: ${failures.join("; ")}.`);
      if (state.online) announce("The dashboard cannot reach the daemon.");
      state.online = false;
    } else {
      setText("updated", unauthorized ? `Waiting for an API key (${now}).` : `Updated ${now}.`);
      if (!state.online) announce("Connection to the daemon restored.");
      state.online = true;
    }
  }

  async function runRefresh() {
    if (state.running) {
      state.again = true;
      return;
    }
    state.running = true;
    window.clearTimeout(state.timer);
    try {
      do {
        state.again = false;
        await refresh();
      } while (state.again);
    } finally {
      state.running = false;
      document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
      state.timer = window.setTimeout(runRefresh, REFRESH_MS);
    }
  }

  function refreshNow() {
    runRefresh();
  }

  // ---- actions ---------------------------------------------------------------------

  async function runAction(button) {
    const action = ACTIONS[button.dataset.action];
    const message = $("action-message");
    const details = $("action-details");
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    message.className = "";
    message.textContent = `Working: ${action.label}…`;
    details.replaceChildren();
    try {
      const data = await api("POST", action.path, action.body);
      const text = action.describe(data);
      message.textContent = text;
      const lines = action.details ? action.details(data) : [];
      details.replaceChildren(...lines.map((line) => el("li", {}, line)));
      announce(text);
    } catch (err) {
      const text = `${action.label} failed: ${err.message}`;
      message.className = "error";
      message.textContent = text;
      announce(text);
      if (err.httpStatus === 401) showKeyPrompt(err);
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
      refreshNow();
    }
  }

  function start() {
    for (const button of document.querySelectorAll("button[data-action]")) {
      button.addEventListener("click", () => runAction(button));
    }
    $("key-form").addEventListener("submit", onKeySubmit);
    refreshNow();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
