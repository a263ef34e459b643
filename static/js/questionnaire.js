// The case page: keyboard answering, the next case without a reload, the enlarged image.
//
// Keys (the README's "Answering cases", and the page's "?" list): 1-9, then A-Z, choose
// the diagnosis; when confidence is asked the next 1-5 choose it and Backspace goes back
// to the diagnosis; Enter submits; ? lists the keys. They act only while the focus is on
// the page itself or on the answer's own controls, never on a link, the language menu,
// Log out or any other control.
//
// Submitting sends the answer to the JSON API (POST answers/ with next=true), which
// stores it once and answers with the next case, already served; its images were loaded
// ahead, so the switch shows them at once. Without JavaScript, or on the page that
// revises an earlier answer, the form posts as a plain HTML form. A bench or a test may
// set window.READERSTUDY_CLASSIC = true before this script runs for the plain form.
(function () {
  "use strict";
  const root = document.getElementById("case-root");
  const form = document.getElementById("answer-form");
  if (!root || !form) return;
  const strings = JSON.parse(document.getElementById("case-strings").textContent);
  const statusBox = document.getElementById("case-status");
  const announce = document.getElementById("case-announce");
  const submitButton = document.getElementById("submit-answer");
  const keysDialog = document.getElementById("keys-help");
  const overlay = document.getElementById("zoom");
  const groups = Array.from(form.querySelectorAll("fieldset[data-group]"));
  const data = root.dataset;
  const state = {
    number: Number(data.number), total: Number(data.total), answered: Number(data.answered),
    busy: false, queued: false, retryCase: null,
  };
  const instant = data.mode === "next" && !window.READERSTUDY_CLASSIC &&
    typeof window.fetch === "function" && typeof history.pushState === "function";

  function format(text, values) {
    return text.replace(/%\((\w+)\)s/g, (_, name) => String(values[name]));
  }

  // --- the answer's groups: diagnosis, then confidence ---------------------------------
  let active = 0;
  function setActive(index) {
    active = Math.max(0, Math.min(index, groups.length - 1));
    groups.forEach((g, i) => g.classList.toggle("active", i === active));
  }
  function firstIncomplete() { return groups.findIndex((g) => !g.querySelector("input:checked")); }
  function complete() { return firstIncomplete() < 0; }
  setActive(Math.max(firstIncomplete(), 0));
  groups.forEach((group, index) => {
    group.addEventListener("change", () => setActive(index + 1 < groups.length ? index + 1 : index));
    group.addEventListener("focusin", () => setActive(index));
  });

  // --- keys ------------------------------------------------------------------------------
  function keysApply(target) {
    if (!target || target === document.body || target === document.documentElement) return true;
    if (target === root) return true;
    return target === submitButton || (target.matches("input[type=radio]") && form.contains(target));
  }
  // The case's own buttons (enlarge an image, the keys list): the focus lands there
  // after closing what they opened, so the answer's keys act there too, but Enter
  // presses the button as usual.
  const caseButton = (target) => target && target.matches && target.matches(".zoom-open, .keys-open");
  function openKeys() {
    if (typeof keysDialog.showModal === "function") keysDialog.showModal();
    else keysDialog.setAttribute("open", "");
  }
  form.querySelector(".keys-open")?.addEventListener("click", openKeys);
  document.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey || event.isComposing) return;
    if (!overlay.hidden || keysDialog.open) return;
    const onCaseButton = caseButton(event.target);
    if (!keysApply(event.target) && !onCaseButton) return;
    const key = event.key.length === 1 ? event.key.toUpperCase() : event.key;
    if (onCaseButton && key === "Enter") return;
    if (key === "?") {
      event.preventDefault();
      openKeys();
    } else if (/^[0-9A-Z]$/.test(key)) {
      const group = groups[active];
      const input = group && group.querySelector(`input[data-key="${key}"]`);
      if (input) {
        event.preventDefault();
        input.checked = true;
        input.dispatchEvent(new Event("change", { bubbles: true }));
      }
    } else if (key === "Backspace" && active > 0) {
      event.preventDefault();
      setActive(active - 1);
    } else if (key === "Enter") {
      if (event.target === submitButton) return; // the button's own press submits
      event.preventDefault();
      if (event.repeat) return;
      if (complete()) form.requestSubmit();
      else setActive(firstIncomplete());
    }
  });

  // --- messages ----------------------------------------------------------------------------
  function say(text, level, link) {
    statusBox.replaceChildren();
    if (!text) return;
    const p = document.createElement("p");
    p.className = `notice ${level || ""}`;
    p.setAttribute("role", level === "error" || level === "warning" ? "alert" : "status");
    p.dataset.testid = level === "error" ? "error" : "notice";
    p.textContent = text;
    if (link) {
      const a = document.createElement("a");
      a.href = link.href;
      a.textContent = link.text;
      p.append(" ", a);
    }
    statusBox.append(p);
  }
  function setBusy(busy) {
    state.busy = busy;
    submitButton.setAttribute("aria-busy", busy ? "true" : "false");
  }

  // --- images loaded ahead -------------------------------------------------------------------
  const absolute = (url) => new URL(url, window.location.href).href;
  const loading = new Map(); // absolute URL -> promise of its decoded image
  const ready = new Set(); // absolute URLs decoded and held in memory
  function preload(url) {
    url = absolute(url);
    if (!loading.has(url)) {
      const img = new Image();
      img.src = url;
      loading.set(url, img.decode().then(() => { ready.add(url); }, () => undefined));
    }
    return loading.get(url);
  }
  function keepOnly(urls) {
    const keep = new Set(urls.map(absolute));
    for (const url of loading.keys()) if (!keep.has(url)) { loading.delete(url); ready.delete(url); }
  }
  function painted(number) {
    const images = Array.from(root.querySelectorAll(".images figure:not([hidden]) img"));
    Promise.all(images.map((img) => img.decode().catch(() => undefined))).then(() => {
      requestAnimationFrame(() => requestAnimationFrame(() => {
        document.dispatchEvent(new CustomEvent("readerstudy:case-shown", { detail: { number } }));
      }));
    });
  }
  // The images of the case after this one, by kind (empty on the last case).
  let upcoming = JSON.parse(document.getElementById("case-prefetch").textContent);
  Object.values(upcoming).forEach(preload);

  // --- what is on screen ---------------------------------------------------------------------
  function withTimeout(promise, ms) {
    return Promise.race([promise, new Promise((resolve) => setTimeout(resolve, ms))]);
  }
  function onScreen() {
    const images = {};
    root.querySelectorAll(".images figure:not([hidden]) img").forEach((img) => {
      images[img.dataset.kind] = img.src;
    });
    return {
      caseId: form.elements.case.value, number: state.number, answered: state.answered,
      images, checked: Array.from(form.querySelectorAll("input:checked")).map((i) => i),
    };
  }
  // Puts a case on screen: its images (already loaded), number and progress; the
  // selection is cleared unless ``checked`` is given (going back after a failure).
  function display(view) {
    const section = root.querySelector(".images");
    for (const kind of ["clinical", "dermoscopic"]) {
      const figure = section.querySelector(`figure.${kind}`);
      if (!figure) continue;
      figure.hidden = !view.images[kind];
      if (view.images[kind]) figure.querySelector("img").src = view.images[kind];
    }
    section.classList.toggle("single", !view.images.clinical);
    form.elements.case.value = view.caseId;
    form.querySelectorAll("input[type=radio]").forEach((input) => {
      input.checked = (view.checked || []).includes(input);
    });
    setActive(Math.max(firstIncomplete(), 0));
    state.number = view.number;
    state.answered = view.answered;
    const n = state.number;
    root.querySelector("[data-testid=progress]").textContent = `${n} / ${state.total}`;
    root.querySelector("[data-testid=answered]").textContent =
      format(strings.answered, { done: state.answered });
    root.querySelector(".progress-bar > div").style.width =
      `${Math.round(100 * state.answered / Math.max(state.total, 1))}%`;
    document.title = data.title.replace("{n}", n);
    data.number = n;
    // a new case: the focus leaves the previous case's buttons for the page itself
    if (!view.keepFocus && form.contains(document.activeElement)) root.focus({ preventScroll: true });
  }
  function sameImages(a, b) {
    const ka = Object.keys(a).sort(), kb = Object.keys(b).sort();
    return ka.join() === kb.join() && ka.every((k) => absolute(a[k]) === absolute(b[k]));
  }
  // The server's next screen is the truth: confirm what is shown, or show it.
  async function show(next, notice, level) {
    if (!next || next.step !== "case" || !next.case) {
      const finished = next && ["review", "done", "closed"].includes(next.step);
      // the next page shows it (static/js/notice.js)
      if (notice) sessionStorage.setItem("readerstudy-notice", JSON.stringify({ text: notice, level }));
      window.location.assign(finished ? data.doneUrl : data.caseUrl);
      return false;
    }
    state.total = next.progress.total;
    const view = { caseId: next.case.id, number: next.case.number,
      answered: next.progress.answered, images: next.case.images };
    const current = onScreen();
    const moved = current.number !== view.number || !sameImages(current.images, view.images);
    if (moved) {
      await withTimeout(Promise.all(Object.values(view.images).map(preload)), 5000);
      display(view);
    } else {
      form.elements.case.value = view.caseId; // the case shown ahead is the one served
      state.answered = view.answered;
      display({ ...view, checked: current.checked, keepFocus: true });
    }
    say(notice, level);
    announce.textContent = format(strings.announce, { n: state.number, total: state.total });
    history.pushState({ number: state.number }, "", `${data.caseUrl}#${state.number}`);
    document.dispatchEvent(new CustomEvent("readerstudy:case-confirmed", { detail: { number: state.number } }));
    upcoming = next.prefetch || {};
    keepOnly([...Object.values(view.images), ...Object.values(upcoming)]);
    Object.values(upcoming).forEach(preload);
    if (moved) painted(state.number);
    return true;
  }

  async function fetchNext(notice, level) {
    try {
      const response = await fetch(`${data.nextApi}?prefetch=1`, {
        headers: { Accept: "application/json" }, credentials: "same-origin",
      });
      if (!response.ok) throw new Error(String(response.status));
      await show(await response.json(), notice, level);
    } catch (error) {
      window.location.assign(data.caseUrl); // the page itself says where the reader is
    }
  }

  // Enter shows the next case at once where its images are loaded (the reader starts
  // looking while the answer travels); the server's reply confirms it, or a failure
  // puts the answered case back with the reader's choice.
  async function send() {
    const fields = new FormData(form);
    const body = { case: fields.get("case"), answer: fields.get("answer"), revise: false, next: true };
    if (fields.has("confidence")) body.confidence = Number(fields.get("confidence"));
    const retry = state.retryCase === body.case;
    const before = onScreen();
    state.queued = false;
    setBusy(true);
    const ahead = Object.keys(upcoming).length > 0 &&
      Object.values(upcoming).every((url) => ready.has(absolute(url)));
    if (ahead) {
      display({ caseId: "", number: state.number + 1, answered: state.answered + 1, images: upcoming });
      say("");
      painted(state.number);
    }
    const putBack = () => { if (ahead) display(before); };
    let response, payload;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), 20000);
    try {
      response = await fetch(data.answerApi, {
        method: "POST",
        credentials: "same-origin",
        signal: abort.signal,
        headers: {
          "Content-Type": "application/json",
          Accept: "application/json",
          "X-CSRFToken": fields.get("csrfmiddlewaretoken"),
        },
        body: JSON.stringify(body),
      });
      payload = await response.json().catch(() => null);
    } catch (error) {
      state.retryCase = body.case; // the answer may have been stored: a retry says nothing
      state.queued = false;
      putBack();
      setBusy(false);
      say(strings.network, "error");
      return;
    } finally {
      clearTimeout(timer);
    }
    const code = payload && payload.code;
    if (response.ok && payload) {
      state.retryCase = null;
      const shown = await show(payload.next, !payload.created && !retry ? strings.answered_already : "", "warning");
      setBusy(false);
      if (shown && state.queued && complete()) { state.queued = false; form.requestSubmit(); }
      state.queued = false;
      return;
    }
    state.queued = false;
    if (response.ok) { // stored, but the reply could not be read: ask for the next case
      state.retryCase = null;
      await fetchNext("", "");
      setBusy(false);
      return;
    }
    if (code === "answered_elsewhere" && retry) {
      // this tab's own earlier request reached the server before its reply was lost
      state.retryCase = null;
      await fetchNext(strings.earlier_stands, "warning");
      setBusy(false);
      return;
    }
    if (code === "answered_elsewhere" || code === "not_next_case" || code === "case_not_served") {
      await fetchNext(payload.detail, "warning");
      setBusy(false);
      return;
    }
    putBack();
    setBusy(false);
    if (response.status >= 500 || response.status === 429) {
      state.retryCase = body.case;
      say(format(strings.busy, { status: response.status }), "error");
    } else if (code === "study_closed") {
      say(payload.detail, "error", { href: data.doneUrl, text: strings.closed });
    } else if (code === "consent_required" || code === "profile_required") {
      window.location.assign(data.caseUrl); // that page leads to the step the reader is at
    } else if (response.status === 401 || response.status === 403) {
      say(strings.session, "error", { href: data.loginUrl, text: strings.log_in });
    } else {
      say((payload && payload.detail) || `HTTP ${response.status}`, "error");
    }
  }

  form.addEventListener("submit", (event) => {
    if (state.busy) { // one press, one answer; a press on the case shown ahead waits
      event.preventDefault();
      if (!form.elements.case.value) state.queued = true;
      return;
    }
    if (!instant) { setBusy(true); return; } // the plain form posts
    event.preventDefault();
    send();
  });

  if (instant) {
    history.replaceState({ number: state.number }, "", `${data.caseUrl}#${state.number}`);
    window.addEventListener("popstate", (event) => {
      const number = event.state && event.state.number;
      if (!number || number === state.number) return;
      if (state.busy) { // an answer is on its way: stay until its reply
        history.pushState({ number: state.number }, "", `${data.caseUrl}#${state.number}`);
        return;
      }
      if (number < state.number && data.allowChanges) {
        window.location.assign(data.reviseUrl.replace(/\/0\/$/, `/${number}/`));
        return;
      }
      history.pushState({ number: state.number }, "", `${data.caseUrl}#${state.number}`);
      say(strings.final, "warning");
    });
  }

  // The phone's answer bar is fixed at the bottom: the page leaves room for it.
  const panel = form;
  const phone = window.matchMedia("(max-width: 599px)");
  if (typeof ResizeObserver === "function") {
    new ResizeObserver(() => {
      document.documentElement.style.setProperty(
        "--panel-height", phone.matches ? `${panel.offsetHeight}px` : "0px");
    }).observe(panel);
  }
  painted(state.number);
  root.dataset.ready = "1"; // keys and the switch work from here on (tests wait for it)

  // --- the enlarged image: wheel, pinch, double click or double tap, drag to pan ----------
  const big = overlay.querySelector("img");
  const level = overlay.querySelector(".zoom-level");
  big.draggable = false; // the browser's own image drag would cancel the pan
  let scale = 1, x = 0, y = 0, base = 1, opener = null, byKeyboard = false;
  const pointers = new Map();
  let pinchStart = null, pinched = false, lastTap = null, lastPointerType = "mouse";
  const MAX = 8;

  function apply() {
    big.style.transform = `translate(${x}px, ${y}px) scale(${scale * base})`;
    level.textContent = `${Math.round(scale * 100)}%`;
  }
  function fit() {
    base = Math.min(window.innerWidth / big.naturalWidth, window.innerHeight / big.naturalHeight);
    scale = 1;
    x = -big.naturalWidth * base / 2; y = -big.naturalHeight * base / 2;
    apply();
    big.style.visibility = "";
  }
  function open(src, from, keyboard) {
    opener = from; byKeyboard = keyboard;
    scale = 1; level.textContent = "100%";
    big.style.transform = "";
    big.style.visibility = "hidden"; // until it is fitted: no glimpse of the last zoom
    big.onload = fit;
    big.src = src;
    if (big.complete && big.naturalWidth) fit();
    overlay.hidden = false;
    overlay.querySelector(".zoom-close").focus({ preventScroll: true });
  }
  function close() {
    overlay.hidden = true;
    big.removeAttribute("src");
    if (byKeyboard && opener) opener.focus({ preventScroll: true });
    else root.focus({ preventScroll: true });
  }
  function zoomAt(factor, cx, cy) {
    const next = Math.max(1, Math.min(MAX, scale * factor));
    const ox = cx - window.innerWidth / 2, oy = cy - window.innerHeight / 2;
    x = ox - (ox - x) * (next / scale); y = oy - (oy - y) * (next / scale);
    scale = next; apply();
  }
  const centre = () => [window.innerWidth / 2, window.innerHeight / 2];
  function toggleAt(cx, cy) { zoomAt(scale > 1 ? 1 / scale : 2.5, cx, cy); }

  root.querySelectorAll(".zoom-open").forEach((button) => {
    // event.detail is 0 for a click made with Enter or Space
    button.addEventListener("click", (event) => open(button.querySelector("img").src, button, event.detail === 0));
  });
  overlay.querySelector(".zoom-close").addEventListener("click", close);
  overlay.querySelector(".zoom-in").addEventListener("click", () => zoomAt(1.5, ...centre()));
  overlay.querySelector(".zoom-out").addEventListener("click", () => zoomAt(1 / 1.5, ...centre()));
  overlay.querySelector(".zoom-reset").addEventListener("click", fit);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !overlay.hidden) { e.preventDefault(); close(); }
  });
  overlay.addEventListener("keydown", (e) => {
    if (e.key === "+" || e.key === "=") zoomAt(1.5, ...centre());
    else if (e.key === "-") zoomAt(1 / 1.5, ...centre());
    else if (e.key === "0") fit();
    else if (e.key === "Tab") { // the focus stays inside the overlay
      const buttons = Array.from(overlay.querySelectorAll("button"));
      const i = buttons.indexOf(document.activeElement);
      e.preventDefault();
      buttons[(i + (e.shiftKey ? -1 : 1) + buttons.length) % buttons.length].focus();
    }
  });
  overlay.addEventListener("wheel", (e) => {
    e.preventDefault();
    zoomAt(e.deltaY < 0 ? 1.2 : 1 / 1.2, e.clientX, e.clientY);
  }, { passive: false });
  overlay.addEventListener("dblclick", (e) => {
    if (lastPointerType !== "touch" && e.target === big) toggleAt(e.clientX, e.clientY);
  });
  const downs = new Map(); // where and when each pointer went down: a tap barely moves
  big.addEventListener("pointerdown", (e) => {
    lastPointerType = e.pointerType;
    downs.set(e.pointerId, { x: e.clientX, y: e.clientY, t: performance.now() });
    pointers.set(e.pointerId, e);
    big.setPointerCapture(e.pointerId);
  });
  big.addEventListener("pointermove", (e) => {
    const prev = pointers.get(e.pointerId);
    if (!prev) return;
    pointers.set(e.pointerId, e);
    if (pointers.size === 2) {
      const [a, b] = Array.from(pointers.values());
      const d = Math.hypot(a.clientX - b.clientX, a.clientY - b.clientY);
      if (pinchStart) zoomAt(d / pinchStart, (a.clientX + b.clientX) / 2, (a.clientY + b.clientY) / 2);
      pinchStart = d;
      pinched = true;
      lastTap = null;
    } else {
      x += e.clientX - prev.clientX; y += e.clientY - prev.clientY; apply();
    }
  });
  const up = (e) => {
    const down = downs.get(e.pointerId);
    pointers.delete(e.pointerId);
    downs.delete(e.pointerId);
    if (pointers.size < 2) pinchStart = null;
    const wasPinch = pinched;
    if (!pointers.size) pinched = false;
    if (e.type !== "pointerup" || e.pointerType !== "touch" || pointers.size || !down) return;
    const now = performance.now();
    const tap = !wasPinch && now - down.t < 300 &&
      Math.hypot(e.clientX - down.x, e.clientY - down.y) < 12;
    if (!tap) { lastTap = null; return; }
    if (lastTap && now - lastTap.t < 350 && Math.hypot(e.clientX - lastTap.x, e.clientY - lastTap.y) < 40) {
      toggleAt(e.clientX, e.clientY); // a double tap
      lastTap = null;
    } else {
      lastTap = { t: now, x: e.clientX, y: e.clientY };
    }
  };
  big.addEventListener("pointerup", up);
  big.addEventListener("pointercancel", up);
  window.addEventListener("resize", () => { if (!overlay.hidden) fit(); });
})();
