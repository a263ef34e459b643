// Keyboard answering and image zoom for the questionnaire page.
// Keys: 1-8 choose the diagnosis; when confidence is asked, the next 1-5 choose it and
// Backspace returns to the diagnosis; Enter submits. A click or tap on an image opens
// it full screen: wheel or pinch zooms, dragging pans, Escape closes.
(function () {
  "use strict";
  const form = document.getElementById("answer-form");
  if (!form) return;
  const groups = Array.from(form.querySelectorAll("fieldset[data-group]"));
  let active = 0;
  let submitting = false;

  function setActive(index) {
    active = Math.max(0, Math.min(index, groups.length - 1));
    groups.forEach((g, i) => g.classList.toggle("active", i === active));
  }
  function complete() {
    return groups.every((g) => g.querySelector("input:checked"));
  }
  setActive(groups.findIndex((g) => !g.querySelector("input:checked")));
  if (active < 0) setActive(0);

  groups.forEach((group, index) => {
    group.addEventListener("change", () => setActive(index + 1 < groups.length ? index + 1 : index));
  });
  form.addEventListener("submit", (event) => {
    if (submitting) { event.preventDefault(); return; }  // one click, one answer
    submitting = true;
    const button = document.getElementById("submit-answer");
    if (button) button.disabled = true;
  });

  document.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (!document.getElementById("zoom").hidden) return;
    const target = event.target;
    if (target && (target.tagName === "SELECT" || target.tagName === "TEXTAREA")) return;
    if (/^[1-9]$/.test(event.key)) {
      const input = groups[active] && groups[active].querySelector(`input[data-key="${event.key}"]`);
      if (input) {
        input.checked = true;
        input.dispatchEvent(new Event("change", { bubbles: true }));
        event.preventDefault();
      }
    } else if (event.key === "Backspace" && active > 0) {
      setActive(active - 1);
      event.preventDefault();
    } else if (event.key === "Enter") {
      event.preventDefault();
      if (complete()) form.requestSubmit();
      else setActive(groups.findIndex((g) => !g.querySelector("input:checked")));
    }
  });

  // --- zoom and pan -------------------------------------------------------------------
  const overlay = document.getElementById("zoom");
  const big = overlay.querySelector("img");
  big.draggable = false; // the browser's own image drag would cancel the pan
  let scale = 1, x = 0, y = 0, base = 1;
  const pointers = new Map();
  let pinchStart = null;

  function apply() { big.style.transform = `translate(${x}px, ${y}px) scale(${scale * base})`; }
  function open(src) {
    big.onload = () => {
      base = Math.min(window.innerWidth / big.naturalWidth, window.innerHeight / big.naturalHeight);
      scale = 1;
      x = -big.naturalWidth * base / 2; y = -big.naturalHeight * base / 2;
      apply();
    };
    big.src = src;
    overlay.hidden = false;
  }
  function close() { overlay.hidden = true; big.removeAttribute("src"); }
  function zoomAt(factor, cx, cy) {
    const next = Math.max(1, Math.min(8, scale * factor));
    const ox = cx - window.innerWidth / 2, oy = cy - window.innerHeight / 2;
    x = ox - (ox - x) * (next / scale); y = oy - (oy - y) * (next / scale);
    scale = next; apply();
  }
  document.querySelectorAll("img.zoomable").forEach((img) => {
    img.addEventListener("click", () => open(img.src));
  });
  overlay.querySelector(".zoom-close").addEventListener("click", close);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && !overlay.hidden) close(); });
  overlay.addEventListener("wheel", (e) => { e.preventDefault(); zoomAt(e.deltaY < 0 ? 1.2 : 1 / 1.2, e.clientX, e.clientY); }, { passive: false });
  overlay.addEventListener("dblclick", (e) => zoomAt(scale > 1 ? 1 / scale : 2.5, e.clientX, e.clientY));
  overlay.addEventListener("pointerdown", (e) => { pointers.set(e.pointerId, e); overlay.setPointerCapture(e.pointerId); });
  overlay.addEventListener("pointermove", (e) => {
    const prev = pointers.get(e.pointerId);
    if (!prev) return;
    pointers.set(e.pointerId, e);
    if (pointers.size === 2) {
      const [a, b] = Array.from(pointers.values());
      const d = Math.hypot(a.clientX - b.clientX, a.clientY - b.clientY);
      if (pinchStart) zoomAt(d / pinchStart, (a.clientX + b.clientX) / 2, (a.clientY + b.clientY) / 2);
      pinchStart = d;
    } else {
      x += e.clientX - prev.clientX; y += e.clientY - prev.clientY; apply();
    }
  });
  const up = (e) => { pointers.delete(e.pointerId); if (pointers.size < 2) pinchStart = null; };
  overlay.addEventListener("pointerup", up);
  overlay.addEventListener("pointercancel", up);
})();
