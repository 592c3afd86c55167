// The approvals queue from the keyboard: j/k move, a approves, r starts a rejection.
(function () {
  "use strict";
  let currentId = null;

  function cards() {
    return Array.from(document.querySelectorAll("#queue .action-card"));
  }

  function select(card) {
    cards().forEach((c) => c.classList.remove("is-current"));
    if (!card) return;
    card.classList.add("is-current");
    card.focus({ preventScroll: true });
    card.scrollIntoView({ block: "nearest" });
    currentId = card.id;
  }

  function current() {
    return currentId ? document.getElementById(currentId) : null;
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target && target.closest("input, select, textarea, [contenteditable]")) return;
    const list = cards();
    if (!list.length) return;
    const card = current();
    const index = card ? list.indexOf(card) : -1;
    if (event.key === "j") {
      select(list[Math.min(index + 1, list.length - 1)]);
    } else if (event.key === "k") {
      select(list[Math.max(index - 1, 0)]);
    } else if (event.key === "a" && card) {
      const button = card.querySelector(".approve-form button");
      if (button) button.click();
    } else if (event.key === "r" && card) {
      const field = card.querySelector("[data-key='r']");
      if (field) field.focus();
    } else {
      return;
    }
    event.preventDefault();
  });

  // A refresh of the queue swaps in new cards: keep the person's place.
  document.addEventListener("htmx:afterSettle", () => {
    const card = current();
    if (card) card.classList.add("is-current");
  });
})();
