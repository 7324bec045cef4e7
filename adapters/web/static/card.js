// The QuickBooks card's behaviour (no inline script: the pages' CSP forbids it).
// After the OAuth callback the card shows "QuickBooks connected! Verifying..."; this runs the
// connection test, then updates the card as a reload would show it (card.py card_status): the
// pill, the badge, the company, the red panels (QuickBooks' own message when the test failed,
// the expired one), which Connect button is primary, the test result, and the reminder.
(function () {
  "use strict";

  function setText(id, text) {
    var node = document.getElementById(id);
    if (node && text) { node.textContent = text; }
    return node;
  }

  function showPanel(id, shown) {
    var panel = document.getElementById(id);
    if (panel) { panel.hidden = !shown; }
  }

  function connectButton(reconnectPrimary) {
    // "Connect to QuickBooks" (secondary) <-> "Reconnect QuickBooks" (primary), as _card.html;
    // the primary "Connect to QuickBooks" of a school never connected is left alone
    var button = document.querySelector('#connection-panel form[action="/connect"] button');
    if (!button) { return; }
    if (reconnectPrimary && button.id === "connect" && button.classList.contains("secondary")) {
      button.id = "reconnect";
      button.textContent = "Reconnect QuickBooks";
      button.classList.remove("secondary");
    } else if (!reconnectPrimary && button.id === "reconnect") {
      button.id = "connect";
      button.textContent = "Connect to QuickBooks";
      button.classList.add("secondary");
    }
  }

  function paint(status) {
    var pill = setText("pill", status.pill);
    if (pill) { pill.className = "pill tone-" + status.tone; }
    var badge = setText("badge", status.badge);
    if (badge) { badge.className = "badge tone-" + (status.badge_tone || status.tone); }
    setText("company", status.company
      ? status.company + (status.country ? " (" + status.country + ")" : "")
      : "");
    setText("connection-error-message", status.qbo_error);
    showPanel("connection-error", Boolean(status.qbo_error));
    showPanel("reconnect-alert", Boolean(status.reconnect));
    if (status.reconnect) { showPanel("expires", false); }
    connectButton(Boolean(status.reconnect_primary));
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
      if (data.status) { paint(data.status); }
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
