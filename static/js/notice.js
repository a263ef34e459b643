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
  const element = (tag, className) => {
    const el = document.createElement(tag);
    el.className = `${className} ${notice.level || ""}`;
    el.setAttribute("role", "alert");
    el.dataset.testid = "carried-notice";
    el.textContent = notice.text;
    return el;
  };
  const show = () => {
    const status = document.getElementById("case-status"); // the case page's own place
    if (status) {
      status.prepend(element("p", "notice"));
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
    list.prepend(element("li", "message"));
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", show);
  else show();
})();
