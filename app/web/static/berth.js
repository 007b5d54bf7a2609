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
  document.querySelectorAll("[data-copy]").forEach((button) => {
    button.addEventListener("click", () => {
      const text = document.querySelector(button.dataset.copy).textContent;
      const done = () => { button.textContent = "Copied"; setTimeout(() => { button.textContent = "Copy"; }, 1500); };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done).catch(() => {});
      } else {
        // Plain-HTTP pages have no clipboard API: select the text so Ctrl-C copies it.
        const range = document.createRange();
        range.selectNodeContents(document.querySelector(button.dataset.copy));
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        button.textContent = "Selected: press Ctrl-C";
      }
    });
  });
})();
