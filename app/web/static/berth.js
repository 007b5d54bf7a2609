// Berth's only script: live page parts, a live job log, copy buttons. No framework; every
// page works without it, only less live.
(function () {
  // Parts marked data-live are fetched again as HTML from data-live-url and swapped in
  // when they change: often while something is under way, rarely when all is settled.
  const live = document.querySelector("[data-live-url]");
  const announce = document.getElementById("live-announce");
  const seen = {};
  let lastStatus = null;

  const focusKey = (el) => {
    for (const name of ["data-action", "name", "href"]) {
      if (el.hasAttribute(name)) return `[${name}="${CSS.escape(el.getAttribute(name))}"]`;
    }
    return null;
  };

  const swap = (el, html) => {
    const focused = document.activeElement;
    const inside = focused && focused !== document.body && el.contains(focused);
    if (inside && ["INPUT", "SELECT", "TEXTAREA"].includes(focused.tagName)) {
      return false; // someone is typing or choosing here: not now
    }
    const key = inside ? focusKey(focused) : null;
    el.innerHTML = html;
    el.dispatchEvent(new CustomEvent("berth:swapped", {bubbles: true}));
    if (key) {
      const again = el.querySelector(key);
      if (again) again.focus();
    }
    return true;
  };

  const poll = () => {
    fetch(live.dataset.liveUrl, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
      .then((data) => {
        Object.entries(data.parts || {}).forEach(([name, html]) => {
          const el = live.querySelector(`[data-live="${name}"]`);
          if (el && seen[name] !== html && swap(el, html)) seen[name] = html;
        });
        if (announce && data.status && data.status !== lastStatus) {
          if (lastStatus !== null) {
            announce.textContent = `Status: ${data.status}`;
            // "Being created", "Stop requested": said; the page now says how it went.
            document.querySelectorAll(".alert-success[role=alert]").forEach((el) => el.remove());
          }
          lastStatus = data.status;
        }
        if (data.job !== undefined) followLog(data.job);
        schedule(data.settled);
      })
      .catch(() => schedule(true));
  };
  const schedule = (settled) => {
    setTimeout(poll, document.hidden ? 20000 : settled ? 8000 : 1500);
  };
  if (live) schedule(live.dataset.settled === "yes");

  // The latest job's log, line by line as the worker writes it; a new job starts afresh.
  const log = document.querySelector("[data-log-url]");
  let source = null;
  function followLog(job) {
    if (!log || !window.EventSource) return;
    const wanted = job === null || job === undefined ? "" : String(job);
    if (source && log.dataset.job === wanted) return;
    if (source) source.close();
    if (log.dataset.job !== wanted) log.textContent = "";
    log.dataset.job = wanted;
    source = new EventSource(log.dataset.logUrl);
    let first = true;
    source.onmessage = (event) => {
      if (first) { log.textContent = ""; first = false; }
      log.textContent += event.data + "\n";
      log.scrollTop = log.scrollHeight;
    };
    source.addEventListener("end", () => source.close());
  }
  if (log) followLog(log.dataset.job);

  // Filters of a list, applied as you type (the form still works without this).
  document.querySelectorAll("[data-filter-for]").forEach((form) => {
    const rows = () => document.querySelectorAll(form.dataset.filterFor);
    const apply = () => {
      const text = (form.querySelector("[name=q]")?.value || "").trim().toLowerCase();
      const status = form.querySelector("[name=status]")?.value || "";
      let shown = 0;
      rows().forEach((row) => {
        const match = (!text || row.dataset.search.includes(text))
          && (!status || row.dataset.state === status);
        row.hidden = !match;
        if (match) shown += 1;
      });
      const count = document.querySelector(form.dataset.countIn);
      if (count) count.textContent = `${shown} shown`;
    };
    form.addEventListener("input", apply);
    document.addEventListener("berth:swapped", apply);
    form.addEventListener("submit", (event) => { event.preventDefault(); apply(); });
    apply();
  });

  // On a phone, tables lay out as one card per row; each cell is labelled with its
  // column's header (berth.css shows the label only on narrow screens).
  const labelCells = () => {
    document.querySelectorAll("table.table").forEach((table) => {
      const heads = Array.from(table.querySelectorAll("thead th")).map((th) => th.textContent.trim());
      if (!heads.length) return;
      table.classList.add("labelled");
      table.querySelectorAll("tbody tr").forEach((row) => {
        Array.from(row.children).forEach((cell, i) => {
          // A cell across the row ("No ports open.") is no column's value.
          const label = cell.colSpan > 1 ? "" : heads[i] || "";
          if (!cell.hasAttribute("data-label")) cell.setAttribute("data-label", label);
        });
      });
    });
  };
  labelCells();
  document.addEventListener("berth:swapped", labelCells);

  document.querySelectorAll("[data-copy]").forEach((button) => {
    const label = button.textContent;
    button.addEventListener("click", () => {
      const target = document.querySelector(button.dataset.copy);
      const text = target.textContent;
      const done = () => { button.textContent = "Copied"; setTimeout(() => { button.textContent = label; }, 1500); };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done).catch(() => {});
      } else {
        // Plain-HTTP pages have no clipboard API: select the text so Ctrl-C copies it.
        const range = document.createRange();
        range.selectNodeContents(target);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        button.textContent = "Selected: press Ctrl-C";
      }
    });
  });
})();
