// crmkit reference UI: toasts, the live bell and reminder pop-ups (server-sent events),
// @mention suggestions, bulk-action inputs, the column chooser and forms posted once.
(function () {
  "use strict";
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
  window.crmkit = window.crmkit || {};

  function toast(text, kind) {
    const box = document.getElementById("toasts");
    if (!box) return;
    const item = document.createElement("div");
    item.className = "toast " + (kind || "ok");
    item.setAttribute("role", kind === "error" ? "alert" : "status");
    item.textContent = text;
    box.appendChild(item);
    setTimeout(() => item.remove(), kind === "error" ? 8000 : 4000);
  }
  window.crmkit.toast = toast;
  window.crmkit.csrf = csrf;
  document.body.addEventListener("crmkit:toast", (e) => toast(e.detail.text, e.detail.kind));

  // POST JSON with the CSRF header; resolves to {status, body}.
  window.crmkit.post = async function (url, data) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify(data),
      credentials: "same-origin",
    });
    let body = {};
    try { body = await response.json(); } catch (_) { /* not JSON */ }
    return { status: response.status, body: body };
  };

  // The bell and pop-ups: one EventSource per tab; the browser reconnects by itself.
  const liveUrl = document.body.dataset.live;
  if (liveUrl && window.EventSource) {
    const source = new EventSource(liveUrl);
    const count = document.getElementById("unread");
    source.addEventListener("notification", (event) => {
      // the stream's first message comes once the server listens for this user
      document.body.dataset.liveReady = "1";
      const data = JSON.parse(event.data);
      if (count) {
        count.textContent = data.unread;
        count.hidden = !data.unread;
      }
      if (data.id) {
        if (data.kind === "reminder") popup(data.kind_label, data.text, data.url);
        else toast(data.text);
      }
    });
    source.addEventListener("signed-out", () => { source.close(); window.location = "/login"; });
    // The contact center: a new or changed conversation refreshes the list and the tabs'
    // counts (not the reply being typed beside it); the server sends only "changed", the
    // list comes with this user's access rules applied.
    let inboxTimer = null;
    source.addEventListener("inbox", () => {
      if (!document.querySelector("[data-conversations]") || inboxTimer) return;
      inboxTimer = setTimeout(async () => {
        inboxTimer = null;
        const response = await fetch(window.location.href, { headers: { "X-Live": "inbox" } });
        if (!response.ok) return;
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = page.querySelector("[data-conversations]");
        const list = document.querySelector("[data-conversations]");
        if (fresh && list) list.innerHTML = fresh.innerHTML;
        // and the tabs' counts, which count what the list counts (its search included)
        page.querySelectorAll("[data-count]").forEach((count) => {
          const shown = document.querySelector(`[data-count="${count.dataset.count}"]`);
          if (shown) shown.textContent = count.textContent;
        });
      }, 300);
    });
    window.crmkit.live = source;
  }

  function popup(title, text, url) {
    const dialog = document.getElementById("popup");
    if (!dialog) return toast(text);
    document.getElementById("popup-title").textContent = title;
    document.getElementById("popup-text").textContent = text;
    document.getElementById("popup-link").href = url || "#";
    if (!dialog.open) dialog.showModal();
  }
  window.crmkit.popup = popup;
  document.addEventListener("click", (e) => {
    if (e.target.matches("[data-close]")) e.target.closest("dialog").close();
  });

  // @mentions: suggest colleagues' usernames while typing "@na…" in a note.
  document.querySelectorAll("textarea[data-mentions]").forEach((area) => {
    const names = JSON.parse(area.dataset.mentions || "[]");
    const menu = document.createElement("ul");
    menu.className = "mention-menu";
    menu.hidden = true;
    area.parentNode.style.position = "relative";
    area.parentNode.appendChild(menu);
    const word = () => {
      const before = area.value.slice(0, area.selectionStart);
      const match = before.match(/(^|\s)@([\w.+-]*)$/);
      return match ? match[2] : null;
    };
    const choose = (name) => {
      const caret = area.selectionStart;
      const before = area.value.slice(0, caret).replace(/@([\w.+-]*)$/, "@" + name + " ");
      area.value = before + area.value.slice(caret);
      area.selectionStart = area.selectionEnd = before.length;
      menu.hidden = true;
      area.focus();
    };
    area.addEventListener("input", () => {
      const typed = word();
      if (typed === null) { menu.hidden = true; return; }
      const found = names.filter((n) => n.toLowerCase().startsWith(typed.toLowerCase())).slice(0, 6);
      menu.replaceChildren(...found.map((n) => {
        const li = document.createElement("li");
        li.textContent = "@" + n;
        li.addEventListener("mousedown", (e) => { e.preventDefault(); choose(n); });
        return li;
      }));
      menu.hidden = !found.length;
      menu.style.top = area.offsetTop + area.offsetHeight + "px";
    });
    area.addEventListener("blur", () => setTimeout(() => { menu.hidden = true; }, 150));
  });

  // Bulk actions: show the input the chosen action needs; "select all" checkbox.
  document.querySelectorAll("[data-bulk-action]").forEach((select) => {
    const form = select.form;
    const sync = () => form.querySelectorAll("[data-for]").forEach((input) => {
      input.hidden = input.dataset.for !== select.value;
    });
    select.addEventListener("change", sync);
    sync();
  });
  document.querySelectorAll("[data-check-all]").forEach((box) => {
    box.addEventListener("change", () => {
      box.closest("form").querySelectorAll('input[name="ids"]').forEach((c) => { c.checked = box.checked; });
    });
  });
  // A form is posted once: a second submit while the page loads (a double click) is
  // dropped, and the button shows it is busy. The guard lifts after a few seconds (a
  // download keeps the page) and when the page comes back from the history. htmx forms
  // are htmx's own (their submit is already prevented here).
  document.addEventListener("submit", (e) => {
    const form = e.target;
    if (e.defaultPrevented || (form.getAttribute("method") || "").toLowerCase() !== "post") return;
    if (form.dataset.sent) { e.preventDefault(); return; }
    form.dataset.sent = "1";
    const button = e.submitter;
    if (button) button.setAttribute("aria-busy", "true");
    setTimeout(() => {
      delete form.dataset.sent;
      if (button) button.removeAttribute("aria-busy");
    }, 5000);
  });
  window.addEventListener("pageshow", () => {
    document.querySelectorAll("form[data-sent]").forEach((form) => { delete form.dataset.sent; });
    document.querySelectorAll('[aria-busy="true"]').forEach((b) => b.removeAttribute("aria-busy"));
  });
  // The contact center's templates: the one chosen is filled in for the client where the
  // reply's cursor is (what was typed, the copies and the files chosen stay); the words it
  // could not fill are named above the reply. Without scripts the form reloads the page.
  document.querySelectorAll("[data-template-choice]").forEach((form) => {
    const select = form.querySelector("select");
    const fill = async (e) => {
      if (e) e.preventDefault();
      if (!select.value) return;
      const url = form.action + "?" + new URLSearchParams(new FormData(form)).toString();
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) return toast(response.statusText, "error");
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      const area = document.querySelector('form.reply textarea[name="body"]');
      const filled = fresh.querySelector('form.reply textarea[name="body"]');
      if (!area || !filled) return;
      const problem = fresh.querySelector("form.reply [data-unfilled], form.reply .flash.error");
      document.querySelectorAll("form.reply [data-unfilled], form.reply .flash.error").forEach((n) => n.remove());
      if (problem) area.before(problem);
      if (filled.value) area.setRangeText(filled.value, area.selectionStart, area.selectionEnd, "end");
      area.focus();
      select.value = "";
    };
    form.addEventListener("submit", fill);
    select.addEventListener("change", () => fill());
  });
  // A wide table scrolls in its own box (.table-wrap). A phone shows no scrollbar until
  // the box is touched, so the box is marked where more columns wait, and its CSS fades
  // that edge: a cut-off column reads as "more this way", not as the table's end.
  function markScrolling(box) {
    const more = box.scrollWidth - box.clientWidth;
    box.classList.toggle("more-right", more > 1 && box.scrollLeft < more - 1);
    box.classList.toggle("more-left", more > 1 && box.scrollLeft > 1);
  }
  const markTables = () => document.querySelectorAll(".table-wrap").forEach(markScrolling);
  document.addEventListener("scroll", (e) => {
    if (e.target.classList && e.target.classList.contains("table-wrap")) markScrolling(e.target);
  }, true);
  window.addEventListener("resize", markTables);
  window.addEventListener("load", markTables);
  document.addEventListener("htmx:afterSettle", markTables);
  markTables();
  // Column chooser: checked boxes -> the "cols" parameter.
  document.querySelectorAll("input[data-columns]").forEach((hidden) => {
    hidden.form.addEventListener("submit", () => {
      hidden.value = Array.from(hidden.form.querySelectorAll("[data-column]:checked")).map((c) => c.value).join(",");
    });
  });
})();
