// Kanban boards: drag a card to another column; the server decides.  A refused move snaps the
// card back to where it was and shows why; a move that needs fields opens a small form first.
(function () {
  "use strict";
  function restore(item, from, index) {
    const sibling = from.children[index];
    from.insertBefore(item, sibling || null);
    item.classList.add("refused");
    setTimeout(() => item.classList.remove("refused"), 1200);
  }

  function askFields(reasons, fields, labels, choices) {
    const dialog = document.getElementById("move-form");
    if (!dialog) return Promise.resolve(null);
    dialog.querySelector(".reasons").textContent = reasons.join("; ");
    const inputs = dialog.querySelector(".inputs");
    // a move asking for fields takes a comment too: required when asked for, else optional
    const asked = fields.includes("comment") ? fields : [...fields, "comment"];
    inputs.replaceChildren(...asked.map((field) => {
      const label = document.createElement("label");
      label.textContent =
        labels[field] || (field === "comment" && dialog.dataset.commentLabel) || field;
      let input;
      if (choices[field]) {  // a choice field: its choices in a list
        input = document.createElement("select");
        input.append(new Option("—", ""), ...choices[field].map((c) => new Option(c, c)));
      } else {
        input = document.createElement(field === "comment" ? "textarea" : "input");
      }
      input.name = field;
      input.required = fields.includes(field);
      label.appendChild(input);
      return label;
    }));
    dialog.showModal();
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => {
        if (dialog.returnValue !== "move") return resolve(null);
        const values = {};
        inputs.querySelectorAll("[name]").forEach((i) => { values[i.name] = i.value; });
        resolve(values);
      }, { once: true });
    });
  }

  async function pipelineMove(board, event) {
    const item = event.item;
    const to = event.to.dataset.stage;
    let payload = { id: item.dataset.id, to: to, version: item.dataset.version };
    for (let attempt = 0; attempt < 3; attempt++) {
      const { status, body } = await window.crmkit.post(board.dataset.board, payload);
      if (status === 200 && body.moved) {
        item.dataset.version = body.version;
        return;
      }
      if (body.form && body.missing_fields && body.missing_fields.length) {
        const values = await askFields(
          body.reasons, body.missing_fields, body.labels || {}, body.choices || {});
        if (values) {
          payload = Object.assign({}, payload);
          for (const [key, value] of Object.entries(values)) {
            if (key === "comment") { if (value) payload.comment = value; }
            else payload["field." + key] = value;
          }
          continue;
        }
      }
      restore(item, event.from, event.oldIndex);
      window.crmkit.toast((body.reasons || ["refused"]).join("; "), "error");
      return;
    }
  }

  // whether the pointer was let go over the column the card was put in
  function releasedOver(event) {
    const pointer = event.originalEvent;
    if (!pointer || !("clientX" in pointer)) return true;
    const under = document.elementFromPoint(pointer.clientX, pointer.clientY);
    const column = under && under.closest("section.column");
    return !column || column === event.to.closest("section.column");
  }

  async function statusMove(event) {
    const item = event.item;
    const { status, body } = await window.crmkit.post(
      "/tasks/" + item.dataset.id + "/status", { status: event.to.dataset.stage });
    if (status !== 200) {
      restore(item, event.from, event.oldIndex);
      window.crmkit.toast(body.reason || "refused", "error");
    }
  }

  document.querySelectorAll(".board").forEach((board) => {
    if (board.hasAttribute("data-readonly") || !window.Sortable) return;
    board.querySelectorAll("ul.cards").forEach((list) => {
      window.Sortable.create(list, {
        // cards leave the column of removed stages but nothing is dropped into it
        group: list.hasAttribute("data-removed") ? { name: "board", put: false } : "board",
        animation: 150,
        forceFallback: true, // pointer events: the same on desktops, phones and in tests
        delay: 150,
        delayOnTouchOnly: true,
        // a pipeline card is dropped only on the stages the user may move it to
        onMove: (event) => {
          const allowed = event.dragged.dataset.targets;
          const to = event.to.dataset.stage;
          if (allowed === undefined || !to || event.to === event.from) return true;
          return allowed.split(" ").includes(to);
        },
        onEnd: (event) => {
          if (event.from === event.to) return;
          if (event.item.dataset.targets !== undefined && !releasedOver(event)) {
            // let go over a stage the card may not go to: it took the last one it passed
            restore(event.item, event.from, event.oldIndex);
            return;
          }
          if (board.dataset.board) pipelineMove(board, event);
          else if (board.hasAttribute("data-status-board")) statusMove(event);
        },
      });
    });
  });
})();
