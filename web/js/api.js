/**
 * The HTTP API (docs/openapi.yaml) with the session's bearer token. Errors become ApiError
 * with the API's `{"error": {"code", "message"}}` (or API Gateway's `{"message"}`), so
 * pages can show the API's own reason. A 401 refreshes the tokens once and retries.
 */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export class Api {
  constructor(config, auth) {
    this.base = config.api_url;
    this.auth = auth;
  }

  async call(method, path, body, retried = false) {
    const session = this.auth.session;
    if (!session) throw new ApiError(401, "unauthorized", "Please sign in.");
    const headers = { Authorization: `Bearer ${session.idToken}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(this.base + path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiError(0, "network", "The API cannot be reached; check your connection.");
    }
    if (response.status === 401 && !retried && (await this.auth.refresh())) {
      return this.call(method, path, body, true);
    }
    if (response.status === 204) return null;
    const answer = await response.json().catch(() => null);
    if (!response.ok) {
      const error = answer?.error || {};
      const message = error.message || answer?.message || `HTTP ${response.status}`;
      if (response.status === 401) this.auth.clear("Your session expired; please sign in again.");
      throw new ApiError(response.status, error.code || "http_error", message);
    }
    return answer;
  }

  static query(params) {
    const entries = Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== "");
    return entries.length ? `?${new URLSearchParams(entries)}` : "";
  }

  createUpload(file) { return this.call("POST", "/uploads", file); }
  createMultipart(file) { return this.call("POST", "/uploads/multipart", file); }
  completeMultipart(id, parts) {
    return this.call("POST", `/uploads/multipart/${encodeURIComponent(id)}/complete`, { parts });
  }
  abortMultipart(id) { return this.call("DELETE", `/uploads/multipart/${encodeURIComponent(id)}`); }
  listImages(params) { return this.call("GET", `/images${Api.query(params)}`); }
  getImage(id) { return this.call("GET", `/images/${encodeURIComponent(id)}`); }
  deleteImage(id) { return this.call("DELETE", `/images/${encodeURIComponent(id)}`); }
  listLabels() { return this.call("GET", "/labels"); }
  createBundle(request) { return this.call("POST", "/bundles", request); }
  getBundle(id) { return this.call("GET", `/bundles/${encodeURIComponent(id)}`); }
  listInputs(params) { return this.call("GET", `/inputs${Api.query(params)}`); }
  getInput(key) { return this.call("GET", `/inputs/${encodeURIComponent(key)}`); }
}
