// The ZSM desk's screen. Every value from the services is put in the page with textContent or
// as an attribute value, never as HTML. No inline script: the CSP allows only this file.
"use strict";

(function () {
  const desk = document.getElementById("desk");
  if (!desk) return;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const pollMs = Number(desk.dataset.pollMs) || 2000;
  const acts = desk.dataset.acts === "1";
  const list = document.getElementById("entries");
  const requests = document.getElementById("requests");
  const overdueOnly = document.getElementById("overdue-only");
  const statusLine = document.getElementById("status");
  const entries = new Map(); // name -> {data, li, lookup}

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return node;
  }

  function say(text, isError) {
    statusLine.textContent = text;
    statusLine.className = isError ? "error" : "";
  }

  async function call(method, url, body) {
    const options = { method, credentials: "same-origin", headers: {} };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.headers["X-CSRF-Token"] = csrf;
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url, options);
    if (response.status === 401) {
      window.location.assign("/signin");
      throw new Error("signed out");
    }
    const data = await response.json();
    if (!response.ok) {
      const fields = (data.fields || []).map((f) => f.field + ": " + f.problem).join("; ");
      const head = data.error + (data.reason ? " (" + data.reason + ")" : "");
      throw new Error(head + ": " + (fields || data.message || ""));
    }
    return data;
  }

  // -- a suspect's look-up ---------------------------------------------------------------------

  // One line per reason and citation, naming its fields: "withheld (outside your covenant's
  // region) [midden-nederland@v1 kpc-intake]: advice".
  function withheldList(items) {
    const groups = new Map();
    for (const w of items) {
      const cite = w.covenant ? " [" + w.covenant + (w.grant ? " " + w.grant : "") + "]" : "";
      const key = w.reason + cite;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(w.field);
    }
    const ul = el("ul", { class: "withheld" });
    for (const [why, fields] of groups) {
      ul.append(el("li", { class: "withheld-item", "data-fields": fields.join(" "),
        text: "withheld (" + why + "): " + fields.join(", ") }));
    }
    return ul;
  }

  function fact(dl, term, value, cls) {
    if (!value) return;
    dl.append(el("dt", { text: term }), el("dd", { class: cls || null, text: value }));
  }

  function renderLookup(item) {
    const box = item.li.querySelector(".lookup");
    box.replaceChildren();
    const r = item.lookup;
    if (r.error) {
      box.append(el("p", { class: "error", text: "Look-up refused: " + r.error }));
      return;
    }
    let verdict = r.outcome;
    if (r.outcome === "HIT") {
      const n = r.houses.length;
      verdict += ": known at " + n + " Safety House" + (n > 1 ? "s" : "") + " (match: " + r.match + ")";
    } else if (r.outcome === "NO HIT") verdict += ": not known at any Safety House";
    else if (r.outcome === "WITHHELD") verdict += ": known, but no covenant lets you see where";
    else if (r.outcome === "MINOR AT INTAKE") verdict += ": nothing of the houses is shown for a minor at intake";
    box.append(el("p", { class: "verdict verdict-" + r.outcome.replace(/ /g, "-").toLowerCase(), text: verdict }),
      el("p", { class: "logged", text: "access log entry " + r.access_log_entry }));
    for (const m of r.markers) {
      const section = el("section", { class: "house", "data-house": m.house });
      section.append(el("h4", { text: m.house_display_name + (m.region ? " [" + m.region + "]" : "") }));
      const dl = el("dl");
      fact(dl, "target group", m.target_group);
      fact(dl, "plan", m.plan_status);
      fact(dl, "marked", m.mark_date);
      if (m.advice) {
        fact(dl, "advice", m.advice.freshness + (m.advice.date ? " (" + m.advice.date + ")" : ""), "freshness freshness-" + m.advice.freshness.toLowerCase());
        fact(dl, "advice text", m.advice.text, "advice-text");
      }
      for (const [k, v] of Object.entries(m.at_information)) fact(dl, "A&T " + k, v, "at");
      if (m.contact) {
        fact(dl, "contact", m.contact.role + " <" + m.contact.email + ">");
        fact(dl, "call now", m.contact.call_now_phone || m.contact.phone);
        fact(dl, "office", m.contact.phone + (m.contact.office_hours ? " (" + m.contact.office_hours + ")" : ""));
        fact(dl, "after hours", m.contact.after_hours_phone);
      }
      section.append(dl);
      if (m.withheld.length) section.append(withheldList(m.withheld));
      box.append(section);
    }
    if (r.withheld.length) {
      box.append(el("p", { text: r.withheld.length + " more marker(s) withheld:" }), withheldList(r.withheld));
    }
    renderForms(item);
  }

  async function lookUp(item) {
    if (!item.data.open) return;
    try {
      item.lookup = await call("GET", "/api/lookup?entry=" + encodeURIComponent(item.data.name));
    } catch (error) {
      item.lookup = { error: error.message };
    }
    renderLookup(item);
  }

  // -- forms -----------------------------------------------------------------------------------

  const CODES = ["dagvaarding", "strafbeschikking", "voorwaardelijk-sepot", "sepot", "transactie",
    "voorgeleiding", "overdracht-backoffice", "halt", "reprimande", "tom-zitting", "technisch-sepot-01"];

  function select(name, label, options, id) {
    const s = el("select", { name, id });
    for (const o of options) s.append(el("option", { value: o, text: o }));
    return el("label", { for: id }, label + " ", s);
  }

  function adviceLines(item, form) {
    const houses = (item.lookup && item.lookup.needs_line) || [];
    const names = {};
    for (const m of (item.lookup && item.lookup.markers) || []) names[m.house] = m.house_display_name;
    houses.forEach((house, i) => {
      const id = item.key + "-l" + i;
      const fs = el("fieldset", { class: "line", "data-house": house },
        el("legend", { text: "Advice of " + (names[house] || house) }));
      const followed = el("input", { type: "radio", name: id, value: "followed", id: id + "-f", required: true });
      const deviated = el("input", { type: "radio", name: id, value: "not-followed", id: id + "-n" });
      const reason = el("input", { type: "text", name: id + "-reason", id: id + "-r", maxlength: 2000, class: "reason",
        "aria-label": "Why not followed (" + (names[house] || house) + ")" });
      fs.append(el("label", { for: id + "-f" }, followed, " followed"),
        el("label", { for: id + "-n" }, deviated, " not followed, because: "), reason);
      form.append(fs);
    });
    return houses;
  }

  function collectLines(form, item, houses) {
    return houses.map((house, i) => {
      const id = item.key + "-l" + i;
      const chosen = form.querySelector('input[name="' + id + '"]:checked');
      return { house, followed: chosen ? chosen.value : "", reason: form.querySelector("#" + id + "-r").value };
    });
  }

  function decisionForm(item) {
    const d = item.data;
    const form = el("form", { class: d.held_decision ? "decision held" : "decision" });
    const id = item.key;
    if (d.held_decision) {
      const h = d.held_decision;
      form.append(el("p", { class: "held-note", text: "Held by the inflow adapter: " + h.code +
        (h.sepot_code ? " " + h.sepot_code : "") + " (" + h.stage + ")" + (h.problem ? ", because " + h.problem : "") +
        ". Record it with what is missing:" }));
    } else {
      form.append(select("code", "Decision", CODES, id + "-code"),
        select("stage", "Stage", ["final", "routing"], id + "-stage"),
        el("label", { for: id + "-sepot" }, "Sepot code ",
          el("input", { id: id + "-sepot", name: "sepot_code", size: 3, maxlength: 2, pattern: "[0-9]{2}" })),
        el("label", { for: id + "-prob" }, el("input", { type: "checkbox", id: id + "-prob", name: "probation" }),
          " probation report requested"));
    }
    const houses = adviceLines(item, form);
    form.append(el("button", { type: "submit", text: d.held_decision ? "Record held decision" : "Record decision" }),
      el("p", { class: "result", role: "status" }));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = { entry: d.name, held: !!d.held_decision, lines: collectLines(form, item, houses) };
      if (!d.held_decision) {
        body.code = form.elements.code.value;
        body.stage = form.elements.stage.value;
        body.sepot_code = form.elements.sepot_code.value;
        body.probation_report_requested = form.elements.probation.checked;
      }
      const result = form.querySelector(".result");
      try {
        const done = await call("POST", "/api/decision", body);
        const sent = done.items.map((i) => i.kind + " to " + i.house).join(", ");
        result.textContent = (done.name || "technisch sepot 01") + " recorded" + (sent ? "; " + sent : "");
        result.className = "result ok";
        say("Decision recorded for " + d.case_reference);
        poll();
      } catch (error) {
        result.textContent = "Not recorded: " + error.message;
        result.className = "result error";
      }
    });
    return form;
  }

  function adviceForm(item) {
    const markers = (item.lookup && item.lookup.markers) || [];
    if (!markers.length) return null;
    const id = item.key + "-adv";
    const form = el("form", { class: "ask" });
    const houses = markers.map((m) => ({ value: m.house, label: m.house_display_name }));
    const s = el("select", { name: "house", id: id + "-house" });
    for (const h of houses) s.append(el("option", { value: h.value, text: h.label }));
    form.append(el("label", { for: id + "-house" }, "Ask advice of ", s),
      el("label", { for: id + "-hours" }, "within (hours) ",
        el("input", { type: "number", min: 1, max: 168, value: 4, name: "hours", id: id + "-hours" })),
      el("label", { for: id + "-q" }, "question ",
        el("input", { type: "text", name: "question", id: id + "-q", maxlength: 500, required: true })),
      el("button", { type: "submit", text: "Request advice" }),
      el("p", { class: "result", role: "status" }));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const result = form.querySelector(".result");
      try {
        const r = await call("POST", "/api/advice", { entry: item.data.name, house: form.elements.house.value,
          hours: Number(form.elements.hours.value), question: form.elements.question.value });
        result.textContent = r.name + " " + r.state + ", due " + r.due_time;
        result.className = "result ok";
        pollAdvice();
      } catch (error) {
        result.textContent = "Not requested: " + error.message;
        result.className = "result error";
      }
    });
    return form;
  }

  function renderForms(item) {
    const box = item.li.querySelector(".forms");
    box.replaceChildren();
    const d = item.data;
    if (!acts || !d.open || !item.lookup || item.lookup.error) return;
    if (d.decision && !d.held_decision && d.decision_stage === "final") return;
    const details = el("details", { class: "decide", open: d.held_decision ? true : null },
      el("summary", { text: d.held_decision ? "Held decision: record it" : "Record a decision" }), decisionForm(item));
    box.append(details);
    const ask = adviceForm(item);
    if (ask) box.append(el("details", { class: "advise" }, el("summary", { text: "Request advice" }), ask));
  }

  // -- the inflow ------------------------------------------------------------------------------

  function summary(d) {
    const parts = [d.arrest_time, d.subject_age, d.offence_category].filter(Boolean);
    return parts.join(" · ");
  }

  function stateText(d) {
    if (d.held_decision) return "decision held: a reason is missing";
    if (d.decision) return "decided (" + d.decision_stage + ")" + (d.open ? "" : "; no longer shown");
    if (d.checked_time) return "checked " + d.checked_time + (d.known ? ", known" : ", not known");
    return "not checked yet";
  }

  function renderHead(item) {
    const d = item.data;
    const head = item.li.querySelector(".head");
    head.replaceChildren(el("h3", { text: d.case_reference }), el("p", { class: "when", text: summary(d) }),
      el("p", { class: "state", text: stateText(d) }));
    const again = el("button", { type: "button", class: "again", text: "Look up again" });
    again.addEventListener("click", () => lookUp(item));
    if (d.open) head.append(again);
  }

  function create(d, index) {
    const key = "e" + index + "-" + d.name.replace(/[^A-Za-z0-9]/g, "");
    const li = el("li", { class: "entry", "data-name": d.name, tabindex: -1, id: key },
      el("div", { class: "head" }), el("div", { class: "lookup" }), el("div", { class: "forms" }));
    return { data: d, li, lookup: null, key };
  }

  let counter = 0;
  async function poll() {
    let data;
    try {
      data = await call("GET", "/api/inflow");
    } catch (error) {
      say("Inflow not updated: " + error.message, true);
      return;
    }
    const seen = [];
    for (const d of data.entries) {
      let item = entries.get(d.name);
      if (!item) {
        item = create(d, counter++);
        entries.set(d.name, item);
        renderHead(item);
        lookUp(item);
      } else {
        const changed = JSON.stringify(item.data) !== JSON.stringify(d);
        item.data = d;
        if (changed) {
          renderHead(item);
          if (!item.li.contains(document.activeElement)) renderForms(item);
        }
      }
      seen.push(item.li);
    }
    // Newest first, as listed; an element keeps its focus when it is not moved.
    seen.forEach((li, i) => {
      if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
    });
    while (list.children.length > seen.length) list.lastChild.remove();
    desk.dataset.polled = String(Number(desk.dataset.polled || 0) + 1);
    if (!data.entries.length) say("No inflow in the last 24 hours.");
  }

  async function pollAdvice() {
    let data;
    try {
      data = await call("GET", "/api/advice?overdue=" + (overdueOnly.checked ? "1" : "0"));
    } catch (error) {
      say("Advice requests not updated: " + error.message, true);
      return;
    }
    const items = data.advice_requests.map((r) => {
      const li = el("li", { class: "request state-" + r.state, "data-name": r.name },
        el("strong", { text: r.state }), " " + r.case_reference + " · " + r.house.replace("houses/", "") +
        " · due " + r.due_time);
      if (r.state === "open") {
        const cancel = el("button", { type: "button", text: "Cancel" });
        cancel.addEventListener("click", async () => {
          try {
            await call("POST", "/api/advice/cancel", { name: r.name });
            say("Cancelled " + r.name);
          } catch (error) {
            say("Not cancelled: " + error.message, true);
          }
          pollAdvice();
        });
        li.append(" ", cancel);
      }
      return li;
    });
    if (!requests.contains(document.activeElement)) requests.replaceChildren(...items);
    desk.dataset.advicePolled = String(Number(desk.dataset.advicePolled || 0) + 1);
  }

  if (acts) overdueOnly.addEventListener("change", pollAdvice);

  // j / k: the next / previous suspect, when not typing.
  document.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const t = event.target;
    if (t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement) return;
    if (event.key !== "j" && event.key !== "k") return;
    const all = Array.from(list.children);
    const at = all.findIndex((li) => li.contains(document.activeElement));
    const next = event.key === "j" ? Math.min(at + 1, all.length - 1) : Math.max(at - 1, 0);
    if (all[next]) all[next].focus();
    event.preventDefault();
  });

  poll();
  setInterval(poll, pollMs);
  if (acts) {
    pollAdvice();
    setInterval(pollAdvice, pollMs * 3);
  }
})();
