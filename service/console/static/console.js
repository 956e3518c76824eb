// commentguard console: keyboard moderation of the queue. Loaded as a file (the CSP allows no
// inline script); the requests themselves are htmx attributes in the HTML.
//   j / k   next / previous comment        s   spam        h   not spam
//   u       undo your last decision        x   select for a bulk action
(function () {
  "use strict";

  function queue() { return document.getElementById("queue-items"); }

  function open() {
    var list = queue();
    return list ? Array.prototype.slice.call(list.querySelectorAll(".item:not(.decided)")) : [];
  }

  function current() {
    var list = queue();
    return list ? list.querySelector(".item.current") : null;
  }

  function select(item) {
    var before = current();
    if (before) { before.classList.remove("current"); before.removeAttribute("aria-current"); }
    if (!item) { return; }
    item.classList.add("current");
    item.setAttribute("aria-current", "true");
    item.focus({ preventScroll: true });
    item.scrollIntoView({ block: "nearest" });
  }

  // The next open item after `from` in document order (wrapping to the first), else null.
  function following(from, step) {
    var items = open();
    if (!items.length) { return null; }
    var all = Array.prototype.slice.call(queue().querySelectorAll(".item"));
    var at = from ? all.indexOf(from) : -1;
    for (var i = 1; i <= all.length; i++) {
      var candidate = all[(at + step * i + all.length * 2) % all.length];
      if (candidate && !candidate.classList.contains("decided") && candidate !== from) {
        return candidate;
      }
    }
    return null;
  }

  function move(step) {
    var item = current();
    var next = following(item, step);
    if (next) { select(next); } else if (!item && open().length) { select(open()[0]); }
  }

  function decide(action) {
    var item = current() || open()[0];
    if (!item || item.classList.contains("pending")) { return; }
    var button = item.querySelector('[data-action="' + action + '"]');
    if (!button) { return; }
    item.classList.add("pending");
    item.dataset.startedAt = String(performance.now());
    var next = following(item, 1);
    button.click();  // htmx sends it; the answer replaces the item with its decided row
    if (next && next !== item) { select(next); }
  }

  function undo() {
    var button = document.getElementById("undo");
    if (button && !button.disabled) { button.click(); }
  }

  function toggle() {
    var item = current();
    var box = item && item.querySelector('input[type="checkbox"]');
    if (box) { box.checked = !box.checked; }
  }

  function typing(target) {
    if (!target || !target.closest) { return false; }
    if (target.closest("textarea, select, [contenteditable]")) { return true; }
    var input = target.closest("input");
    return !!input && input.type !== "checkbox" && input.type !== "radio";
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target) || !queue()) {
      return;
    }
    var handlers = { j: function () { move(1); }, k: function () { move(-1); },
      s: function () { decide("spam"); }, h: function () { decide("ham"); },
      u: undo, x: toggle };
    var handler = handlers[event.key];
    if (handler) { event.preventDefault(); handler(); }
  });

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!target || !target.closest) { return; }
    var skip = target.closest('[data-action="skip"]');
    if (skip) {
      select(following(skip.closest(".item"), 1));
      return;
    }
    var item = target.closest(".queue .item:not(.decided)");
    if (item && item !== current() && !target.closest("a, button, input, label")) {
      select(item);
    }
  });

  function reloadIfDone() {
    var list = queue();
    if (!list || open().length || !window.htmx) { return; }
    var holder = document.getElementById("queue");
    if (holder && holder.dataset.reload) {
      window.htmx.ajax("GET", holder.dataset.reload, { target: "#queue", select: "#queue", swap: "outerHTML" });
    }
  }

  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail && event.detail.target;
    if (target && target.id === "queue") {
      select(open()[0]);
      return;
    }
    if (!current()) { select(open()[0]); }
    reloadIfDone();
  });

  // An undone decision brings its comment back: in place if its row is still on the page
  // (htmx swaps it out of band), else at the top of the queue.
  document.addEventListener("htmx:oobErrorNoTarget", function (event) {
    var content = event.detail && event.detail.content;
    var list = queue();
    if (content && list && content.classList && content.classList.contains("item")) {
      content.removeAttribute("hx-swap-oob");
      list.insertBefore(content, list.firstChild);
      if (window.htmx) { window.htmx.process(content); }
      select(content);
    }
  });

  document.addEventListener("htmx:oobAfterSwap", function (event) {
    var target = event.detail && event.detail.target;
    if (target && target.classList && target.classList.contains("item") &&
        !target.classList.contains("decided")) {
      select(target);
    }
  });

  function failed(event) {
    var source = event.detail && event.detail.elt;
    var item = source && source.closest ? source.closest(".item") : null;
    var status = event.detail && event.detail.xhr ? event.detail.xhr.status : 0;
    var message = "The request failed" + (status ? " (" + status + ")" : "") + ": try again.";
    if (status === 401) { window.location.assign("/console/login"); return; }
    if (event.detail && event.detail.xhr) {
      try {
        var body = JSON.parse(event.detail.xhr.responseText);
        if (body && body.error && body.error.message) { message = body.error.message; }
      } catch (ignored) { /* not JSON: keep the generic message */ }
    }
    var where = item || document.getElementById("queue-status");
    if (item) { item.classList.remove("pending"); item.classList.add("failed"); }
    if (where) {
      var note = where.querySelector(".error") || document.createElement("p");
      note.className = "error";
      note.setAttribute("role", "alert");
      note.textContent = message;  // text, never HTML
      if (!note.parentNode) { where.appendChild(note); }
    }
  }
  document.addEventListener("htmx:responseError", failed);
  document.addEventListener("htmx:sendError", failed);

  document.addEventListener("DOMContentLoaded", function () {
    if (queue() && !current()) { select(open()[0]); }
  });
})();
