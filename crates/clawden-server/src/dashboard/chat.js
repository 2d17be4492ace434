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

  function element(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  }

  // A tool call of the assistant message `reply` belongs to: the tool's name and arguments.
  function addToolCall(reply, call) {
    const box = element("div", "tool-call");
    box.append(element("span", "hint", "calls "), element("code", "tool-name", call.name),
      element("pre", "arguments", JSON.stringify(call.arguments, null, 2)));
    reply.parentElement.append(box);
  }

  // A tool's result, folded like the server-rendered history.
  function addToolResult(result) {
    const li = element("li", "msg tool" + (result.is_error ? " failed" : ""));
    const details = element("details");
    const summary = element("summary");
    summary.append(element("span", "who", "tool result"), " ", element("code", "", result.tool));
    if (result.is_error) summary.append(" ", element("span", "badge bad", "error"));
    details.append(summary, element("pre", "output", result.content));
    li.append(details);
    list.append(li);
  }

  // The turn waits for an owner or admin: say so, with the way to the Approvals page.
  function addWaiting(approval) {
    const p = element("p", "notice waiting");
    p.setAttribute("role", "status");
    p.dataset.approval = approval.id;
    p.append("The agent waits for approval to run ", element("code", "", approval.tool), ". ");
    const link = element("a", "", "Decide on the Approvals page");
    link.href = form.dataset.approvals || "/agent/approvals";
    p.append(link, ".");
    list.after(p);
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
    let reply = add("assistant", "");
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
        if (name === "delta") {
          // Text after a tool's result is a new assistant message, as it is stored.
          if (!reply) reply = add("assistant", "");
          reply.textContent += payload.text;
        } else if (name === "tool_call") {
          if (!reply) reply = add("assistant", "");
          addToolCall(reply, payload);
        } else if (name === "approval_required") {
          addWaiting(payload);
          status.textContent = "Waiting for an owner's or admin's approval…";
        } else if (name === "tool_result") {
          for (const p of document.querySelectorAll("p.notice.waiting")) p.remove();
          addToolResult(payload);
          reply = null;
          status.textContent = "Working…";
        } else if (name === "done") {
          status.textContent = "";
          for (const p of document.querySelectorAll("p.notice.waiting")) p.remove();
        } else if (name === "error") status.textContent = payload.message;
      }
    }
  });
})();
