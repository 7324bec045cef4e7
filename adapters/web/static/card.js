// The QuickBooks card's behaviour (no inline script: the pages' CSP forbids it).
// After the OAuth callback the card shows "QuickBooks connected! Verifying..."; this runs the
// connection test, then updates the pill, the badge, the test result and shows the reminder.
(function () {
  "use strict";

  function setText(id, text) {
    var node = document.getElementById(id);
    if (node && text) { node.textContent = text; }
    return node;
  }

  function verify(box) {
    var out = document.getElementById("test-result");
    var csrf = document.querySelector('meta[name="csrf-token"]');
    var body = new URLSearchParams();
    body.set("csrf", csrf ? csrf.getAttribute("content") : "");
    fetch(box.getAttribute("data-test-url"), {
      method: "POST", body: body, credentials: "same-origin",
      headers: {"Accept": "application/json"}
    }).then(function (r) { return r.json(); }).then(function (data) {
      out.textContent = data.message || data.error || "No answer from the connection test";
      out.className = data.ok ? "ok" : "bad";
      if (data.status) {
        var pill = setText("pill", data.status.pill);
        if (pill) { pill.className = "pill tone-" + data.status.tone; }
        var badge = setText("badge", data.status.badge);
        if (badge) { badge.className = "badge tone-" + (data.status.badge_tone || data.status.tone); }
        setText("company", data.status.company
          ? data.status.company + (data.status.country ? " (" + data.status.country + ")" : "")
          : "");
      }
      var remind = document.getElementById("verify-mappings");
      if (remind) { remind.hidden = false; }
    }).catch(function () {
      out.textContent = "The connection test could not run: press Test Connection.";
      out.className = "bad";
    });
  }

  function confirmForms() {
    var forms = document.querySelectorAll("form[data-confirm]");
    Array.prototype.forEach.call(forms, function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    confirmForms();
    var box = document.getElementById("verifying");
    if (box) { verify(box); }
  });
})();
