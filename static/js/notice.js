// A notice the case page's script leaves for the next page when it has to leave the
// page (a stale tab refused on the last case, say): shown once at the top of the page.
(function () {
  "use strict";
  let notice = null;
  try {
    notice = JSON.parse(sessionStorage.getItem("readerstudy-notice") || "null");
    sessionStorage.removeItem("readerstudy-notice");
  } catch (error) {
    return;
  }
  if (!notice || !notice.text) return;
  const show = () => {
    const status = document.getElementById("case-status"); // the case page's own place
    if (status) {
      const p = document.createElement("p");
      p.className = `notice ${notice.level || ""}`;
      p.setAttribute("role", "alert");
      p.dataset.testid = "carried-notice";
      p.textContent = notice.text;
      status.prepend(p);
      return;
    }
    const main = document.querySelector("main");
    if (!main) return;
    let list = main.querySelector("ul.messages");
    if (!list) {
      list = document.createElement("ul");
      list.className = "messages";
      main.prepend(list);
    }
    const item = document.createElement("li");
    item.className = `message ${notice.level || ""}`;
    item.setAttribute("role", "alert");
    item.dataset.testid = "carried-notice";
    item.textContent = notice.text;
    list.prepend(item);
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", show);
  else show();
})();
