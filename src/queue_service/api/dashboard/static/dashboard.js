// queue-service dashboard: the only script besides htmx. Asks before a
// destructive action (forms with data-confirm, or a button with it).
"use strict";
document.addEventListener("submit", (event) => {
  const button = event.submitter;
  const message = (button && button.dataset.confirm) || event.target.dataset.confirm;
  if (message && !window.confirm(message)) {
    event.preventDefault();
  }
});
