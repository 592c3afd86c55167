// The trace page: a span row opens its detail once (htmx) and closes it on the next click;
// "Copy span JSON" puts the span on the clipboard, or opens it where the clipboard is refused.
document.addEventListener(
  "click",
  (event) => {
    const toggle = event.target.closest("[data-span-toggle]");
    if (toggle) {
      const box = document.getElementById(toggle.dataset.spanToggle);
      if (box && box.childElementCount > 0) {
        event.preventDefault();
        event.stopImmediatePropagation();
        box.replaceChildren();
        toggle.setAttribute("aria-expanded", "false");
      } else {
        toggle.setAttribute("aria-expanded", "true");
      }
      return;
    }
    const copy = event.target.closest("[data-copy-url]");
    if (copy && navigator.clipboard) {
      event.preventDefault();
      fetch(copy.dataset.copyUrl, { credentials: "same-origin" })
        .then((response) => response.text())
        .then((text) => navigator.clipboard.writeText(text))
        .then(() => {
          copy.textContent = "Copied";
          setTimeout(() => (copy.textContent = "Copy span JSON"), 1500);
        })
        .catch(() => window.open(copy.href, "_blank", "noopener"));
    }
  },
  true,
);

// Filters: leave empty fields out of the address, so a shared link says only what was asked.
document.addEventListener("htmx:configRequest", (event) => {
  if (event.detail.verb !== "get" || !event.detail.elt.matches("#run-filters")) return;
  for (const [name, value] of Array.from(event.detail.formData.entries())) {
    if (value === "") event.detail.formData.delete(name);
  }
});
