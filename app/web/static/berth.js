// Berth's only script: live workspace status and a live job log. No framework.
(function () {
  const statusHolder = document.querySelector("[data-status-url]");
  if (statusHolder) {
    const refresh = () => fetch(statusHolder.dataset.statusUrl, {credentials: "same-origin"})
      .then((r) => r.ok ? r.json() : {})
      .then((all) => {
        document.querySelectorAll("[data-status-for]").forEach((el) => {
          const info = all[el.dataset.statusFor];
          if (info && el.textContent !== info.status) {
            el.textContent = info.status;
            el.className = "status status-" + info.status;
          }
        });
      })
      .catch(() => {});
    setInterval(refresh, 2000);
  }
  const log = document.querySelector("[data-log-url]");
  if (log && window.EventSource) {
    const source = new EventSource(log.dataset.logUrl);
    let first = true;
    source.onmessage = (event) => {
      if (first) { log.textContent = ""; first = false; }
      log.textContent += event.data + "\n";
      log.scrollTop = log.scrollHeight;
    };
    source.addEventListener("end", () => source.close());
  }
})();
