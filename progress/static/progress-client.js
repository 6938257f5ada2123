// ProgressClient: a dependency-free reference client for the lesson progress API.
// Copy it as it is: a plain script (no modules, no build step) that sets window.ProgressClient.
// Its types are in progress-client.d.ts (and the API's in progress-api.d.ts); docs/frontend.md.
//
//   const client = new ProgressClient({ baseUrl: "https://progress.example.com", token, onLockScreen });
//   const modules = await client.curriculum();
//   const progress = await client.progress();
//   await client.complete("basics", "greetings");          // one retry after 1 s on failure
//   const review = await client.review();                  // the words of completed lessons
//   const answer = await client.access("basics", "introductions");  // sends minVersion
//   if (!answer.accessible) await client.reportLockScreen("basics", "introductions", answer.lockReceipt);
//
// Read-your-writes across reloads and tabs: the highest progress version seen is kept per
// learner in localStorage and followed through the `storage` event, so every tab and every
// reload sends it back as minVersion. When that version came from a completion answer, its
// `position` is kept beside it and sent as minPosition: the service then reads a replica
// only if it has replayed that far, and the primary at once otherwise, instead of waiting.
(function (global) {
  "use strict";

  const RETRY_DELAY_MS = 1000; // the seed's LessonRunner: one retry, one second later
  const TIMEOUT_MS = 10000; // a request that hangs longer counts as failed
  const VERSION_KEY = "progress.version."; // + the learner's id (the token's sub)
  const POSITION_KEY = "progress.position."; // + the learner's id: "version:position"

  // Every failure is a ProgressError: status 0 when no answer came (code "network_error",
  // or "timeout" after timeoutMs), else the HTTP status and the API's error code
  // ("lesson_locked", "token_expired", ...).
  class ProgressError extends Error {
    constructor(message, status, code) {
      super(message);
      this.name = "ProgressError";
      this.status = status;
      this.code = code;
    }
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const lessonPath = (moduleId, lessonId) =>
    "/modules/" + encodeURIComponent(moduleId) + "/lessons/" + encodeURIComponent(lessonId);
  // Worth one more try: no answer, or the server failed (5xx). A 4xx never is.
  const retryable = (error) => error.status === 0 || error.status >= 500;
  const asVersion = (value) => {
    const version = Number(value);
    return Number.isSafeInteger(version) && version >= 0 ? version : 0;
  };
  // A completion's position, only if a JavaScript number holds it exactly; else none is sent.
  const asPosition = (value) =>
    Number.isSafeInteger(value) && value >= 0 ? value : null;
  // "version:position" as kept in storage -> {version, position}
  const asPair = (value) => {
    const [version, position] = String(value || "").split(":");
    return { version: asVersion(version), position: position ? asPosition(Number(position)) : null };
  };

  // The token's subject: the learner whose versions we keep. Not verified here (the
  // server does that); only used to keep two learners' versions apart in one browser.
  function learnerOf(token) {
    try {
      const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const sub = JSON.parse(atob(payload)).sub;
      return typeof sub === "string" && sub ? sub : null;
    } catch (error) {
      return null;
    }
  }

  // A completion attempt's Idempotency-Key: random, 32 hex digits.
  function newKey() {
    const bytes = new Uint8Array(16);
    global.crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function defaultStorage() {
    try {
      return global.localStorage || null;
    } catch (error) {
      return null; // storage disabled (some privacy modes): versions stay in memory
    }
  }

  class ProgressClient {
    constructor({ baseUrl = "", token, onLockScreen, onVersionChange, timeoutMs = TIMEOUT_MS, storage } = {}) {
      if (!token) throw new Error("ProgressClient needs a token (a Bearer JWT).");
      this.baseUrl = String(baseUrl).replace(/\/+$/, "");
      this.token = token;
      this.onLockScreen = onLockScreen; // onLockScreen({moduleId, lessonId, answer})
      this.onVersionChange = onVersionChange; // onVersionChange(version): another tab wrote
      this.timeoutMs = timeoutMs;
      this.lastPath = null; // "legacy" or "verified": the path that served the last answer
      this.learnerId = learnerOf(token);
      this.storage = storage === undefined ? defaultStorage() : storage;
      this.storageKey = this.learnerId && this.storage ? VERSION_KEY + this.learnerId : null;
      this.positionKey = this.storageKey ? POSITION_KEY + this.learnerId : null;
      this.seen = 0; // the highest version this client saw itself
      this.seenPosition = null; // the position its completion answer gave with it, if any
      this.receipts = new Map(); // "module/lesson" -> the lockReceipt of its last locked answer
      this.onStorage = (event) => {
        if (event.key !== this.storageKey || event.newValue === null) return;
        const version = asVersion(event.newValue);
        if (version > this.seen) {
          this.seen = version;
          this.seenPosition = null; // the other tab's position is read from storage
          if (this.onVersionChange) this.onVersionChange(version);
        }
      };
      if (this.storageKey && global.addEventListener) global.addEventListener("storage", this.onStorage);
    }

    // The highest progress version any tab of this learner saw: sent back as minVersion.
    get version() {
      return Math.max(this.seen, this.stored());
    }

    // The position of the completion that made `version`, if this client or another tab
    // kept one for it: sent as minPosition with minVersion. null: none known.
    get position() {
      const version = this.version;
      if (version === 0) return null;
      if (this.seen === version && this.seenPosition !== null) return this.seenPosition;
      const kept = this.storedPosition();
      return kept.version === version ? kept.position : null;
    }

    stored() {
      if (!this.storageKey) return 0;
      try {
        return asVersion(this.storage.getItem(this.storageKey));
      } catch (error) {
        return 0;
      }
    }

    storedPosition() {
      if (!this.positionKey) return asPair(null);
      try {
        return asPair(this.storage.getItem(this.positionKey));
      } catch (error) {
        return asPair(null);
      }
    }

    // Versions only grow; keep the highest one any answer carried, here and for other tabs,
    // and the position a completion answer gave with it (a newer version from any other
    // answer comes without one: its position is unknown).
    remember(version, position) {
      if (!Number.isSafeInteger(version)) return;
      const known = asPosition(position);
      if (version < this.version || (version === this.version && (known === null || this.position !== null))) return;
      this.seen = version;
      this.seenPosition = known;
      if (!this.storageKey) return;
      try {
        this.storage.setItem(this.storageKey, String(version));
        if (known !== null) this.storage.setItem(this.positionKey, version + ":" + known);
      } catch (error) {
        // storage full or refused: this tab still sends it
      }
    }

    // The query that carries what this client holds: minVersion, and minPosition if known.
    holding() {
      const position = this.position;
      return "minVersion=" + this.version + (position === null ? "" : "&minPosition=" + position);
    }

    // Stop following other tabs (a single-page app that signs the learner out).
    close() {
      if (this.storageKey && global.removeEventListener) global.removeEventListener("storage", this.onStorage);
    }

    // One call to /api/v1: JSON in and out; any failure throws a ProgressError.
    async request(method, path, body, extraHeaders) {
      const where = method + " " + path;
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), this.timeoutMs);
      let response;
      try {
        response = await fetch(this.baseUrl + "/api/v1" + path, {
          method,
          headers: Object.assign(
            { Authorization: "Bearer " + this.token, Accept: "application/json" },
            body === undefined ? {} : { "Content-Type": "application/json" },
            extraHeaders || {}
          ),
          body: body === undefined ? undefined : JSON.stringify(body),
          cache: "no-store",
          signal: abort.signal,
        });
      } catch (error) {
        clearTimeout(timer);
        if (error.name === "AbortError") {
          throw new ProgressError(where + ": no answer in " + this.timeoutMs / 1000 + " s", 0, "timeout");
        }
        throw new ProgressError("Network error on " + where + ": " + error.message, 0, "network_error");
      }
      let data;
      try {
        data = await response.json().catch((error) => {
          if (error.name === "AbortError") throw error;
          return null;
        });
      } catch (error) {
        throw new ProgressError(where + ": no answer in " + this.timeoutMs / 1000 + " s", 0, "timeout");
      } finally {
        clearTimeout(timer);
      }
      this.lastPath = response.headers.get("X-Progress-Path") || this.lastPath;
      if (!response.ok) {
        const error = (data && data.error) || {};
        const message = error.message || response.statusText || "no details";
        throw new ProgressError(
          where + " failed with " + response.status + ": " + message,
          response.status,
          error.code || "http_" + response.status
        );
      }
      if (data === null) throw new ProgressError(where + " answered something other than JSON", response.status, "bad_json");
      this.remember(data.version, data.position);
      return data;
    }

    // [{id, title, lessons: [{id, title}]}], in order. No token needed, but it is sent.
    async curriculum() {
      return (await this.request("GET", "/curriculum")).modules;
    }

    // {version, completed: [{moduleId, lessonId, completedAt}], lessons: [{moduleId, lessonId, accessible}]}
    progress() {
      return this.request("GET", "/progress?" + this.holding());
    }

    // {success, dbUpdated, cacheUpdated, version, path, xpEarned, xpTotal, position}. No answer or a
    // 5xx: one retry after 1 s (completing twice changes nothing), then a clear error. A 4xx:
    // at once. Both tries carry one Idempotency-Key, so a retry whose first answer was lost
    // still learns the XP the completion earned (a later repeat earns 0).
    async complete(moduleId, lessonId) {
      const path = lessonPath(moduleId, lessonId) + "/complete";
      const headers = { "Idempotency-Key": newKey() };
      try {
        return await this.request("POST", path, undefined, headers);
      } catch (first) {
        if (!retryable(first)) throw first;
        await sleep(RETRY_DELAY_MS);
        try {
          return await this.request("POST", path, undefined, headers);
        } catch (second) {
          throw new ProgressError(
            "Could not complete lesson " + lessonId + " of " + moduleId + " (tried twice): " + second.message,
            second.status,
            second.code
          );
        }
      }
    }

    // The review set: {version, words: [{term, translation, moduleId, lessonId}], source, path},
    // the words of every completed lesson. Sends the last version seen, as access() does, so
    // a lesson just completed (in this tab or another) is never missing from it.
    review() {
      return this.request("GET", "/review?" + this.holding());
    }

    // The navigation guard: {accessible, source, cacheAgeMs, version, path, lockReceipt}.
    // Sends the last version seen (and its completion's position), so the answer never comes from a copy older than our
    // own completion (or another tab's). A "locked" answer carries lockReceipt: send it
    // with the lock-screen report.
    async access(moduleId, lessonId) {
      const answer = await this.request(
        "GET",
        lessonPath(moduleId, lessonId) + "/access?" + this.holding()
      );
      const key = moduleId + "/" + lessonId;
      if (answer.accessible) this.receipts.delete(key);
      else if (answer.lockReceipt) this.receipts.set(key, answer.lockReceipt);
      if (!answer.accessible && this.onLockScreen) this.onLockScreen({ moduleId, lessonId, answer });
      return answer;
    }

    // Tell the service a lock screen was shown, with the lockReceipt of the access answer
    // that locked (the service signed it; it says which path answered and when); by default
    // the last one this client got for that lesson.
    // 202 {falseLock} says whether the lesson was in fact open; each receipt counts once.
    reportLockScreen(moduleId, lessonId, lockReceipt = this.receipts.get(moduleId + "/" + lessonId)) {
      if (!lockReceipt) throw new Error("reportLockScreen needs the lockReceipt of the locked answer.");
      return this.request("POST", "/events/lock-screen", { moduleId, lessonId, lockReceipt });
    }
  }

  ProgressClient.ProgressError = ProgressError;
  global.ProgressClient = ProgressClient;
})(window);
