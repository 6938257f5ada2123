// The admin rollout page: reads and changes the rollout through /api/v1/admin. A move up that
// skips a stage of the plan asks first, saying how many learners change path; a move down
// (back towards the legacy path) never asks, and "Roll back to 0%" is one step.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = window.AdminApi.TOKEN_KEY;
  const call = window.AdminApi.call;
  let current = null; // {percentage, plan}

  function signedIn(yes) {
    $("signin").hidden = yes;
    $("account").hidden = !yes;
    if (yes) $("token-error").textContent = "";
  }

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
  }

  function placeholder(body, columns, text) {
    body.replaceChildren();
    const td = body.insertRow().insertCell();
    td.colSpan = columns;
    td.className = "placeholder";
    td.textContent = text;
  }

  function when(iso) {
    return iso ? new Date(iso).toLocaleString() : "never";
  }

  const FIGURES = [
    ["completions", "completions", (v) => v],
    ["completionSuccessRate", "completion success rate", (v) => (v == null ? "–" : (100 * v).toFixed(2) + "%")],
    ["falseLockScreens", "false lock screens", (v) => v],
    ["stalenessIncidents", "staleness incidents", (v) => v],
    ["cacheHitRate", "cache hit rate", (v) => (v == null ? "–" : (100 * v).toFixed(1) + "%")],
    ["cacheMismatches", "cache mismatches", (v) => v],
    ["accessChecks", "access checks", (v) => v],
  ];

  // Where the rollout really is: the plan's stage when the percentage is one of its stages.
  function describeStage(percentage, plan) {
    const index = plan.stages.indexOf(percentage);
    if (index < 0) {
      return percentage + "% is between the plan's stages (" + plan.stages.join("%, ") + "%).";
    }
    const since = plan.stageStartedAt ? " since " + when(plan.stageStartedAt) : "";
    return "Stage " + (index + 1) + " of " + plan.stages.length + " (" + percentage + "%)" + since + ".";
  }

  function fillHistory(changes) {
    const body = $("history").querySelector("tbody");
    if (!changes.length) {
      placeholder(body, 4, "No change yet: every learner is on the legacy path.");
      return;
    }
    body.replaceChildren();
    changes.forEach((c) => {
      const row = body.insertRow();
      cell(row, when(c.changedAt));
      cell(row, (c.previousPercentage == null ? "?" : c.previousPercentage) + "% → " + c.percentage + "%");
      cell(row, c.changedBy);
      cell(row, c.reason);
    });
  }

  function fillFigures(figures) {
    const body = $("figures").querySelector("tbody");
    body.replaceChildren();
    FIGURES.forEach(([key, label, show]) => {
      const row = body.insertRow();
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = label;
      row.appendChild(th);
      cell(row, show(figures.legacy[key]));
      cell(row, show(figures.verified[key]));
    });
  }

  async function refresh() {
    if (!sessionStorage.getItem(TOKEN_KEY)) return;
    try {
      const [state, history, figures, plan] = await Promise.all([
        call("GET", "/rollout"),
        call("GET", "/rollout/history"),
        call("GET", "/paths"),
        call("GET", "/rollout/plan"),
      ]);
      current = { percentage: state.percentage, plan };
      $("percentage").textContent = state.percentage;
      $("stage-now").textContent = describeStage(state.percentage, plan);
      $("updated").textContent = state.updatedBy
        ? "Last changed " + when(state.updatedAt) + " by " + state.updatedBy
        : "Never changed: every learner is on the legacy path.";
      document.querySelectorAll("[data-stage]").forEach((b) => {
        b.setAttribute("aria-pressed", String(Number(b.dataset.stage) === state.percentage));
      });
      $("rollback-row").hidden = state.percentage === 0;
      fillHistory(history.changes);
      fillFigures(figures);
      signedIn(true);
      document.dispatchEvent(new CustomEvent("rollout:changed"));
    } catch (error) {
      if (error.status === 401 || error.status === 403) {
        // Said next to the token field, where the person just pasted it.
        sessionStorage.removeItem(TOKEN_KEY);
        signedIn(false);
        $("token-error").textContent =
          (error.status === 403 ? "This token has no admin role: " : "This token was refused: ") + error.message;
        $("token").focus();
        return;
      }
      $("message").textContent = "Could not load the rollout: " + error.message;
    }
  }

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    $("token-error").textContent = "";
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    refresh();
  });

  // The plan's stages strictly between two percentages that a move up would skip. A move
  // down sends learners back to the path they had: it never asks.
  function skipped(from, to) {
    return current && to > from ? current.plan.stages.filter((s) => s > from && s < to) : [];
  }

  function confirmMove(from, to, skips, impact) {
    const who = impact.moving === 1 ? "1 learner moves" : impact.moving.toLocaleString() + " learners move";
    const of = impact.exact ? " of " : " (an estimate) of ";
    $("confirm-text").textContent =
      "Moving from " + from + "% to " + to + "% skips the " + skips.join("% and ") + "% stage" +
      (skips.length > 1 ? "s" : "") + ": " + who + of + impact.learners.toLocaleString() +
      " known learners to the " + impact.toPath + " path at once.";
    $("confirm-yes").textContent = "Move " + impact.moving.toLocaleString() + (impact.moving === 1 ? " learner" : " learners");
    const dialog = $("confirm-move");
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "move"), { once: true });
      dialog.returnValue = "cancel";
      dialog.showModal();
    });
  }

  async function change(percentage) {
    if (!Number.isInteger(percentage) || percentage < 0 || percentage > 100) {
      $("message").textContent = "Enter a whole number from 0 to 100, or pick a stage.";
      $("custom").focus();
      return;
    }
    const reason = $("reason").value.trim();
    if (!reason) {
      $("message").textContent = "Say why: the reason is kept in the history.";
      $("reason").focus();
      return;
    }
    try {
      if (current) {
        const skips = skipped(current.percentage, percentage);
        if (skips.length) {
          const impact = await call("GET", "/rollout/impact?percentage=" + percentage);
          if (!(await confirmMove(current.percentage, percentage, skips, impact))) {
            $("message").textContent = "Not changed.";
            return;
          }
        }
      }
      const note = $("note").value.trim();
      const state = await call("PUT", "/rollout", note ? { percentage, reason, note } : { percentage, reason });
      $("note").value = "";
      $("message").textContent =
        state.percentage === 0
          ? "Rolled back: every learner is on the legacy path (0%)."
          : "The verified path now serves " + state.percentage + "% of learners.";
      $("reason").value = "";
      $("custom").value = "";
      await refresh();
    } catch (error) {
      $("message").textContent = "Not changed: " + error.message;
    }
  }

  // The stages are plain buttons: Enter in a text field must never pick one by accident
  // (a form's implicit submission presses its first submit button, which was "0%").
  document.querySelectorAll("[data-stage]").forEach((button) => {
    button.addEventListener("click", () => change(Number(button.dataset.stage)));
  });

  // "Set", or Enter in either field: the custom value, which must be filled in.
  $("change-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const raw = $("custom").value.trim();
    change(raw === "" ? NaN : Number(raw));
  });

  // guard.js advanced the rollout: read everything again.
  document.addEventListener("rollout:moved", refresh);

  // One step, whatever the stage: the reason is the only question.
  $("rollback").addEventListener("click", () => change(0));

  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    signedIn(false);
    $("token").value = "";
    $("token").focus();
  });

  refresh();
  setInterval(refresh, 15000);
})();
