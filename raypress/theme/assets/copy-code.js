// Copy buttons on code blocks. Loaded (deferred) only on pages that show code; the page
// is complete without it: the code is selectable text either way. `serve` swaps a post's
// body after an edit and says so with "raypress:updated": the buttons are added again.
(() => {
  "use strict";
  if (!navigator.clipboard || !window.isSecureContext) return; // no API: no button

  function addButtons() {
    const status = document.createElement("span");
    status.className = "visually-hidden";
    status.setAttribute("role", "status");
    document.body.append(status);

    for (const block of document.querySelectorAll("div.highlight")) {
      const code = block.querySelector("pre");
      if (!code || block.querySelector(".copy-code")) continue;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "copy-code";
      button.textContent = "Copy";
      button.setAttribute("aria-label", "Copy the code");
      let reset = 0;
      button.addEventListener("click", async () => {
        let said = "Copied";
        try {
          await navigator.clipboard.writeText(code.textContent.replace(/\n$/, ""));
        } catch {
          said = "Copy failed";
        }
        button.textContent = said;
        button.dataset.state = said === "Copied" ? "done" : "failed";
        status.textContent = said === "Copied" ? "Code copied to the clipboard" : said;
        clearTimeout(reset);
        reset = setTimeout(() => {
          button.textContent = "Copy";
          delete button.dataset.state;
          status.textContent = "";
        }, 2000);
      });
      block.append(button);
    }
  }

  addButtons();
  document.addEventListener("raypress:updated", addButtons);
})();
