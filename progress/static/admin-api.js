// How the admin pages talk to /api/v1/admin: the admin token kept in this tab's session
// storage, JSON in and out, and the API's own error message when a call fails.
window.AdminApi = (function () {
  "use strict";
  const TOKEN_KEY = "progress.adminToken";

  async function call(method, path, body) {
    const token = sessionStorage.getItem(TOKEN_KEY) || "";
    if (!token) throw Object.assign(new Error("no admin token"), { status: 401 });
    const response = await fetch("/api/v1/admin" + path, {
      method,
      headers: Object.assign(
        { Authorization: "Bearer " + token },
        body ? { "Content-Type": "application/json" } : {}
      ),
      body: body ? JSON.stringify(body) : undefined,
    });
    const data = await response.json().catch(() => null); // a proxy's HTML error page, say
    if (!response.ok) {
      const message = data && data.error ? data.error.message : response.status + " " + response.statusText;
      throw Object.assign(new Error(message), {
        status: response.status,
        field: data && data.error && data.error.field,
      });
    }
    if (data === null) throw new Error(method + " " + path + " did not answer JSON");
    return data;
  }

  return { call, TOKEN_KEY };
})();
