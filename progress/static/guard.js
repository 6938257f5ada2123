// The rollout guard's section of the admin rollout page: its plan (editable), its latest
// evaluations, and the "advance" button when a stage is ready. Uses the admin token that
// admin-rollout.js keeps in sessionStorage.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const tokenKey = window.AdminApi.TOKEN_KEY;
  const NUMBERS = [
    ["guard-min-stage", "minStageSeconds", "minimum time at each stage", true],
    ["guard-min-completions", "minCompletions", "completions needed", true],
    ["guard-min-access", "minAccessChecks", "access checks needed", true],
    ["guard-margin", "successRateMargin", "success rate margin", false],
    ["guard-p95", "p95BudgetSeconds", "cache update latency budget", false],
    ["guard-latency-margin", "latencyMargin", "latency margin", false],
    ["guard-false-rollback", "falseRollbackRate", "tolerated false-rollback rate", false],
  ];
  const FLAGS = [
    ["guard-auto", "autoAdvance"],
    ["guard-enabled", "enabled"],
    ["guard-paused", "paused"],
  ];
  let editing = false; // never overwrite what someone is typing

  // The guard's routes live under /api/v1/admin/rollout.
  const call = (method, path, body) => window.AdminApi.call(method, "/rollout" + path, body);

  function when(iso) {
    return iso ? new Date(iso).toLocaleString() : "never";
  }

  function show(value) {
    if (value === null || value === undefined) return "–";
    if (Array.isArray(value)) return value.join(", ");
    return String(value);
  }

  function pairs(object) {
    return Object.entries(object || {}).map(([k, v]) => k + " " + show(v)).join(", ") || "–";
  }

  function fillForm(p) {
    if (editing) return;
    $("guard-stages").value = p.stages.join(", ");
    NUMBERS.forEach(([id, key]) => ($(id).value = p[key]));
    FLAGS.forEach(([id, key]) => ($(id).checked = p[key]));
    $("guard-on-failure").value = p.onFailure;
  }

  function describe(p) {
    const since = p.stageStartedAt ? " since " + when(p.stageStartedAt) : "";
    const stage = "Stage " + (p.stage + 1) + " of " + p.stages.length + " (" + show(p.stagePercentage) + "%)" + since;
    const mode = p.enabled ? "guard on" : "guard off";
    const state = p.paused ? "paused: nothing advances until you resume" : p.ready ? "ready: the next stage waits for your click" : p.autoAdvance ? "advances by itself" : "marks stages ready for you";
    return stage + " · " + mode + " · " + state + ".";
  }

  function showAdvance(p) {
    const last = p.stage + 1 >= p.stages.length;
    const canAdvance = !p.paused && !last && (p.ready || p.stagePercentage === 0);
    $("guard-advance-row").hidden = !canAdvance;
    if (canAdvance) {
      const next = p.stages[p.stage + 1];
      $("guard-advance").textContent = "Advance to " + next + "%";
      $("guard-advance-help").textContent = p.ready
        ? "Every check passed for the stage's time."
        : "At 0% there is nothing to judge: starting is your call.";
    }
  }

  function checksList(checks) {
    const list = document.createElement("ul");
    checks.forEach((c) => {
      const item = document.createElement("li");
      const status = document.createElement("strong");
      status.textContent = c.status.replace("_", " ");
      // What the check found, in words; the raw figures are one hover away.
      item.append(c.name.replace(/_/g, " ") + ": ", status, " — " + c.detail);
      item.title = pairs(c.figures) + " (threshold: " + pairs(c.threshold) + ")";
      list.appendChild(item);
    });
    return list;
  }

  function fillEvaluations(evaluations) {
    const body = $("guard-evaluations").querySelector("tbody");
    body.replaceChildren();
    if (!evaluations.length) {
      const row = body.insertRow();
      const cell = row.insertCell();
      cell.colSpan = 5;
      cell.textContent = "No evaluation yet.";
      return;
    }
    evaluations.forEach((e) => {
      const row = body.insertRow();
      row.insertCell().textContent = when(e.at);
      row.insertCell().textContent = e.stage + 1 + " (" + e.percentage + "%), window " + e.windowSeconds + " s";
      row.insertCell().textContent = e.decision + (e.acted ? " (acted)" : "");
      row.insertCell().textContent = e.reason;
      row.insertCell().appendChild(checksList(e.checks));
    });
  }

  async function refresh() {
    if (!sessionStorage.getItem(tokenKey)) return;
    try {
      const [p, evaluations] = await Promise.all([call("GET", "/plan"), call("GET", "/evaluations?limit=10")]);
      $("guard-status").textContent = describe(p);
      fillForm(p);
      showAdvance(p);
      fillEvaluations(evaluations.evaluations);
    } catch (error) {
      if (error.status !== 401 && error.status !== 403) {
        $("guard-message").textContent = "Could not load the guard: " + error.message;
      }
    }
  }

  function readForm() {
    const stages = $("guard-stages").value.split(",").map((s) => s.trim()).filter((s) => s !== "");
    if (!stages.length || stages.some((s) => !/^\d{1,3}$/.test(s))) {
      return { error: "Stages are whole percentages separated by commas, e.g. 0, 10, 100.", field: "guard-stages" };
    }
    const body = { stages: stages.map(Number), onFailure: $("guard-on-failure").value };
    for (const [id, key, label, whole] of NUMBERS) {
      const raw = $(id).value.trim();
      const value = Number(raw);
      if (raw === "" || !Number.isFinite(value) || value < 0 || (whole && !Number.isInteger(value))) {
        return { error: "Enter a " + (whole ? "whole " : "") + "number for the " + label + ".", field: id };
      }
      body[key] = value;
    }
    FLAGS.forEach(([id, key]) => (body[key] = $(id).checked));
    return { body };
  }

  $("guard-plan").addEventListener("focusin", () => (editing = true));
  $("guard-plan").addEventListener("focusout", (event) => {
    if (!$("guard-plan").contains(event.relatedTarget)) editing = false;
  });

  $("guard-plan").addEventListener("submit", async (event) => {
    event.preventDefault();
    const { body, error, field } = readForm();
    if (error) {
      $("guard-message").textContent = error;
      $(field).focus();
      return;
    }
    try {
      const saved = await call("PUT", "/plan", body);
      editing = false;
      $("guard-message").textContent = "Plan saved.";
      fillForm(saved);
      await refresh();
    } catch (e) {
      $("guard-message").textContent = "Not saved: " + e.message;
    }
  });

  $("guard-advance").addEventListener("click", async () => {
    try {
      const p = await call("POST", "/advance");
      $("guard-message").textContent = "Advanced: the verified path now serves " + p.stagePercentage + "% of learners.";
      await refresh();
    } catch (e) {
      $("guard-message").textContent = "Not advanced: " + e.message;
    }
  });

  // admin-rollout.js keeps the token; pick it up once it has stored it, and follow each
  // change of the rollout it makes or sees.
  $("token-form").addEventListener("submit", () => setTimeout(refresh, 0));
  document.addEventListener("rollout:changed", refresh);

  refresh(); // then at each of admin-rollout.js's refreshes (every 15 s)
})();
