// ProgressClient: a dependency-free reference client for the lesson progress API.
// Copy it as it is: a plain script (no modules, no build step) that sets window.ProgressClient.
//
//   const client = new ProgressClient({ baseUrl: "", token, onLockScreen });
//   const modules = await client.curriculum();
//   const progress = await client.progress();
//   await client.complete("basics", "greetings");          // one retry after 1 s on failure
//   const answer = await client.access("basics", "introductions");  // sends minVersion
//   if (!answer.accessible) await client.reportLockScreen("basics", "introductions", answer.lockReceipt);
(function (global) {
  "use strict";

  const RETRY_DELAY_MS = 1000; // the seed's LessonRunner: one retry, one second later
  const TIMEOUT_MS = 10000; // a request that hangs longer counts as a network error

  // Every failure is a ProgressError: status 0 for the network, else the HTTP status,
  // and code is the API's error code ("lesson_locked", "token_expired", ...).
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
  // Worth one more try: the network failed or the server did (5xx). A 4xx never is.
  const retryable = (error) => error.status === 0 || error.status >= 500;

  class ProgressClient {
    constructor({ baseUrl = "", token, onLockScreen } = {}) {
      if (!token) throw new Error("ProgressClient needs a token (a Bearer JWT).");
      this.baseUrl = String(baseUrl).replace(/\/+$/, "");
      this.token = token;
      this.onLockScreen = onLockScreen; // called as onLockScreen({moduleId, lessonId, answer})
      this.version = 0; // the highest progress version seen: sent back as minVersion
      this.lastPath = null; // "legacy" or "verified": the path that served the last answer
    }

    // One call to /api/v1: JSON in and out; any failure throws a ProgressError.
    async request(method, path, body) {
      const where = method + " " + path;
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
      let response;
      try {
        response = await fetch(this.baseUrl + "/api/v1" + path, {
          method,
          headers: Object.assign(
            { Authorization: "Bearer " + this.token, Accept: "application/json" },
            body === undefined ? {} : { "Content-Type": "application/json" }
          ),
          body: body === undefined ? undefined : JSON.stringify(body),
          cache: "no-store",
          signal: abort.signal,
        });
      } catch (error) {
        const why = error.name === "AbortError" ? "no answer in " + TIMEOUT_MS / 1000 + " s" : error.message;
        throw new ProgressError("Network error on " + where + ": " + why, 0, "network_error");
      } finally {
        clearTimeout(timer);
      }
      this.lastPath = response.headers.get("X-Progress-Path") || this.lastPath;
      const data = await response.json().catch(() => null);
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
      this.remember(data.version);
      return data;
    }

    // Versions only grow; keep the highest one any answer carried.
    remember(version) {
      if (Number.isInteger(version) && version > this.version) this.version = version;
    }

    // [{id, title, lessons: [{id, title}]}], in order. No token needed, but it is sent.
    async curriculum() {
      return (await this.request("GET", "/curriculum")).modules;
    }

    // {version, completed: [{moduleId, lessonId, completedAt}], lessons: [{moduleId, lessonId, accessible}]}
    progress() {
      return this.request("GET", "/progress?minVersion=" + this.version);
    }

    // {success, dbUpdated, cacheUpdated, version, path}. On a network error or a 5xx: one
    // retry after 1 s (completing twice changes nothing), then a clear error. 4xx: at once.
    async complete(moduleId, lessonId) {
      const path = lessonPath(moduleId, lessonId) + "/complete";
      try {
        return await this.request("POST", path);
      } catch (first) {
        if (!retryable(first)) throw first;
        await sleep(RETRY_DELAY_MS);
        try {
          return await this.request("POST", path);
        } catch (second) {
          throw new ProgressError(
            "Could not complete lesson " + lessonId + " of " + moduleId + " (tried twice): " + second.message,
            second.status,
            second.code
          );
        }
      }
    }

    // The navigation guard: {accessible, source, cacheAgeMs, version, path, lockReceipt}. Sends
    // the last version seen, so the answer never comes from a copy older than our own
    // completion. A "locked" answer carries lockReceipt: send it with the lock-screen report.
    async access(moduleId, lessonId) {
      const answer = await this.request(
        "GET",
        lessonPath(moduleId, lessonId) + "/access?minVersion=" + this.version
      );
      if (!answer.accessible && this.onLockScreen) this.onLockScreen({ moduleId, lessonId, answer });
      return answer;
    }

    // Tell the service a lock screen was shown, with the lockReceipt of the access answer
    // that locked (the service signed it; it says which path answered and when).
    // 202 {falseLock} says whether the lesson was in fact open; each receipt counts once.
    reportLockScreen(moduleId, lessonId, lockReceipt) {
      if (!lockReceipt) throw new Error("reportLockScreen needs the lockReceipt of the locked answer.");
      return this.request("POST", "/events/lock-screen", { moduleId, lessonId, lockReceipt });
    }
  }

  ProgressClient.ProgressError = ProgressError;
  global.ProgressClient = ProgressClient;
})(window);
