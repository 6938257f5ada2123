// The learner page: sign in, the lesson map, a lesson, its completion view, the lock screen.
// It talks to the service only through ProgressClient (progress-client.js), the public API.
// No inline scripts or handlers anywhere, so it runs under a strict Content-Security-Policy.
//
// Views are addressed by the URL's hash, so the back button works:
//   #/               the lesson map
//   #/lesson/M/L     lesson L of module M (the navigation guard decides: lesson or lock screen)
//   #/review         the words of every completed lesson (sent with the last version seen)
// The completion view follows a completion in place; "next" goes through the guard again.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const script = document.currentScript;
  const TIMEOUT_MS = Number(script && script.dataset.timeoutMs) || 10000;
  // The token is kept in localStorage until it expires or the learner signs out: a second
  // tab opened by URL is the same learner, and every tab follows a sign-out or a switch.
  const TOKEN_KEY = "progress.token";
  const RANK = { locked: 0, open: 1, complete: 2 };
  const LABEL = { locked: "Locked", open: "Open", complete: "Complete", current: "Up next" };

  let client = null;
  let lessons = []; // every lesson in course order: {moduleId, moduleTitle, lessonId, title, index}
  let modules = []; // [{id, title, lessons: [...same objects]}]
  const states = new Map(); // "module/lesson" -> "locked" | "open" | "complete"
  let target = null; // the lesson we are navigating to; older answers are ignored
  let signedInAs = null; // the token this tab uses
  let xpTotal = 0; // the learner's XP as the last answer that carried it said (it only grows)

  const key = (moduleId, lessonId) => moduleId + "/" + lessonId;
  const find = (moduleId, lessonId) => lessons.find((l) => l.moduleId === moduleId && l.lessonId === lessonId);
  const stateOf = (lesson) => states.get(key(lesson.moduleId, lesson.lessonId)) || "locked";
  const hashFor = (lesson) => "#/lesson/" + encodeURIComponent(lesson.moduleId) + "/" + encodeURIComponent(lesson.lessonId);
  const moduleOf = (lesson) => modules.find((m) => m.id === lesson.moduleId);
  const doneIn = (module) => module.lessons.filter((l) => stateOf(l) === "complete").length;
  // The lesson to do next: the first one not complete (it is open once its predecessor is).
  const upNext = () => lessons.find((l) => stateOf(l) !== "complete");

  // Progress only grows: a lesson's state never moves back (a stale answer can't undo what we saw).
  function raise(moduleId, lessonId, state) {
    const k = key(moduleId, lessonId);
    if (RANK[state] > RANK[states.get(k) || "locked"]) states.set(k, state);
  }

  // el("button", {type: "button", onclick: f}, "text", child, ...): handlers are attached
  // with addEventListener, never as attributes.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([name, value]) => {
      if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else if (name === "dataset") Object.assign(node.dataset, value);
      else if (value !== false && value != null) node.setAttribute(name, value === true ? "" : value);
    });
    node.append(...children.filter((c) => c != null && c !== false));
    return node;
  }

  // A row of controls (they wrap on a small screen).
  function actions(...items) {
    return el("div", { class: "actions" }, ...items.filter(Boolean));
  }

  function svgIcon(paths) {
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 16 16");
    svg.setAttribute("width", "1em");
    svg.setAttribute("height", "1em");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("class", "icon");
    paths.forEach((attrs) => {
      const path = document.createElementNS("http://www.w3.org/2000/svg", attrs.tag || "path");
      Object.entries(attrs).forEach(([name, value]) => name !== "tag" && path.setAttribute(name, value));
      svg.append(path);
    });
    return svg;
  }
  const lockIcon = () =>
    svgIcon([
      { d: "M4.5 7V5a3.5 3.5 0 0 1 7 0v2", fill: "none", stroke: "currentColor", "stroke-width": "1.6" },
      { tag: "rect", x: "2.5", y: "7", width: "11", height: "8", rx: "1.5", fill: "currentColor" },
    ]);
  const checkIcon = () =>
    svgIcon([{ d: "M3 8.5l3.2 3L13 4.5", fill: "none", stroke: "currentColor", "stroke-width": "2.2" }]);

  // A module's progress: a bar and "3 of 5" as text (the bar is decoration).
  function moduleProgress(module) {
    const done = doneIn(module);
    const total = module.lessons.length;
    const bar = el("span", { class: "bar", "aria-hidden": "true" }, el("span", { class: "bar-fill" }));
    bar.firstChild.style.width = (total ? (100 * done) / total : 0) + "%";
    return el(
      "div",
      { class: "module-progress" },
      bar,
      el("span", { class: "count" }, done + " of " + total, el("span", { class: "visually-hidden" }, " lessons complete"))
    );
  }

  function say(text) {
    $("status").textContent = text;
  }

  // Every API call goes through here: which path served it (for tests, discreetly), and a
  // refused token signs the learner out.
  async function api(call) {
    try {
      return await call();
    } catch (error) {
      if (error.status === 401) signOut("Your token was refused (" + error.message + "). Sign in again.");
      throw error;
    } finally {
      if (client && client.lastPath) document.body.dataset.progressPath = client.lastPath;
    }
  }

  function setView(name) {
    document.body.dataset.view = name;
    $("signin").hidden = name !== "signin";
    $("account").hidden = name === "signin";
    $("map").hidden = name !== "map";
    $("view").hidden = !["lesson", "lock", "done", "review"].includes(name);
  }

  function focusHeading(container) {
    const heading = container.querySelector("h2");
    if (heading) heading.focus();
  }

  // ---------------------------------------------------------------- sign in and out

  // The token's claims, unverified (the server verifies them): for the page's words only.
  function claimsOf(token) {
    try {
      const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(payload)) || {};
    } catch (error) {
      return {};
    }
  }
  const emailIn = (token) => claimsOf(token).email || "a learner";
  const isAdmin = (token) => Array.isArray(claimsOf(token).roles) && claimsOf(token).roles.includes("admin");

  // The token this browser keeps, unless it has expired.
  function keptToken() {
    const token = localStorage.getItem(TOKEN_KEY);
    if (!token) return null;
    const exp = Number(claimsOf(token).exp);
    if (Number.isFinite(exp) && exp * 1000 <= Date.now()) {
      localStorage.removeItem(TOKEN_KEY);
      return null;
    }
    return token;
  }

  async function signIn(token, byHand) {
    if (client) client.close();
    signedInAs = token;
    client = new ProgressClient({ token, onLockScreen: showLockScreen, onVersionChange, timeoutMs: TIMEOUT_MS });
    states.clear();
    say("Signing in…");
    try {
      const curriculum = await api(() => client.curriculum());
      modules = curriculum.map((m) => ({ id: m.id, title: m.title, lessons: [] }));
      lessons = [];
      curriculum.forEach((m, i) =>
        m.lessons.forEach((l) => {
          const lesson = { moduleId: m.id, moduleTitle: m.title, lessonId: l.id, title: l.title, index: lessons.length };
          lessons.push(lesson);
          modules[i].lessons.push(lesson);
        })
      );
      await loadProgress(); // also fills the service's cache for this learner, as the app does
    } catch (error) {
      if (error.status !== 401) say("Could not sign in: " + error.message);
      if (client) client.close();
      client = null;
      signedInAs = null;
      return;
    }
    localStorage.setItem(TOKEN_KEY, token);
    $("who").textContent = "Signed in as " + emailIn(token) + ".";
    $("admin-link").hidden = !isAdmin(token);
    say("");
    route(byHand, false); // the form just disappeared: focus moves on; progress just loaded
  }

  function signOut(message, moveFocus = true) {
    localStorage.removeItem(TOKEN_KEY);
    if (client) client.close();
    client = null;
    signedInAs = null;
    $("admin-link").hidden = true;
    states.clear();
    target = null;
    history.replaceState(null, "", location.pathname + location.search);
    setView("signin");
    say(message || "Signed out.");
    $("token").value = "";
    if (moveFocus) $("token").focus();
  }

  // Another tab signed out, or signed in as someone else: this tab follows it, so a tab
  // never shows one learner while the browser keeps another's token.
  window.addEventListener("storage", (event) => {
    if (event.key !== TOKEN_KEY || event.newValue === signedInAs) return;
    if (event.newValue) {
      signIn(event.newValue, false).then(() => {
        if (client) say("Another tab signed in as " + emailIn(event.newValue) + ": this tab follows it.");
      });
    } else if (signedInAs) {
      signOut("Signed out in another tab.", false);
    }
  });

  // Another tab of this learner completed something: the map and a lock screen catch up.
  function onVersionChange() {
    const view = document.body.dataset.view;
    if (view === "map") loadProgress().catch(() => {});
    else if (view === "lock" && target) {
      const lesson = find(...target.split("/"));
      if (lesson) openLesson(lesson);
    }
  }

  // ---------------------------------------------------------------- the lesson map

  async function loadProgress() {
    const progress = await api(() => client.progress());
    progress.lessons.forEach((l) => raise(l.moduleId, l.lessonId, l.accessible ? "open" : "locked"));
    progress.completed.forEach((c) => raise(c.moduleId, c.lessonId, "complete"));
    xpTotal = Math.max(xpTotal, progress.xpTotal);
    renderMap();
  }

  function renderMap() {
    const next = upNext();
    const total = lessons.filter((l) => stateOf(l) === "complete").length;
    $("course-progress").textContent = total + " of " + lessons.length + " lessons complete · " + xpTotal + " XP";
    $("modules").replaceChildren(
      ...modules.map((m) =>
        el(
          "section",
          { class: "module", "aria-labelledby": "module-" + m.id, dataset: { module: m.id } },
          el("div", { class: "module-head" }, el("h3", { id: "module-" + m.id }, m.title), moduleProgress(m)),
          el("ol", { class: "lessons" }, ...m.lessons.map((l) => lessonItem(l, l === next)))
        )
      )
    );
    $("continue").hidden = !next;
    if (next) $("continue").textContent = (total ? "Continue: " : "Start: ") + next.title;
  }

  // A locked lesson is text, not a link; its state is in words (name and visible label).
  function lessonItem(lesson, current) {
    const state = stateOf(lesson);
    const label = current && state === "open" ? LABEL.current : LABEL[state];
    const marker = state === "locked" ? lockIcon() : state === "complete" ? checkIcon() : String(lesson.index + 1);
    const name = [lesson.title, el("span", { class: "visually-hidden" }, ", " + label.toLowerCase())];
    return el(
      "li",
      {
        class: "lesson" + (current ? " current" : ""),
        dataset: { state, module: lesson.moduleId, lesson: lesson.lessonId },
        "aria-current": current && state === "open" ? "step" : false,
      },
      el("span", { class: "lesson-marker", "aria-hidden": "true" }, marker),
      state === "locked"
        ? el("span", { class: "lesson-title" }, ...name)
        : el("a", { href: hashFor(lesson), class: "lesson-link" }, ...name),
      el("span", { class: "lesson-state", "aria-hidden": "true" }, label)
    );
  }

  async function showMap(moveFocus, reload) {
    target = null;
    renderMap();
    setView("map");
    if (moveFocus) $("map-h").focus();
    if (!reload) return;
    try {
      await loadProgress();
    } catch (error) {
      say("Could not load your progress: " + error.message);
    }
  }

  // ---------------------------------------------------------------- a lesson, its completion, the lock screen

  async function openLesson(lesson, moveFocus = true) {
    target = key(lesson.moduleId, lesson.lessonId);
    say("Opening " + lesson.title + "…");
    let answer;
    try {
      answer = await api(() => client.access(lesson.moduleId, lesson.lessonId)); // locked: showLockScreen
    } catch (error) {
      if (target === key(lesson.moduleId, lesson.lessonId)) say("Could not open " + lesson.title + ": " + error.message);
      return;
    }
    if (target !== key(lesson.moduleId, lesson.lessonId)) return; // the learner went elsewhere
    if (!answer.accessible) return;
    raise(lesson.moduleId, lesson.lessonId, "open");
    say("");
    showLesson(lesson, moveFocus);
  }

  function lessonHeader(lesson) {
    return el("p", { class: "muted eyebrow" }, lesson.moduleTitle + " · lesson " + (lesson.index + 1) + " of " + lessons.length);
  }

  function showLesson(lesson, moveFocus = true) {
    const complete = stateOf(lesson) === "complete";
    const next = lessons[lesson.index + 1];
    const view = el(
      "article",
      { class: "lesson-view card", dataset: { module: lesson.moduleId, lesson: lesson.lessonId, state: stateOf(lesson) } },
      lessonHeader(lesson),
      el("h2", { tabindex: "-1" }, lesson.title),
      el("p", { class: "lesson-status" }, complete ? "You have completed this lesson." : "Not completed yet."),
      el("p", { class: "lesson-body" }, "The lesson's exercises go here."),
      el("div", { id: "save-error" }),
      actions(
        !complete && el("button", { type: "button", id: "complete", class: "primary", onclick: () => completeLesson(lesson) }, "Mark complete"),
        complete && next && el("button", { type: "button", id: "next", class: "primary", onclick: () => go(next) }, "Next lesson: " + next.title),
        el("a", { href: "#/", class: "back" }, "Back to the lesson map")
      )
    );
    $("view").replaceChildren(view);
    setView("lesson");
    if (moveFocus) focusHeading(view);
  }

  async function completeLesson(lesson) {
    const button = $("complete");
    const problem = $("save-error");
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    say("Saving…");
    let done;
    try {
      done = await api(() => client.complete(lesson.moduleId, lesson.lessonId)); // one retry inside
    } catch (error) {
      button.disabled = false;
      button.removeAttribute("aria-busy");
      say("");
      if (error.status === 401) return; // signed out already
      if (target === key(lesson.moduleId, lesson.lessonId)) showSaveError(problem, lesson, error);
      return;
    }
    raise(lesson.moduleId, lesson.lessonId, "complete");
    const next = lessons[lesson.index + 1];
    if (next) raise(next.moduleId, next.lessonId, "open"); // the server's rule; the guard still decides
    xpTotal = Math.max(xpTotal, done.xpTotal);
    say("");
    if (target === key(lesson.moduleId, lesson.lessonId)) showCompletion(lesson, done);
  }

  // Saving failed after the client's one retry: say so plainly, stay on the lesson.
  function showSaveError(container, lesson, error) {
    const locked = error.code === "lesson_locked";
    const retry = el("button", { type: "button", id: "retry", onclick: () => completeLesson(lesson) }, "Try again");
    container.replaceChildren(
      el(
        "div",
        { class: "save-error", role: "alert", dataset: { code: error.code } },
        el("p", { class: "save-error-title" }, locked ? "This lesson can't be completed yet." : "Your progress was not saved."),
        el(
          "p",
          {},
          locked
            ? "Complete the lesson before it first."
            : error.status === 0
              ? "The service did not answer in time. Check your connection and try again."
              : "The service could not save it (" + error.message + "). Try again in a moment."
        ),
        !locked && actions(retry)
      )
    );
    if (!locked) retry.focus();
  }

  // The seed's LessonRunner: after a verified completion, a completion screen (what was
  // done, the XP it earned, what opens next) before the learner moves on; "next" asks the
  // guard again. The XP came with the completion's answer: there is nothing to flush.
  function showCompletion(lesson, done) {
    const module = moduleOf(lesson);
    const next = lessons[lesson.index + 1];
    const moduleDone = doneIn(module) === module.lessons.length;
    const view = el(
      "section",
      { class: "completion-view card", dataset: { module: lesson.moduleId, lesson: lesson.lessonId, state: "complete" } },
      el("div", { class: "completion-badge", "aria-hidden": "true" }, checkIcon()),
      lessonHeader(lesson),
      el("h2", { tabindex: "-1" }, "Lesson complete: " + lesson.title),
      el(
        "p",
        { class: "completion-xp", id: "xp-earned", dataset: { xpEarned: done.xpEarned, xpTotal: done.xpTotal } },
        el("strong", {}, "+" + done.xpEarned + " XP"),
        done.xpEarned ? "" : " (you had completed this lesson before)",
        " · " + done.xpTotal + " XP in all"
      ),
      el("div", { class: "completion-module" }, el("span", {}, module.title), moduleProgress(module)),
      moduleDone && el("p", { class: "completion-note" }, "You finished the module “" + module.title + "”."),
      next
        ? el("p", { class: "completion-next" }, "Next up: ", el("strong", {}, next.title), next.moduleId !== lesson.moduleId ? " (" + next.moduleTitle + ")" : "")
        : el("p", { class: "completion-next" }, "You have finished the course!"),
      actions(
        next && el("button", { type: "button", id: "next", class: "primary", onclick: () => go(next) }, "Continue: " + next.title),
        el("a", { href: "#/review", id: "review-link" }, "Review the words"),
        el("a", { href: "#/", class: "back" }, "Back to the lesson map")
      )
    );
    $("view").replaceChildren(view);
    setView("done");
    if (next) $("next").focus();
    else focusHeading(view);
  }

  // Review: the words of every completed lesson, grouped by lesson in course order. The
  // request carries the last version this learner saw (in any tab), so a lesson just
  // completed is in it, whichever server answers.
  async function showReview(moveFocus = true) {
    target = "review";
    say("Loading the words…");
    let review;
    try {
      review = await api(() => client.review());
    } catch (error) {
      if (target === "review") say("Could not load the words: " + error.message);
      return;
    }
    if (target !== "review") return;
    say("");
    const byLesson = new Map();
    review.words.forEach((w) => {
      const k = key(w.moduleId, w.lessonId);
      if (!byLesson.has(k)) byLesson.set(k, []);
      byLesson.get(k).push(w);
    });
    const groups = [...byLesson.entries()].map(([k, words]) => {
      const lesson = find(words[0].moduleId, words[0].lessonId);
      return el(
        "section",
        { class: "review-lesson", dataset: { module: words[0].moduleId, lesson: words[0].lessonId } },
        el("h3", {}, lesson ? lesson.title : k),
        el(
          "dl",
          { class: "review-words" },
          ...words.flatMap((w) => [el("dt", { class: "review-term" }, w.term), el("dd", {}, w.translation)])
        )
      );
    });
    const view = el(
      "section",
      { class: "review-view card", id: "review", dataset: { version: review.version, words: review.words.length } },
      el("h2", { tabindex: "-1" }, "Review"),
      groups.length
        ? el("p", { class: "muted" }, review.words.length + " words from " + groups.length + " completed lessons")
        : el("p", { class: "review-empty" }, "Complete a lesson and its words appear here."),
      ...groups,
      actions(el("a", { href: "#/", class: "back" }, "Back to the lesson map"))
    );
    $("view").replaceChildren(view);
    setView("review");
    if (moveFocus) focusHeading(view);
  }

  // ProgressClient calls this whenever the navigation guard answers "locked".
  function showLockScreen({ moduleId, lessonId, answer }) {
    const lesson = find(moduleId, lessonId);
    if (!lesson || target !== key(moduleId, lessonId)) return;
    const previous = lessons[lesson.index - 1];
    const screen = el(
      "section",
      { class: "lock-screen card", role: "alert", "aria-labelledby": "lock-h", dataset: { module: moduleId, lesson: lessonId } },
      el("div", { class: "lock-badge", "aria-hidden": "true" }, lockIcon()),
      lessonHeader(lesson),
      el("h2", { id: "lock-h", tabindex: "-1" }, lesson.title + " is locked"),
      el("p", {}, previous ? "It opens when you complete “" + previous.title + "”." : "It is not open yet."),
      el("p", { class: "lock-report muted" }),
      actions(
        el("button", { type: "button", id: "check-again", onclick: () => openLesson(lesson) }, "Check again"),
        previous && el("button", { type: "button", class: "primary", onclick: () => go(previous) }, "Go to “" + previous.title + "”"),
        el("a", { href: "#/", class: "back" }, "Back to the lesson map")
      )
    );
    $("view").replaceChildren(screen);
    setView("lock");
    say("");
    focusHeading(screen);
    // Every lock screen shown is reported with its receipt: the service checks it against the primary.
    api(() => client.reportLockScreen(moduleId, lessonId, answer.lockReceipt)).then(
      (report) => {
        screen.dataset.falseLock = String(report.falseLock);
        if (report.falseLock) {
          screen.querySelector(".lock-report").textContent =
            "Our mistake: your progress is saved and this lesson is open. Choose “Check again”.";
        }
      },
      () => (screen.dataset.falseLock = "unknown")
    );
  }

  // ---------------------------------------------------------------- navigation

  function go(lesson) {
    const hash = hashFor(lesson);
    if (location.hash === hash) openLesson(lesson);
    else location.hash = hash; // the hashchange event opens it
  }

  // Each navigation starts with a clear status line: a message belongs to the view it was for.
  function route(moveFocus, reload = true) {
    if (!client) return;
    say("");
    if (location.hash === "#/review") return showReview(moveFocus);
    const match = /^#\/lesson\/([^/]+)\/([^/]+)$/.exec(location.hash);
    const lesson = match && find(decodeURIComponent(match[1]), decodeURIComponent(match[2]));
    if (match && !lesson) say("There is no such lesson.");
    if (lesson) openLesson(lesson, moveFocus);
    else showMap(moveFocus, reload);
  }

  window.addEventListener("hashchange", () => route(true));

  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (token) signIn(token, true);
  });

  $("sign-out").addEventListener("click", () => signOut());

  $("continue").addEventListener("click", () => {
    const next = upNext();
    if (next) go(next);
  });

  // The skip link: the page's routes live in the hash, so it moves focus instead.
  document.querySelector(".skip-link").addEventListener("click", (event) => {
    event.preventDefault();
    $("main").focus();
  });

  // The embedded demo only: the server mints a token for a brand-new learner. It never
  // replaces a learner this browser keeps (one signed in since this tab showed the form).
  const newLearner = $("new-learner");
  if (newLearner) {
    newLearner.addEventListener("click", async () => {
      const kept = keptToken();
      if (kept) {
        await signIn(kept, true);
        if (client) say("This browser is signed in as " + emailIn(kept) + ": sign out first to start a new learner.");
        return;
      }
      newLearner.disabled = true;
      try {
        const response = await fetch("/dev/learner-token", { method: "POST" });
        if (!response.ok) throw new Error("the server answered " + response.status);
        await signIn((await response.json()).token, true);
      } catch (error) {
        say("Could not start a new learner: " + error.message);
      } finally {
        newLearner.disabled = false;
      }
    });
  }

  const saved = keptToken();
  if (saved) signIn(saved, false);
  else setView("signin");
})();
