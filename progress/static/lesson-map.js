// The learner page: sign in, the lesson map, a lesson, the lock screen. It talks to the
// service only through ProgressClient (progress-client.js), that is the public API.
//
// Views are addressed by the URL's hash, so the back button works:
//   #/               the lesson map
//   #/lesson/M/L     lesson L of module M (the navigation guard decides: lesson or lock screen)
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = "progress.token";
  const RANK = { locked: 0, open: 1, complete: 2 };
  const LABEL = { locked: "Locked", open: "Open", complete: "Complete" };
  const ICON = { open: "▶", complete: "✓" }; // locked: lockIcon(), no emoji font needed

  let client = null;
  let lessons = []; // every lesson in course order: {moduleId, moduleTitle, lessonId, title, index}
  let modules = []; // [{id, title, lessons: [...same objects]}]
  const states = new Map(); // "module/lesson" -> "locked" | "open" | "complete"
  let target = null; // the lesson we are navigating to; older answers are ignored

  const key = (moduleId, lessonId) => moduleId + "/" + lessonId;
  const find = (moduleId, lessonId) => lessons.find((l) => l.moduleId === moduleId && l.lessonId === lessonId);
  const stateOf = (lesson) => states.get(key(lesson.moduleId, lesson.lessonId)) || "locked";
  const hashFor = (lesson) => "#/lesson/" + encodeURIComponent(lesson.moduleId) + "/" + encodeURIComponent(lesson.lessonId);

  // Progress only grows: a lesson's state never moves back (a stale answer can't undo what we saw).
  function raise(moduleId, lessonId, state) {
    const k = key(moduleId, lessonId);
    if (RANK[state] > RANK[states.get(k) || "locked"]) states.set(k, state);
  }

  // el("button", {type: "button", onclick: f}, "text", child, ...)
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

  // A row of controls, a space apart (inline elements, so they wrap on a small screen).
  function actions(...items) {
    const row = el("div", { class: "actions" });
    items.filter(Boolean).forEach((item, i) => row.append(...(i ? [" ", item] : [item])));
    return row;
  }

  function lockIcon() {
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 16 16");
    svg.setAttribute("width", "1em");
    svg.setAttribute("height", "1em");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("class", "lock-icon");
    svg.style.verticalAlign = "-0.1em";
    svg.innerHTML =
      '<path d="M4.5 7V5a3.5 3.5 0 0 1 7 0v2" fill="none" stroke="currentColor" stroke-width="1.6"/>' +
      '<rect x="2.5" y="7" width="11" height="8" rx="1.5" fill="currentColor"/>';
    return svg;
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
    $("view").hidden = name !== "lesson" && name !== "lock";
  }

  function focusHeading(container) {
    const heading = container.querySelector("h2");
    if (heading) heading.focus();
  }

  // ---------------------------------------------------------------- sign in and out

  function emailIn(token) {
    try {
      const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(payload)).email || "a learner";
    } catch (error) {
      return "a learner";
    }
  }

  async function signIn(token, byHand) {
    client = new ProgressClient({ token, onLockScreen: showLockScreen });
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
      client = null;
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    $("who").textContent = "Signed in as " + emailIn(token) + ".";
    say("");
    route(byHand, false); // the form just disappeared: focus moves on; progress just loaded
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    client = null;
    states.clear();
    target = null;
    history.replaceState(null, "", location.pathname + location.search);
    setView("signin");
    say(message || "Signed out.");
    $("token").value = "";
    $("token").focus();
  }

  // ---------------------------------------------------------------- the lesson map

  async function loadProgress() {
    const progress = await api(() => client.progress());
    progress.lessons.forEach((l) => raise(l.moduleId, l.lessonId, l.accessible ? "open" : "locked"));
    progress.completed.forEach((c) => raise(c.moduleId, c.lessonId, "complete"));
    renderMap();
  }

  function renderMap() {
    $("modules").replaceChildren(
      ...modules.map((m) => {
        const done = m.lessons.filter((l) => stateOf(l) === "complete").length;
        return el(
          "section",
          { class: "module", "aria-labelledby": "module-" + m.id },
          el("h3", { id: "module-" + m.id }, m.title, el("span", { class: "muted count" }, " · " + done + " of " + m.lessons.length + " complete")),
          el("ol", { class: "lessons" }, ...m.lessons.map(lessonItem))
        );
      })
    );
    const next = lessons.find((l) => stateOf(l) !== "complete");
    $("continue").hidden = !next;
  }

  function lessonItem(lesson) {
    const state = stateOf(lesson);
    // The state is text: in the button's name for screen readers, and visible beside it.
    return el(
      "li",
      { class: "lesson", dataset: { state, module: lesson.moduleId, lesson: lesson.lessonId } },
      el("span", { class: "lesson-icon", "aria-hidden": "true" }, state === "locked" ? lockIcon() : ICON[state]),
      el(
        "a",
        { href: hashFor(lesson), class: "lesson-link" },
        lesson.title,
        el("span", { class: "visually-hidden" }, ", " + LABEL[state].toLowerCase())
      ),
      el("span", { class: "lesson-state", "aria-hidden": "true" }, LABEL[state])
    );
  }

  async function showMap(moveFocus, reload) {
    target = null;
    setView("map");
    if (moveFocus) $("map-h").focus();
    if (!reload) return;
    try {
      await loadProgress();
    } catch (error) {
      say("Could not load your progress: " + error.message);
    }
  }

  // ---------------------------------------------------------------- a lesson and the lock screen

  async function openLesson(lesson) {
    target = key(lesson.moduleId, lesson.lessonId);
    say("Opening " + lesson.title + "…");
    let answer;
    try {
      answer = await api(() => client.access(lesson.moduleId, lesson.lessonId)); // locked: showLockScreen
    } catch (error) {
      say("Could not open " + lesson.title + ": " + error.message);
      return;
    }
    if (target !== key(lesson.moduleId, lesson.lessonId)) return; // the learner went elsewhere
    if (!answer.accessible) return;
    raise(lesson.moduleId, lesson.lessonId, "open");
    say("");
    showLesson(lesson, "heading");
  }

  function showLesson(lesson, focus) {
    const state = stateOf(lesson);
    const next = lessons[lesson.index + 1];
    const complete = state === "complete";
    const view = el(
      "article",
      { class: "lesson-view", dataset: { module: lesson.moduleId, lesson: lesson.lessonId, state } },
      el("p", { class: "muted" }, lesson.moduleTitle + " · lesson " + (lesson.index + 1) + " of " + lessons.length),
      el("h2", { tabindex: "-1" }, lesson.title),
      el("p", { class: "lesson-status" }, complete ? "✓ You have completed this lesson." : "Not completed yet."),
      el("p", { class: "lesson-body" }, "The lesson's exercises go here."),
      complete && !next && el("p", {}, "You have finished the course!"),
      actions(
        !complete && el("button", { type: "button", id: "complete", onclick: () => completeLesson(lesson) }, "Mark complete"),
        complete && next && el("button", { type: "button", id: "next", onclick: () => go(next) }, "Next lesson: " + next.title),
        el("a", { href: "#/", class: "back" }, "Back to the lesson map")
      )
    );
    $("view").replaceChildren(view);
    setView("lesson");
    if (focus === "next" && $("next")) $("next").focus();
    else focusHeading(view);
  }

  async function completeLesson(lesson) {
    const button = $("complete");
    button.disabled = true;
    say("Saving…");
    try {
      await api(() => client.complete(lesson.moduleId, lesson.lessonId));
    } catch (error) {
      button.disabled = false;
      say(error.code === "lesson_locked" ? "Complete the previous lesson first." : error.message);
      return;
    }
    raise(lesson.moduleId, lesson.lessonId, "complete");
    say("Lesson complete: " + lesson.title + ".");
    if (target === key(lesson.moduleId, lesson.lessonId)) showLesson(lesson, "next");
  }

  // ProgressClient calls this whenever the navigation guard answers "locked".
  function showLockScreen({ moduleId, lessonId, answer }) {
    const lesson = find(moduleId, lessonId);
    if (!lesson || target !== key(moduleId, lessonId)) return;
    const previous = lessons[lesson.index - 1];
    const screen = el(
      "section",
      { class: "lock-screen", role: "alert", "aria-labelledby": "lock-h", dataset: { module: moduleId, lesson: lessonId } },
      el("h2", { id: "lock-h", tabindex: "-1" }, lockIcon(), " " + lesson.title + " is locked"),
      el("p", {}, previous ? "It opens when you complete “" + previous.title + "”." : "It is not open yet."),
      el("p", { class: "lock-report muted" }),
      actions(
        el("button", { type: "button", id: "check-again", onclick: () => openLesson(lesson) }, "Check again"),
        previous && el("button", { type: "button", onclick: () => go(previous) }, "Go to “" + previous.title + "”"),
        el("a", { href: "#/", class: "back" }, "Back to the lesson map")
      )
    );
    $("view").replaceChildren(screen);
    setView("lock");
    say("");
    focusHeading(screen);
    // Every lock screen shown is reported: the service checks it against the primary.
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

  function route(moveFocus, reload = true) {
    if (!client) return;
    const match = /^#\/lesson\/([^/]+)\/([^/]+)$/.exec(location.hash);
    const lesson = match && find(decodeURIComponent(match[1]), decodeURIComponent(match[2]));
    if (match && !lesson) say("There is no such lesson.");
    if (lesson) openLesson(lesson);
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
    const next = lessons.find((l) => stateOf(l) !== "complete");
    if (next) go(next);
  });

  // The embedded demo only: the server mints a token for a brand-new learner.
  const newLearner = $("new-learner");
  if (newLearner) {
    newLearner.addEventListener("click", async () => {
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

  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved, false);
  else setView("signin");
})();
