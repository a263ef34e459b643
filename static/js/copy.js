// "Copy" buttons of the staff console: put the text of the field they name
// (data-copy="<id>") on the clipboard and say so on the button for a moment.
(function () {
  "use strict";
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-copy]");
    if (!button) return;
    const field = document.getElementById(button.dataset.copy);
    if (!field) return;
    const label = button.textContent;
    try {
      await navigator.clipboard.writeText(field.value);
      button.textContent = "Copied";
    } catch (error) { // no clipboard (an insecure origin): select it for Ctrl+C
      field.select();
      button.textContent = "Press Ctrl+C";
    }
    setTimeout(() => { button.textContent = label; }, 1500);
  });
})();
