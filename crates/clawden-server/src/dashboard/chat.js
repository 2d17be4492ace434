// Streams the agent's reply into the chat page. Without this script the form posts and the
// page reloads with the reply; with it, the reply appears as it is written.
"use strict";
(function () {
  const form = document.getElementById("send");
  const list = document.getElementById("messages");
  const status = document.getElementById("status");
  if (!form || !list || !window.fetch || !window.TextDecoder) return;

  function add(role, text) {
    const li = document.createElement("li");
    li.className = "msg " + role;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = role;
    const body = document.createElement("div");
    body.className = "text";
    body.textContent = text;
    li.append(who, body);
    list.append(li);
    return body;
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const box = form.querySelector("textarea");
    const content = box.value;
    if (!content.trim()) return;
    const csrf = form.querySelector("input[name=csrf_token]").value;
    status.textContent = "Sending…";
    const response = await fetch(form.dataset.api, {
      method: "POST",
      headers: { "content-type": "application/json", "accept": "text/event-stream", "x-csrf-token": csrf },
      body: JSON.stringify({ content: content }),
      credentials: "same-origin",
    });
    if (!response.ok) {
      let message = "The message was not sent.";
      try { message = (await response.json()).error.message; } catch (e) { /* keep the default */ }
      status.textContent = message;
      return;
    }
    box.value = "";
    add("user", content);
    const reply = add("assistant", "");
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let name = "message";
        let data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) name = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        if (!data) continue;
        const payload = JSON.parse(data);
        if (name === "delta") reply.textContent += payload.text;
        else if (name === "done") status.textContent = "";
        else if (name === "error") status.textContent = payload.message;
      }
    }
  });
})();
