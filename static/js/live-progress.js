// Progress that refreshes by itself on the staff console's pages: every element
// <span class="live-run" data-run="ID" data-active="1" data-url="..."> (an inference
// run, or an analysis report) is brought up to date every few seconds from the small
// JSON at data-url (?ids=...), without reloading the page, until none on the page is
// queued or running. A report's JSON also names its last step and, once done, its page.
(function () {
  "use strict";
  const PERIOD_MS = 3000;
  function activeRuns() {
    return Array.from(document.querySelectorAll(".live-run[data-active='1']"));
  }
  // A page may show runs and reports side by side (the study's dashboard): one request
  // per JSON address, each for the ids that it answers.
  async function refreshFrom(url, elements) {
    const byId = new Map(elements.map((el) => [el.dataset.run, el]));
    try {
      const response = await fetch(`${url}?ids=${Array.from(byId.keys()).join(",")}`, {
        headers: { Accept: "application/json" }, credentials: "same-origin",
      });
      if (response.ok) {
        const data = await response.json();
        for (const run of data.runs) {
          const el = byId.get(String(run.id));
          if (!el) continue;
          el.querySelector(".run-status").textContent = run.status;
          const bar = el.querySelector("progress");
          bar.max = Math.max(run.total, 1);
          bar.value = run.processed;
          const count = el.querySelector(".run-count");
          if (run.step !== undefined) { // a report: its last step, then its page
            count.textContent = run.total ? `${run.step} (${run.processed} / ${run.total})` : run.step;
            if (run.html) {
              const link = document.createElement("a");
              link.href = run.html;
              link.textContent = "open report.html";
              count.replaceChildren(link);
            } else if (run.error) {
              count.textContent = run.error;
            }
          } else {
            count.textContent =
              `${run.processed} / ${run.total} cases${run.failed ? `, ${run.failed} failed` : ""}`;
          }
          el.dataset.active = run.active ? "1" : "";
        }
      }
    } catch (error) {
      // the next round tries again
    }
  }
  async function refresh() {
    const groups = new Map();
    for (const el of activeRuns()) {
      if (!groups.has(el.dataset.url)) groups.set(el.dataset.url, []);
      groups.get(el.dataset.url).push(el);
    }
    await Promise.all(Array.from(groups, ([url, elements]) => refreshFrom(url, elements)));
    if (activeRuns().length) setTimeout(refresh, PERIOD_MS);
  }
  const start = () => { if (activeRuns().length) setTimeout(refresh, PERIOD_MS); };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
