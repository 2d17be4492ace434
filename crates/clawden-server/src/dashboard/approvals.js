// Keeps the approvals list current: when the WebSocket announces an approval asked for or
// decided, the list is fetched again from the server (rendered there, with its forms and
// CSRF token) and swapped in. Without this script, reloading the page shows the same.
"use strict";
(function () {
  const region = document.getElementById("approval-list");
  const status = document.getElementById("live-status");
  if (!region || !window.WebSocket || !window.fetch || !window.DOMParser) return;

  let refreshing = false;
  let again = false;

  async function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    try {
      const response = await fetch(window.location.pathname, { credentials: "same-origin", headers: { "accept": "text/html" } });
      if (response.ok) {
        const doc = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = doc.getElementById("approval-list");
        const current = document.getElementById("approval-list");
        if (fresh && current) {
          // Keyboard users keep their place: focus the same button of the same row, if it is still there.
          const focused = current.contains(document.activeElement) ? document.activeElement : null;
          const row = focused && focused.closest("li.approval");
          const value = focused && focused.value;
          const replacement = document.importNode(fresh, true);
          current.replaceWith(replacement);
          if (row) {
            const same = document.getElementById(row.id);
            const button = same && Array.from(same.querySelectorAll("button")).find(function (b) { return b.value === value; });
            if (button) button.focus();
          }
        }
      }
    } catch (e) {
      if (status) status.textContent = "Could not refresh the list; reload the page.";
    } finally {
      refreshing = false;
      if (again) { again = false; setTimeout(refresh, 500); }
    }
  }

  let delay = 1000;
  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + window.location.host + "/api/v1/ws");
    socket.addEventListener("open", function () {
      delay = 1000;
      if (status) status.textContent = "Live: new requests appear here as they come.";
      document.body.dataset.live = "on";
      // Anything asked between the page's rendering and now.
      refresh();
    });
    socket.addEventListener("message", function (event) {
      let frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      if (frame.type === "approval_required" || frame.type === "approval_decided") refresh();
    });
    socket.addEventListener("close", function () {
      document.body.dataset.live = "off";
      if (status) status.textContent = "Not live; reconnecting…";
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    });
  }
  connect();
})();
