// The "Timeouts from real data" card of the admin rollout page: reads
// GET /api/v1/admin/timeouts?days=N and shows, for each timeout setting, the observed
// percentiles, the recommendation, the share each candidate would have cut, and the line to
// deploy. Changes nothing. Uses the admin token that admin-rollout.js keeps.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);

  function node(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text != null) el.textContent = text;
    return el;
  }

  const ms = (value) => (value == null ? "–" : Number(value.toPrecision(3)).toLocaleString() + " ms");
  const share = (value) => (value == null ? "–" : Number((100 * value).toPrecision(3)) + "%");

  function card(advice) {
    const box = node("article", "timeout");
    box.append(node("h3", null, advice.setting));
    const rec = advice.recommendedMs == null ? "keep the current value" : ms(advice.recommendedMs);
    box.append(node("p", null, "Now " + ms(advice.currentMs) + " · recommended " + rec));
    box.append(
      node(
        "p",
        "muted",
        advice.histogram + ": " + Math.round(advice.observations).toLocaleString() + " observations · p50 " +
          ms(advice.p50Ms) + ", p99 " + ms(advice.p99Ms) + ", p99.9 " + ms(advice.p999Ms) + " · rule: " + advice.rule
      )
    );
    const table = node("table");
    const head = node("tr");
    ["Candidate", "Requests over it", ""].forEach((t) => head.append(node("th", null, t)));
    table.append(node("thead"));
    table.tHead.append(head);
    const body = node("tbody");
    advice.candidates.forEach((c) => {
      const row = node("tr");
      row.append(node("td", null, ms(c.valueMs)), node("td", null, c.shareOver == null ? "–" : share(c.shareOver) + " (" + Math.round(c.requestsOver).toLocaleString() + ")"), node("td", null, c.label));
      body.append(row);
    });
    table.append(body);
    const wrap = node("div", "table-wrap");
    wrap.append(table);
    box.append(wrap);
    advice.warnings.forEach((w) => box.append(node("p", "warning", w)));
    if (advice.bucketsNeeded.length) box.append(node("p", "warning", "Add the buckets " + advice.bucketsNeeded.join(", ") + " s to place it."));
    box.append(node("p", null, "Deploy: "), node("code", null, advice.line));
    return box;
  }

  $("timeouts-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const days = Number($("timeouts-days").value);
    if (!Number.isFinite(days) || days <= 0 || days > 90) {
      $("timeouts-source").textContent = "Enter a number of days above 0 and at most 90.";
      $("timeouts-days").focus();
      return;
    }
    $("timeouts-source").textContent = "Reading…";
    try {
      const report = await window.AdminApi.call("GET", "/timeouts?days=" + days);
      $("timeouts-source").textContent = "Over " + report.window + " (" + report.source + "). " + report.note;
      $("timeouts-list").replaceChildren(...report.settings.map(card));
    } catch (e) {
      $("timeouts-source").textContent = "Could not read the histograms: " + e.message;
    }
  });
})();
