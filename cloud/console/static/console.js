// Edgehouse console: the buttons of server-rendered pages call the JSON API, then the page reloads.
// Hand-written, no libraries, nothing fetched from elsewhere. The API checks every role again.
"use strict";

const Console = (() => {
  const HEADER = { "x-edgehouse-console": "1" };

  async function api(method, path, body) {
    const init = { method, credentials: "same-origin", headers: { ...HEADER } };
    if (body !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(path, init);
    const text = await resp.text();
    const doc = text ? JSON.parse(text) : null;
    if (!resp.ok) {
      const first = doc && doc.detail && doc.detail[0];
      const where = first && first.field ? `${first.field}: ` : "";
      throw new Error(`${resp.status} ${where}${first ? first.message : resp.statusText}`);
    }
    return doc;
  }

  function toast(message, bad) {
    const box = document.getElementById("toast");
    if (!box) return;
    const item = document.createElement("div");
    item.textContent = message;
    if (bad) item.className = "bad";
    box.appendChild(item);
    setTimeout(() => item.remove(), bad ? 9000 : 4000);
  }

  async function act(promise, done) {
    try {
      const result = await promise;
      if (done) toast(done);
      setTimeout(() => location.reload(), 300);
      return result;
    } catch (err) {
      toast(err.message, true);
      return null;
    }
  }

  function alarmPath(ref) {
    const cut = ref.indexOf("/");
    return `/api/v1/alarms/${encodeURIComponent(ref.slice(0, cut))}/${encodeURIComponent(ref.slice(cut + 1))}`;
  }

  function ask(dialogId, setup) {
    // Opens a <dialog> whose form closes it with the button's value; resolves with its form's data or null.
    const dialog = document.getElementById(dialogId);
    if (setup) setup(dialog);
    const form = dialog.querySelector("form");
    form.reset();
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => {
        resolve(dialog.returnValue === "ok" ? new FormData(form) : null);
      }, { once: true });
      dialog.returnValue = "";
      dialog.showModal();
    });
  }

  const actions = {
    async ack(el) {
      await act(api("POST", `${alarmPath(el.dataset.alarm)}/ack`), "acknowledged");
    },
    async "ack-selected"() {
      const refs = [...document.querySelectorAll("input[name=alarm]:checked")].map((box) => {
        const cut = box.value.indexOf("/");
        return { gateway_id: box.value.slice(0, cut), id: box.value.slice(cut + 1) };
      });
      if (!refs.length) { toast("select alarms first", true); return; }
      await act(api("POST", "/api/v1/alarms/ack", { alarms: refs }), `${refs.length} acknowledged`);
    },
    async shelve(el) {
      const data = await ask("shelve-dialog");
      if (!data) return;
      const body = { duration_s: parseInt(data.get("duration_s"), 10), reason: String(data.get("reason") || "").trim() };
      await act(api("POST", `${alarmPath(el.dataset.alarm)}/shelve`, body), "shelved");
    },
    async unshelve(el) {
      await act(api("POST", `${alarmPath(el.dataset.alarm)}/unshelve`), "back from the shelf");
    },
    async "cancel-job"(el) {
      if (!confirm("Cancel this route job? Its solver stops.")) return;
      await act(api("DELETE", `/api/v1/route-jobs/${encodeURIComponent(el.dataset.job)}`), "cancelled");
    },
    async rollout(el) {
      const op = el.dataset.op;
      const data = await ask("confirm-dialog", (dialog) => {
        dialog.querySelector("[data-title]").textContent = `${op[0].toUpperCase()}${op.slice(1)} rollout #${el.dataset.rollout}?`;
        dialog.querySelector("[data-what]").textContent = el.dataset.what || "";
      });
      if (!data) return;
      const reason = String(data.get("reason") || "").trim();
      await act(api("POST", `/api/v1/rollouts/${el.dataset.rollout}/${op}`, reason ? { reason } : undefined), `${op}: done`);
    },
  };

  function wire() {
    document.addEventListener("click", (event) => {
      const el = event.target.closest("[data-action]");
      if (el && actions[el.dataset.action]) {
        event.preventDefault();
        actions[el.dataset.action](el);
      }
      const all = event.target.closest("[data-select-all]");
      if (all) {
        document.querySelectorAll("input[name=alarm]").forEach((box) => { box.checked = all.checked; });
      }
    });
    // Filter forms leave their empty fields out of the URL ("any" is no parameter at all).
    document.querySelectorAll("form.filters[method=get]").forEach((form) => {
      form.addEventListener("submit", () => {
        [...form.elements].forEach((field) => { if (field.name && field.value === "") field.disabled = true; });
      });
    });
    document.querySelectorAll("form[data-form=comment]").forEach((form) => {
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const text = new FormData(form).get("text");
        act(api("POST", `${alarmPath(form.dataset.alarm)}/comments`, { text }), "comment added");
      });
    });
  }

  function pageData() {
    const el = document.getElementById("page-data");
    return el ? JSON.parse(el.textContent) : null;
  }

  document.addEventListener("DOMContentLoaded", wire);
  return { api, toast, act, pageData };
})();
