// The admin rollout page: reads and changes the rollout through /api/v1/admin.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem("progress.adminToken") || "";

  const call = window.AdminApi.call;

  function signedIn(yes) {
    $("signin").hidden = yes;
    $("account").hidden = !yes;
  }

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
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

  async function refresh() {
    if (!token) return;
    try {
      const [state, history, figures] = await Promise.all([
        call("GET", "/rollout"),
        call("GET", "/rollout/history"),
        call("GET", "/paths"),
      ]);
      $("percentage").textContent = state.percentage;
      $("updated").textContent = state.updatedBy
        ? "Last changed " + when(state.updatedAt) + " by " + state.updatedBy
        : "Never changed: every learner is on the legacy path.";
      document.querySelectorAll("[data-stage]").forEach((b) => {
        b.setAttribute("aria-pressed", String(Number(b.dataset.stage) === state.percentage));
      });
      const historyBody = $("history").querySelector("tbody");
      historyBody.replaceChildren();
      history.changes.forEach((c) => {
        const row = historyBody.insertRow();
        cell(row, when(c.changedAt));
        cell(row, (c.previousPercentage == null ? "?" : c.previousPercentage) + "% → " + c.percentage + "%");
        cell(row, c.changedBy);
        cell(row, c.reason);
      });
      const figuresBody = $("figures").querySelector("tbody");
      figuresBody.replaceChildren();
      FIGURES.forEach(([key, label, show]) => {
        const row = figuresBody.insertRow();
        const th = document.createElement("th");
        th.scope = "row";
        th.textContent = label;
        row.appendChild(th);
        cell(row, show(figures.legacy[key]));
        cell(row, show(figures.verified[key]));
      });
      signedIn(true);
    } catch (error) {
      if (error.status === 401 || error.status === 403) {
        token = "";
        sessionStorage.removeItem("progress.adminToken");
        signedIn(false);
      }
      $("message").textContent = "Could not load the rollout: " + error.message;
    }
  }

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("token").value.trim();
    sessionStorage.setItem("progress.adminToken", token);
    refresh();
  });

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
      const state = await call("PUT", "/rollout", { percentage, reason });
      $("message").textContent = "The verified path now serves " + state.percentage + "% of learners.";
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

  $("sign-out").addEventListener("click", () => {
    token = "";
    sessionStorage.removeItem("progress.adminToken");
    signedIn(false);
    $("token").value = "";
    $("token").focus();
  });

  refresh();
  setInterval(refresh, 15000);
})();
