// The dashboard's own script (no inline script anywhere: the CSP allows only 'self').
// It adds the API key header to every htmx request, asks for the key on a 401, loads
// previews with the key, draws the charts from data-chart attributes and reports the
// result of each button. It never builds HTML from strings: text goes in textContent.
(function () {
  "use strict";

  const KEY_STORAGE = "mediaPipeline.apiKey";
  let memoryKey = "";
  const $ = (id) => document.getElementById(id);

  function storedKey() {
    try {
      return window.sessionStorage.getItem(KEY_STORAGE) || memoryKey;
    } catch (e) {
      return memoryKey; // storage disabled: the key lasts until the page reloads
    }
  }

  function storeKey(key) {
    memoryKey = key;
    try {
      window.sessionStorage.setItem(KEY_STORAGE, key);
    } catch (e) {
      /* kept in memory only */
    }
  }

  function authHeaders() {
    const key = storedKey();
    return key ? { "X-API-Key": key } : {};
  }

  function announce(text) {
    const region = $("announcer");
    region.textContent = "";
    window.setTimeout(() => { region.textContent = text; }, 30);
  }

  function flash(text, isError) {
    const box = $("flash");
    box.textContent = text;
    box.classList.remove("hidden");
    box.classList.toggle("text-red-700", !!isError);
    box.classList.toggle("text-emerald-800", !isError);
    announce(text);
  }

  // --- the API key ---------------------------------------------------------------

  let asking = false;

  function askForKey(message) {
    const panel = $("auth");
    $("auth-error").textContent = message || "";
    if (!asking) {
      asking = true;
      panel.hidden = false;
      $("key-input").focus();
      announce(message || "An API key is needed to show the dashboard.");
    }
  }

  function keySubmitted(event) {
    event.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) return;
    storeKey(key);
    $("key-input").value = "";
    $("auth-error").textContent = "Checking the key…";
    asking = false;
    $("auth").hidden = true;
    htmx.trigger(document.body, "refresh");
    loadThumbnails(document);
  }

  function errorMessage(xhr) {
    try {
      const body = JSON.parse(xhr.responseText);
      if (body && body.message) return body.message;
    } catch (e) {
      /* not JSON */
    }
    return xhr.status ? `HTTP ${xhr.status}` : "the daemon did not answer";
  }

  // --- previews (an <img src> cannot carry the key header) -------------------------

  const objectUrls = new Map();

  function loadThumbnails(root) {
    root.querySelectorAll("img[data-thumb]").forEach((img) => {
      const url = img.dataset.thumb;
      if (img.dataset.loaded === url) return;
      img.dataset.loaded = url;
      window.fetch(url, { headers: authHeaders(), credentials: "omit" })
        .then((r) => (r.ok ? r.blob() : Promise.reject(r.status)))
        .then((blob) => {
          const old = objectUrls.get(img);
          if (old) URL.revokeObjectURL(old);
          const src = URL.createObjectURL(blob);
          objectUrls.set(img, src);
          img.src = src;
        })
        .catch(() => {
          img.dataset.loaded = "";
          img.classList.add("hidden");
        });
    });
  }

  // --- charts ---------------------------------------------------------------------

  // Storage doughnut: inbox, batches, Syncthing, library, duplicates (server order).
  const COLOURS = ["#0284c7", "#f59e0b", "#7c3aed", "#059669", "#a3a3a3", "#dc2626"];
  const OUTCOME_COLOURS = {
    library: "#059669",
    "on its way": "#0284c7",
    duplicate: "#a78bfa",
    "needs attention": "#dc2626",
    skipped: "#a3a3a3",
  };
  const charts = new Map();

  function drawCharts(root) {
    if (typeof window.Chart === "undefined") return;
    root.querySelectorAll("canvas[data-chart]").forEach((canvas) => {
      const spec = JSON.parse(canvas.dataset.chart);
      const old = charts.get(canvas.id);
      if (old) old.destroy();
      const datasets = spec.datasets.map((d, i) => {
        const colour = OUTCOME_COLOURS[d.label] || COLOURS[i % COLOURS.length];
        const set = Object.assign({}, d, {
          backgroundColor: spec.type === "doughnut" ? COLOURS : colour,
          borderColor: spec.type === "doughnut" ? "#fff" : colour,
        });
        if (spec.type === "line") set.fill = false;
        return set;
      });
      const options = {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        plugins: { legend: { position: "bottom" } },
      };
      if (spec.type !== "doughnut") {
        options.scales = {
          x: { stacked: !!spec.stacked, ticks: { maxRotation: 0, autoSkipPadding: 12 } },
          y: { stacked: !!spec.stacked, beginAtZero: true, ticks: { precision: 0 } },
        };
      }
      charts.set(canvas.id, new window.Chart(canvas, {
        type: spec.type,
        data: { labels: spec.labels, datasets: datasets },
        options: options,
      }));
    });
  }

  // --- buttons --------------------------------------------------------------------

  function plural(n, word) {
    return `${n} ${word}${n === 1 ? "" : "s"}`;
  }

  // What a "Run now" button reports, from the JSON the API answered.
  function actionSummary(id, data) {
    if (data.job) return `${({ dedup: "Inbox scan", sort: "Sort", sync: "Syncthing hand-over" })[id] || id} job #${data.job.id} ${data.job.status.toLowerCase()}.`;
    if (id === "batch") {
      if (!data.batch) return "Nothing is waiting for a batch.";
      return `Created ${data.batch.name}: ${plural(data.batch.file_count, "file")}.`;
    }
    if (id === "sync") return `Handed ${plural((data.batches || []).length, "batch")} to Syncthing.`;
    if (id === "cleanup") {
      const n = (data.actions || []).length;
      return `Cleanup dry run: ${plural(n, "action")} would be taken.`;
    }
    return "Done.";
  }

  // 4xx/5xx answers are not swapped and not logged as errors by htmx (see the
  // htmx-config meta tag): they are expected (a 409, a missing key) and shown here.
  function afterRequest(event) {
    const elt = event.detail.elt;
    const xhr = event.detail.xhr;
    if (!elt || !xhr) return;
    const status = xhr.status;
    if (status === 401) {
      const hadKey = !!storedKey();
      askForKey(hadKey ? `The API key was not accepted: ${errorMessage(xhr)}` : "");
      return;
    }
    const ok = status >= 200 && status < 300;
    const isButton = elt.tagName === "BUTTON" && elt.hasAttribute("hx-post");
    if (!isButton) {
      if (!ok && status) flash(`Could not load part of the page: ${errorMessage(xhr)}`, true);
      return;
    }
    const label = elt.dataset.label || elt.textContent.trim();
    if (!ok) {
      const text = `${label} failed: ${errorMessage(xhr)}`;
      if (elt.id.startsWith("act-")) {
        $("action-message").textContent = text;
        $("action-message").classList.add("text-red-700");
        announce(text);
      } else {
        flash(text, true);
      }
      if (elt.dataset.refresh) htmx.trigger(document.body, "refresh");
      return;
    }
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (e) { /* keep {} */ }
    if (elt.id.startsWith("act-")) {
      const text = actionSummary(elt.id.slice(4), body.data || {});
      $("action-message").textContent = text;
      $("action-message").classList.remove("text-red-700");
      announce(text);
    } else {
      let text = elt.dataset.done || "Done.";
      if (body.data && typeof body.data.retried === "number") {
        text = `${plural(body.data.retried, "file")} sent back to the stage that failed.`;
      }
      flash(text, false);
    }
    if (elt.dataset.refresh) htmx.trigger(document.body, "refresh");
  }

  function configRequest(event) {
    Object.assign(event.detail.headers, authHeaders());
  }

  function afterSwap(event) {
    const target = event.detail.target;
    if (target.id === "auth" || !$("auth").hidden) return;
    loadThumbnails(target);
    drawCharts(target);
    document.body.dataset.refreshed = String(Date.now());
  }

  // Deferred scripts run before DOMContentLoaded, when htmx sends the first requests:
  // the listeners must be in place by then, so the very first request carries the key.
  document.addEventListener("htmx:configRequest", configRequest);
  document.addEventListener("htmx:afterRequest", afterRequest);
  document.addEventListener("htmx:afterSwap", afterSwap);
  document.addEventListener("htmx:sendError", () =>
    flash("The daemon did not answer; retrying.", true));
  document.addEventListener("DOMContentLoaded", () => {
    $("key-form").addEventListener("submit", keySubmitted);
  });
})();
