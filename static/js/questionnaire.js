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
//
// A read is a case in a reading condition (cases.selectors.Read): the next screen may be
// the same case again in a sequential study (its unaided answer stored, now with the
// CNN's support: the same images, the support panel, the reader's own earlier answer),
// or the done page between a crossover's sessions (step washout). Each answer names the
// read's condition.
(function () {
  "use strict";
  // The page between a crossover's sessions (done.html) loads this script too: the time
  // its next session opens, which the server writes in UTC, in the reader's own time zone.
  document.querySelectorAll("time[data-local]").forEach((time) => {
    const when = new Date(time.getAttribute("datetime"));
    if (Number.isNaN(when.getTime())) return;
    try {
      time.textContent = new Intl.DateTimeFormat(document.documentElement.lang || undefined, {
        weekday: "long", year: "numeric", month: "long", day: "numeric",
        hour: "numeric", minute: "2-digit", timeZoneName: "short" }).format(when);
    } catch (error) { /* the server's text stays */ }
  });
})();
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
  // The reader's conditions in their order ({code, label, shows_cnn, shows_metadata}) and
  // how many reads each case has (2 in a sequential study, else 1).
  const plan = JSON.parse(document.getElementById("case-plan").textContent);
  const state = {
    number: Number(data.number), total: Number(data.total), answered: Number(data.answered),
    sessions: Number(data.sessions) || 1,
    // the read on screen: its condition, the CNN's support, the metadata, the earlier answer
    read: JSON.parse(document.getElementById("case-read").textContent),
    busy: false, queued: false, retryRead: null,
  };
  const instant = data.mode === "next" && !window.READERSTUDY_CLASSIC &&
    typeof window.fetch === "function" && typeof history.pushState === "function";

  function format(text, values) {
    return text.replace(/%\((\w+)\)s/g, (_, name) => String(values[name]));
  }
  function element(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  }
  // The cases of a session: the answers owed over the reads of each case and the sessions.
  const cases = () => Math.round(state.total / Math.max(plan.reads_per_case * state.sessions, 1));

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
  const caseButton = (target) => target && target.matches &&
    target.matches(".zoom-open, .keys-open, .gradcam-toggle");
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
    const images = Array.from(root.querySelectorAll(".images figure:not([hidden]) img[data-kind]"));
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
    root.querySelectorAll(".images figure:not([hidden]) img[data-kind]").forEach((img) => {
      images[img.dataset.kind] = img.src;
    });
    return {
      caseId: form.elements.case.value, number: state.number, answered: state.answered,
      images, read: state.read,
      checked: Array.from(form.querySelectorAll("input:checked")).map((i) => i),
    };
  }

  // --- the read: where it lies, the metadata, the CNN's support -----------------------------
  // The same as templates/cases/case.html renders for the first read of the page.
  function stepText(condition) {
    if (plan.reads_per_case > 1) {
      const step = plan.conditions.findIndex((c) => c.code === condition.code) + 1;
      return format(strings.step, { step, steps: plan.reads_per_case, label: condition.label });
    }
    if (state.sessions > 1) {
      return format(strings.session_of, {
        session: condition.session, sessions: state.sessions, label: condition.label });
    }
    return "";
  }
  // A probability as a whole percentage, rounded as the page's template rounds it
  // (Python's round: halves to even).
  function percent(probability) {
    const x = probability * 100, floor = Math.floor(x);
    return x - floor === 0.5 ? floor + (floor % 2) : Math.round(x);
  }
  function metadataList(metadata) {
    const list = element("dl", "case-meta");
    list.dataset.testid = "metadata";
    list.setAttribute("aria-label", strings.metadata);
    const age = metadata.age === null || metadata.age === undefined
      ? strings.not_recorded : format(strings.years, { age: metadata.age });
    for (const [label, value] of [[strings.age, age], [strings.sex, metadata.sex || strings.not_recorded],
      [strings.site, metadata.site || strings.not_recorded]]) {
      const row = element("div");
      row.append(element("dt", "", label), element("dd", "", value));
      list.append(row);
    }
    return list;
  }
  function supportSection(support, withGradcam) {
    const section = element("section", "support");
    section.dataset.testid = "support";
    section.setAttribute("aria-labelledby", "support-title");
    const title = element("h2", "", format(strings.support_title, { name: support.predicted.name }));
    title.id = "support-title";
    title.dataset.testid = "support-predicted";
    section.append(title);
    if (withGradcam) {
      const toggle = element("button", "gradcam-toggle", strings.gradcam);
      toggle.type = "button";
      toggle.title = strings.gradcam_hint;
      toggle.dataset.testid = "gradcam-toggle";
      toggle.setAttribute("aria-pressed", "false");
      toggle.setAttribute("aria-controls", "dermoscopic-figure");
      section.append(toggle);
    }
    const list = element("ol", support.top.length > 4 ? "support-bars many" : "support-bars");
    list.dataset.testid = "support-top";
    list.setAttribute("aria-label", strings.support_list);
    for (const item of support.top) {
      const pct = percent(item.probability);
      const row = element("li", item.code === support.predicted.code ? "predicted" : "");
      const bar = element("span", "support-bar");
      bar.setAttribute("aria-hidden", "true");
      const fill = element("span");
      fill.style.width = `${pct}%`;
      bar.append(fill);
      row.append(element("span", "support-name", item.name), bar,
        element("span", "support-pct", pct === 0 ? "<1%" : `${pct}%`));
      list.append(row);
    }
    section.append(list, element("p", "support-note", strings.support_note));
    return section;
  }
  // The Grad-CAM over the dermoscopic image (it replaces the image while shown: the map
  // is of the image as the CNN saw it, square, so it is not laid over the photo itself).
  const dermoscopic = document.getElementById("dermoscopic-figure");
  function setGradcam(on) {
    const cam = dermoscopic.querySelector("img.gradcam");
    if (!cam) return; // no condition of the study shows it
    on = on && Boolean(cam.getAttribute("src"));
    cam.hidden = !on;
    dermoscopic.querySelector("img[data-kind]").hidden = on;
    dermoscopic.querySelector(".caption-image").hidden = on;
    dermoscopic.querySelector(".caption-gradcam").hidden = !on;
    const toggle = root.querySelector(".gradcam-toggle");
    if (toggle) toggle.setAttribute("aria-pressed", on ? "true" : "false");
  }
  root.addEventListener("click", (event) => {
    const toggle = event.target.closest && event.target.closest(".gradcam-toggle");
    if (!toggle) return;
    setGradcam(toggle.getAttribute("aria-pressed") !== "true");
    // After a click (not Enter or Space: event.detail 0) the focus goes back to the
    // page, as after the enlarged image, so that Enter submits the answer.
    if (event.detail !== 0) root.focus({ preventScroll: true });
  });
  const asideKey = (read) => JSON.stringify([read.support, read.metadata]);
  function showRead(read, shown) {
    const condition = read.condition;
    form.elements.condition.value = condition.code;
    const step = root.querySelector("[data-testid=read-step]");
    step.textContent = stepText(condition);
    step.hidden = !step.textContent;
    step.classList.toggle("aided", Boolean(condition.shows_cnn));
    const heading = form.querySelector(".read-heading");
    if (heading) {
      heading.textContent = condition.shows_cnn ? strings.final_heading : strings.first_heading;
      heading.classList.toggle("aided", Boolean(condition.shows_cnn));
    }
    const earlier = form.querySelector(".earlier-answer");
    earlier.hidden = !read.earlier_answer;
    earlier.textContent = read.earlier_answer ? format(strings.earlier, { name: read.earlier_answer.name }) : "";
    if (asideKey(read) === asideKey(shown)) return; // the same panel: the Grad-CAM stays as set
    const aside = document.getElementById("case-aside");
    const cam = dermoscopic.querySelector("img.gradcam");
    setGradcam(false);
    const gradcam = cam && read.support && read.support.gradcam && !dermoscopic.hidden
      ? read.support.gradcam : null;
    if (gradcam) cam.src = gradcam; else if (cam) cam.removeAttribute("src");
    aside.replaceChildren(
      ...(read.metadata ? [metadataList(read.metadata)] : []),
      ...(read.support ? [supportSection(read.support, Boolean(gradcam))] : []));
    aside.hidden = !read.metadata && !read.support;
  }
  // The next read's condition where it is another case's and shows nothing but the
  // images, so that its case may be shown ahead of the server's reply; else null (the
  // same case again, or a screen with the CNN's support or metadata, which the reply has).
  function aheadCondition() {
    const code = state.read.condition.code;
    const index = plan.conditions.findIndex((c) => c.code === code);
    let next = plan.conditions[index];
    if (plan.reads_per_case > 1) {
      if (index < plan.reads_per_case - 1) return null;
      next = plan.conditions[0];
    }
    if (!next || next.shows_cnn || next.shows_metadata) return null;
    return { code: next.code, label: next.label, session: state.read.condition.session, shows_cnn: false };
  }
  // Puts a case on screen: its images (already loaded), number and progress; the
  // selection is cleared unless ``checked`` is given (going back after a failure).
  function display(view) {
    const section = root.querySelector(".images");
    for (const kind of ["clinical", "dermoscopic"]) {
      const figure = section.querySelector(`figure.${kind}`);
      if (!figure) continue;
      figure.hidden = !view.images[kind];
      const img = figure.querySelector("img[data-kind]");
      if (view.images[kind]) img.src = view.images[kind]; else img.removeAttribute("src");
    }
    section.classList.toggle("single", Object.keys(view.images).length < 2);
    form.elements.case.value = view.caseId;
    showRead(view.read, state.read);
    state.read = view.read;
    form.querySelectorAll("input[type=radio]").forEach((input) => {
      input.checked = (view.checked || []).includes(input);
    });
    setActive(Math.max(firstIncomplete(), 0));
    state.number = view.number;
    state.answered = view.answered;
    const n = state.number;
    root.querySelector("[data-testid=progress]").textContent = `${n} / ${cases()}`;
    root.querySelector("[data-testid=answered]").textContent =
      format(strings.answered, { done: state.answered });
    root.querySelector(".progress-bar > div").style.width =
      `${Math.round(100 * state.answered / Math.max(state.total, 1))}%`;
    document.title = data.title.replace("{n}", n).replace("{total}", cases());
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
      const finished = next && ["review", "done", "closed", "washout"].includes(next.step);
      // the next page shows it (static/js/notice.js)
      if (notice) sessionStorage.setItem("readerstudy-notice", JSON.stringify({ text: notice, level }));
      window.location.assign(finished ? data.doneUrl : data.caseUrl);
      return false;
    }
    state.total = next.progress.total;
    state.sessions = next.progress.sessions || 1;
    const { condition, support, metadata, earlier_answer } = next.case;
    const view = { caseId: next.case.id, number: next.case.number,
      answered: next.progress.answered, images: next.case.images,
      read: { condition, support, metadata, earlier_answer } };
    const current = onScreen();
    // another case, or the same case in another condition (its second, aided read)
    const moved = current.number !== view.number ||
      current.read.condition.code !== condition.code || !sameImages(current.images, view.images);
    if (moved) {
      await withTimeout(Promise.all(Object.values(view.images).map(preload)), 5000);
      display(view);
    } else {
      form.elements.case.value = view.caseId; // the case shown ahead is the one served
      state.answered = view.answered;
      display({ ...view, checked: current.checked, keepFocus: true });
    }
    say(notice, level);
    announce.textContent = [format(strings.announce, { n: state.number, total: cases() }),
      stepText(condition), support ? format(strings.support_title, { name: support.predicted.name }) : "",
    ].filter(Boolean).join(" · ");
    // the same case's next read replaces the history entry: Back has no read to go to
    const sameCase = current.number === view.number && current.caseId === view.caseId;
    history[sameCase ? "replaceState" : "pushState"]({ number: state.number }, "", `${data.caseUrl}#${state.number}`);
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
    const body = { case: fields.get("case"), answer: fields.get("answer"),
      condition: fields.get("condition"), revise: false, next: true };
    if (fields.has("confidence")) body.confidence = Number(fields.get("confidence"));
    const sent = `${body.case} ${body.condition}`; // the read answered
    const retry = state.retryRead === sent;
    const before = onScreen();
    state.queued = false;
    setBusy(true);
    const nextCondition = aheadCondition();
    const ahead = nextCondition !== null && Object.keys(upcoming).length > 0 &&
      Object.values(upcoming).every((url) => ready.has(absolute(url)));
    if (ahead) {
      display({ caseId: "", number: state.number + 1, answered: state.answered + 1, images: upcoming,
        read: { condition: nextCondition, support: null, metadata: null, earlier_answer: null } });
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
      state.retryRead = sent; // the answer may have been stored: a retry says nothing
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
      state.retryRead = null;
      const shown = await show(payload.next, !payload.created && !retry ? strings.answered_already : "", "warning");
      setBusy(false);
      if (shown && state.queued && complete()) { state.queued = false; form.requestSubmit(); }
      state.queued = false;
      return;
    }
    state.queued = false;
    if (response.ok) { // stored, but the reply could not be read: ask for the next case
      state.retryRead = null;
      await fetchNext("", "");
      setBusy(false);
      return;
    }
    if (code === "answered_elsewhere" && retry) {
      // this tab's own earlier request reached the server before its reply was lost
      state.retryRead = null;
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
      state.retryRead = sent;
      say(format(strings.busy, { status: response.status }), "error");
    } else if (code === "study_closed") {
      say(payload.detail, "error", { href: data.doneUrl, text: strings.closed });
    } else if (code === "washout") { // a crossover's next session has not opened yet
      window.location.assign(data.doneUrl);
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
    button.addEventListener("click", (event) =>
      open(button.querySelector("img:not([hidden])").src, button, event.detail === 0));
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
