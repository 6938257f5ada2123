// The rollout guard's parts of the admin rollout page: what it is doing and when it will
// decide (in the "Now" card), whether it can run at all, the "advance" button when a stage
// is ready (with the change card's reason), its latest evaluation in full and the earlier
// ones grouped into runs, and its plan (editable) with what a margin costs. Uses the admin
// token that admin-rollout.js keeps in sessionStorage. Fields the API may not send yet
// (eta, guard, marginCosts) are shown when present and left out when absent.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const tokenKey = window.AdminApi.TOKEN_KEY;
  const NUMBERS = [
    ["guard-min-stage", "minStageSeconds", "minimum time at each stage", true],
    ["guard-watch-hours", "watchHours", "watch at the last stage", false],
    ["guard-baseline-days", "baselineDays", "baseline days", false],
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

  // "verifiedCompletions" -> "verified completions"
  const words = (key) =>
    key.replace(/Seconds$/, "").replace(/([a-z])([A-Z0-9])/g, "$1 $2").replace(/_/g, " ").toLowerCase();

  // A figure as a person reads it, by what its name says it is: a time, a share (in percent,
  // or in points for a margin), or a count (a whole number: Prometheus' increase() is
  // extrapolated, "12.37 completions" is not a thing anyone saw).
  function figure(key, value) {
    if (value === null || value === undefined) return "–";
    if (typeof value !== "number") return show(value);
    if (/seconds$/i.test(key)) return value >= 1 ? Number(value.toFixed(2)) + " s" : Math.round(1000 * value) + " ms";
    if (/margin/i.test(key)) return points(value);
    if (/share|rate|confidence|^verified$|^legacy$/i.test(key)) return Number((100 * value).toFixed(2)) + "%";
    return Math.round(value).toLocaleString();
  }

  function points(share) {
    const value = Number((100 * share).toFixed(3));
    return value + (Math.abs(value) === 1 ? " point" : " points");
  }

  // "3 h 20 min", "12 min", "40 s"
  function duration(seconds) {
    if (seconds == null) return null;
    const s = Math.max(0, Math.round(seconds));
    if (s < 90) return s + " s";
    const minutes = Math.round(s / 60);
    if (minutes < 90) return minutes + " min";
    const hours = Math.floor(minutes / 60);
    if (hours < 48) return hours + " h" + (minutes % 60 ? " " + (minutes % 60) + " min" : "");
    return Math.round(hours / 24) + " days";
  }

  function node(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text != null) el.textContent = text;
    return el;
  }

  function figuresLine(check) {
    const shown = Object.entries(check.figures || {})
      .filter(([, v]) => v !== null && v !== undefined)
      .map(([k, v]) => words(k) + " " + figure(k, v));
    const needed = Object.entries(check.threshold || {})
      .filter(([k, v]) => k !== "paths" && v !== null && v !== undefined)
      .map(([k, v]) => words(k) + " " + figure(k, v));
    return shown.join(" · ") + (needed.length ? " (needed: " + needed.join(", ") + ")" : "");
  }

  function fillForm(p) {
    if (editing) return;
    $("guard-stages").value = p.stages.join(", ");
    NUMBERS.forEach(([id, key]) => ($(id).value = p[key]));
    FLAGS.forEach(([id, key]) => ($(id).checked = p[key]));
    $("guard-on-failure").value = p.onFailure;
  }

  function describe(p) {
    const mode = !p.enabled ? "off" : p.guard && !p.guard.running ? "on, but it cannot run" : "on";
    const state = p.paused ? "paused: nothing advances until you resume" : p.ready ? "ready: the next stage waits for your click" : p.autoAdvance ? "advances by itself" : "marks stages ready for you";
    return "Guard " + mode + " · " + state + ".";
  }

  // Why the guard can't run, and what it warns about (`guard`, when the API sends it).
  function showGuardHealth(p) {
    const g = p.guard;
    const cannot = g && !g.running ? g.reason || "the service did not say why" : null;
    const warnings = (g && g.warnings) || [];
    $("guard-cannot").hidden = !cannot && !warnings.length;
    $("guard-cannot-text").textContent = cannot ? "The guard cannot run: " + cannot : "";
    $("guard-cannot-text").hidden = !cannot;
    $("guard-warnings").replaceChildren(...warnings.map((w) => node("li", null, "Warning: " + w)));
  }

  // When the guard will decide, from the latest evaluation (`eta`, or `etaSeconds` alone).
  function etaText(e) {
    if (!e) return null;
    if (e.eta && e.eta.text) return e.eta.text;
    if (e.eta && e.eta.seconds == null && e.eta.reason) return "can't tell when it will decide: " + e.eta.reason;
    if (e.etaSeconds != null) return "decides in about " + duration(e.etaSeconds);
    return null;
  }

  function showEta(latest, p) {
    const text = p.stagePercentage === 0 ? null : etaText(latest);
    $("guard-eta").hidden = !text;
    $("guard-eta").textContent = text ? "When: " + text.charAt(0).toLowerCase() + text.slice(1) : "";
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

  // The watch at the last stage: a countdown, the baseline's figures beside the current
  // ones, and "complete" once it ended clean (`watch`, when the API sends it).
  function showWatch(p) {
    const w = p.watch;
    const shown = !!w && w.state !== "not_started";
    $("watch").hidden = !shown;
    if (!shown) return;
    let text = w.text;
    if (w.state === "watching" && w.endsAt) {
      const left = (Date.parse(w.endsAt) - Date.now()) / 1000;
      text = "Watching: " + duration(left) + " left of " + duration(w.lengthSeconds) + " (ends " + when(w.endsAt) + ")";
    }
    $("watch-text").textContent = text.charAt(0).toUpperCase() + text.slice(1);
    $("watch-retire").hidden = w.state !== "complete";
    $("watch-complete-row").hidden = w.state !== "over";
    const b = w.baseline;
    const c = w.current;
    $("watch-figures").hidden = !b && !c;
    const rate = (x) => (x && x.successRate != null ? figure("rate", x.successRate) : "–");
    const count = (x) => (x && x.completions != null ? figure("count", x.completions) : "–");
    const slow = (x) => (x && x.overBudgetShare != null ? figure("share", x.overBudgetShare) + " of " + figure("count", x.updates) : "–");
    $("watch-base-rate").textContent = rate(b);
    $("watch-now-rate").textContent = rate(c);
    $("watch-base-n").textContent = count(b);
    $("watch-now-n").textContent = count(c);
    $("watch-base-slow").textContent = slow(b);
    $("watch-now-slow").textContent = slow(c);
    $("watch-baseline").textContent = b
      ? "Baseline: the legacy path over the " + b.span + " before the move (" + when(b.start) + " – " + when(b.end) + "), from " +
        (b.source === "prometheus" ? "Prometheus" : "the guard's kept evaluations") + "." +
        (b.wholeDays ? "" : " Not whole days: the time of day is not averaged out.") +
        " A comparison across time, not side by side: the traffic mix may have changed since."
      : "";
  }

  // Back a stage: the person's decision after a pause (the watch's, say).
  function showBack(p) {
    const show = p.paused && p.stage > 0;
    $("guard-back-row").hidden = !show;
    if (show) $("guard-back").textContent = "Back to " + p.stages[p.stage - 1] + "%";
  }

  function showMarginCosts(p) {
    const costs = p.marginCosts || [];
    $("guard-margin-costs").hidden = !costs.length;
    $("guard-margin-costs-list").replaceChildren(
      ...costs.map((c) => {
        const item = node("li", null, c.text || "with a margin of " + points(c.margin) + ", " + (duration(c.etaSeconds) || "no estimate"));
        if (Math.abs(c.margin - p.successRateMargin) < 1e-9) item.append(node("strong", null, " (the plan's)"));
        return item;
      })
    );
  }

  // The requirements the latest evaluation has not met yet: each check not passed, with its
  // figures in view, and the stage's minimum time while it has not run.
  function unmet(e, p) {
    const items = e.checks
      .filter((c) => c.status !== "pass")
      .map((c) => {
        const item = node("li", "check-" + c.status);
        const head = node("p");
        const status = c.status.replace("_", " ");
        const found = c.detail.startsWith(status) ? c.detail : status + ": " + c.detail;
        head.append(node("strong", null, words(c.name)), " — " + found);
        item.append(head, node("p", "figures", figuresLine(c)));
        return item;
      });
    // The stage's time as it is now, not as it was at that look.
    const started = p.stageStartedAt ? Date.parse(p.stageStartedAt) : null;
    if (e.stage === p.stage && started !== null && p.minStageSeconds > 0 && e.percentage > 0) {
      const ran = (Date.now() - started) / 1000;
      if (ran < p.minStageSeconds) {
        const item = node("li", "check-time");
        const head = node("p");
        head.append(node("strong", null, "minimum time at this stage"), " — " + duration(ran) + " of " + duration(p.minStageSeconds) + " run");
        item.append(head, node("p", "figures", "still to run " + duration(p.minStageSeconds - ran)));
        items.push(item);
      }
    }
    return items;
  }

  function fillLatest(e, p) {
    const box = $("guard-latest");
    if (!e) {
      box.replaceChildren(node("p", "placeholder", "No evaluation yet."));
      return;
    }
    const head = node("p", "decision");
    head.append(
      node("strong", "decision-" + e.decision, e.decision + (e.acted ? " (acted)" : "")),
      " · " + when(e.at) + " · stage " + (e.stage + 1) + " (" + e.percentage + "%), window " + duration(e.windowSeconds)
    );
    const parts = [head, node("p", "why", "Why: " + e.reason)];
    if (e.note) parts.push(node("p", "note", "Note by " + e.notedBy + " (" + when(e.notedAt) + "): " + e.note));
    const form = node("form", "note-form");
    form.dataset.evaluation = e.id;
    const label = node("label", null, e.note ? "Change the note" : "Add a note (what happened, what was done)");
    label.htmlFor = "latest-note";
    const input = node("input");
    input.id = "latest-note";
    input.maxLength = 2000;
    input.required = true;
    form.append(label, input, node("button", null, "Keep the note"));
    form.querySelector("button").type = "submit";
    parts.push(form);
    const eta = etaText(e);
    if (eta) parts.push(node("p", "eta", "When: " + eta));
    const missing = unmet(e, p);
    if (missing.length) {
      parts.push(node("h4", null, "Not met yet"));
      const list = node("ul", "unmet");
      list.append(...missing);
      parts.push(list);
    }
    const met = e.checks.filter((c) => c.status === "pass");
    if (met.length) {
      const details = node("details", "met");
      details.append(node("summary", null, "Met: " + met.map((c) => words(c.name)).join(", ")));
      const list = node("ul");
      met.forEach((c) => list.append(node("li", null, words(c.name) + ": " + c.detail + " — " + figuresLine(c))));
      details.append(list);
      parts.push(details);
    }
    box.replaceChildren(...parts);
  }

  // Consecutive evaluations with the same decision at the same stage: one row each run,
  // with the latest look's "why"; the looks inside, collapsed.
  function runsOf(evaluations) {
    const runs = [];
    evaluations.forEach((e) => {
      const run = runs[runs.length - 1];
      if (run && run.decision === e.decision && run.stage === e.stage && run.percentage === e.percentage) run.looks.push(e);
      else runs.push({ decision: e.decision, stage: e.stage, percentage: e.percentage, looks: [e] });
    });
    return runs;
  }

  function fillEarlier(evaluations) {
    const list = $("guard-earlier");
    const runs = runsOf(evaluations);
    if (!runs.length) {
      list.replaceChildren(node("li", "placeholder", "None yet."));
      return;
    }
    list.replaceChildren(
      ...runs.map((run) => {
        const newest = run.looks[0];
        const oldest = run.looks[run.looks.length - 1];
        const item = node("li", "run");
        item.dataset.decision = run.decision;
        const details = node("details");
        const summary = node("summary");
        const span = run.looks.length > 1 ? when(oldest.at) + " – " + when(newest.at) : when(newest.at);
        summary.append(
          node("strong", "decision-" + run.decision, run.decision + (run.looks.length > 1 ? " (" + run.looks.length + " looks)" : "")),
          " · " + span + " · stage " + (run.stage + 1) + " (" + run.percentage + "%)"
        );
        details.append(summary, node("p", "why", "Why (latest): " + newest.reason));
        const noted = run.looks.filter((e) => e.note);
        noted.forEach((e) => details.append(node("p", "note", "Note by " + e.notedBy + ": " + e.note)));
        const looks = node("ol", "looks");
        run.looks.forEach((e) => {
          const eta = etaText(e);
          looks.append(node("li", null, when(e.at) + ": " + e.reason + (eta ? " — " + eta : "") + (e.note ? " — note by " + e.notedBy + ": " + e.note : "")));
        });
        details.append(looks);
        item.append(details);
        return item;
      })
    );
  }

  async function refresh() {
    if (!sessionStorage.getItem(tokenKey)) return;
    try {
      const [p, evaluations] = await Promise.all([call("GET", "/plan"), call("GET", "/evaluations?limit=200")]);
      const [latest, ...earlier] = evaluations.evaluations;
      $("guard-status").textContent = describe(p);
      showGuardHealth(p);
      showEta(latest, p);
      fillForm(p);
      showAdvance(p);
      showBack(p);
      showWatch(p);
      showMarginCosts(p);
      fillLatest(latest, p);
      fillEarlier(earlier);
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

  // Advancing or going back moves learners: both ask for the change card's reason, as every
  // change does, and send its note with it.
  async function moveStage(path, moved, failed) {
    const reason = $("reason").value.trim();
    if (!reason) {
      $("message").textContent = "Say why: the reason is kept in the history.";
      $("reason").focus();
      return;
    }
    const note = $("note").value.trim();
    try {
      const p = await call("POST", path, note ? { reason, note } : { reason });
      $("message").textContent = moved(p);
      $("reason").value = "";
      $("note").value = "";
      document.dispatchEvent(new CustomEvent("rollout:moved"));
    } catch (e) {
      $("message").textContent = failed + e.message;
    }
  }

  $("guard-advance").addEventListener("click", () =>
    moveStage(
      "/advance",
      (p) => "Advanced: the verified path now serves " + p.stagePercentage + "% of learners.",
      "Not advanced: ",
    ),
  );

  $("guard-back").addEventListener("click", () =>
    moveStage(
      "/back",
      (p) => "Back at " + p.stagePercentage + "%; the plan stays paused until you resume it.",
      "Not moved: ",
    ),
  );

  // The end of the watch by hand, with the change card's note saying why.
  $("watch-complete").addEventListener("click", async () => {
    const note = $("note").value.trim();
    if (!note) {
      $("message").textContent = "Say why in the note: it is kept with the guard's latest evaluation.";
      $("note").focus();
      return;
    }
    try {
      await call("POST", "/complete", { note });
      $("note").value = "";
      $("message").textContent = "The rollout is complete: the legacy path may be retired.";
      await refresh();
    } catch (e) {
      $("message").textContent = "Not complete: " + e.message;
    }
  });

  // A note on the latest decision (the end of the watch, a pause).
  $("guard-latest").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const note = form.querySelector("input").value.trim();
    if (!note) return;
    try {
      await call("PUT", "/evaluations/" + form.dataset.evaluation + "/note", { note });
      $("guard-message").textContent = "Note kept.";
      await refresh();
    } catch (e) {
      $("guard-message").textContent = "Note not kept: " + e.message;
    }
  });

  // admin-rollout.js keeps the token; pick it up once it has stored it, and follow each
  // change of the rollout it makes or sees.
  $("token-form").addEventListener("submit", () => setTimeout(refresh, 0));
  document.addEventListener("rollout:changed", refresh);

  refresh(); // then at each of admin-rollout.js's refreshes (every 15 s)
})();
