/**
 * Sending files straight to the RAW bucket with the URLs the API presigns (the API never
 * carries file bytes): one presigned PUT for a small file, the multipart route for a large
 * one (parts retried with exponential back-off and jitter; a file whose part still fails is
 * paused and resumes with only its missing parts). XMLHttpRequest, not fetch, because only
 * it reports upload progress. Then the receipt is polled (GET /inputs/{key}) until the
 * pipeline has processed or rejected the file.
 */
import { pause } from "./dom.js";
import { ApiError } from "./api.js";

const DATA_TYPES = { json: "application/json", jsonl: "application/x-ndjson", ndjson: "application/x-ndjson" };
const PART_ATTEMPTS = 5;
const PART_CONCURRENCY = 3;
const BACKOFF_MS = 500;

export function extensionOf(name) {
  const dot = name.lastIndexOf(".");
  return dot < 0 ? "" : name.slice(dot + 1).toLowerCase();
}

export function isDataFile(file) { return extensionOf(file.name) in DATA_TYPES; }

/** The media type to declare: the browser's guess, or the data formats' own types. */
export function contentTypeOf(file) {
  return DATA_TYPES[extensionOf(file.name)] || file.type || "application/octet-stream";
}

/** PUT `body` to a presigned URL; resolves to the ETag S3 answered. */
export function putWithProgress(url, headers, body, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", url);
    for (const [name, value] of Object.entries(headers || {})) xhr.setRequestHeader(name, value);
    xhr.upload.addEventListener("progress", (event) => onProgress(event.loaded));
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(body.size);
        resolve((xhr.getResponseHeader("ETag") || "").replace(/"/g, ""));
      } else {
        reject(new Error(`storage answered HTTP ${xhr.status}`));
      }
    });
    xhr.addEventListener("error", () => reject(new Error("network error while sending")));
    xhr.addEventListener("abort", () => reject(new Error("sending was cancelled")));
    xhr.send(body);
  });
}

/** `attempt()` until it succeeds, waiting 0.5 s, 1 s, 2 s, ... (with jitter) in between. */
export async function withRetries(attempt, attempts = PART_ATTEMPTS) {
  for (let number = 1; ; number += 1) {
    try {
      return await attempt(number);
    } catch (error) {
      if (number >= attempts) throw error;
      await pause(BACKOFF_MS * 2 ** (number - 1) * (0.5 + Math.random()));
    }
  }
}

/**
 * One file's journey: state is queued -> uploading -> processing -> processed | rejected,
 * or refused (the API said no: type, size), failed or paused (a multipart part kept failing).
 */
export class UploadJob {
  constructor(file, { dataset, threshold }) {
    this.file = file;
    this.dataset = isDataFile(file) ? dataset : undefined;
    this.threshold = threshold;
    this.state = "queued";
    this.loaded = 0;
    this.key = null;
    this.message = "";
    this.receipt = null;
    this.multipart = null;
    this.listeners = new Set();
  }

  get total() { return this.file.size; }

  set(changes) {
    Object.assign(this, changes);
    for (const listener of this.listeners) listener(this);
  }

  request() {
    const body = { filename: this.file.name, content_type: contentTypeOf(this.file), size: this.file.size };
    if (this.dataset) body.dataset = this.dataset;
    return body;
  }

  /** Send the file, then follow its receipt; never throws (the state says what happened). */
  async run(api, { pollMs = 2000, signal } = {}) {
    try {
      this.set({ state: "uploading", message: "" });
      if (this.file.size > this.threshold) await this.sendMultipart(api);
      else await this.sendOnePut(api);
      this.set({ state: "processing", loaded: this.total, message: "waiting for the pipeline" });
      await this.followReceipt(api, pollMs, signal);
    } catch (error) {
      if (error instanceof ApiError && [413, 415, 422, 400].includes(error.status)) {
        const what = error.status === 415 ? `the type ${contentTypeOf(this.file)} is not accepted`
          : error.status === 413 ? `${this.file.name} is too large` : "the API refused this file";
        this.set({ state: "refused", message: `${what}: ${error.message}` });
      } else if (this.multipart) {
        this.set({ state: "paused", message: `${error.message}; resume sends only the missing parts` });
      } else {
        this.set({ state: "failed", message: error.message });
      }
    }
  }

  async sendOnePut(api) {
    const target = await api.createUpload(this.request());
    this.key = target.key;
    await withRetries(() => putWithProgress(target.url, target.headers, this.file, (loaded) => this.set({ loaded })));
  }

  async sendMultipart(api) {
    if (!this.multipart) {
      const started = await api.createMultipart(this.request());
      this.key = started.key;
      this.multipart = { ...started, done: new Map() };
    }
    const { parts, part_size: partSize, done } = this.multipart;
    const inFlight = new Map();
    const progress = () => {
      let loaded = 0;
      for (const number of done.keys()) loaded += this.partBlob(number, partSize).size;
      for (const value of inFlight.values()) loaded += value;
      this.set({ loaded });
    };
    const waiting = parts.filter((part) => !done.has(part.part_number));
    const worker = async () => {
      for (let part = waiting.shift(); part; part = waiting.shift()) {
        const blob = this.partBlob(part.part_number, partSize);
        const etag = await withRetries(() => putWithProgress(part.url, {}, blob, (loaded) => {
          inFlight.set(part.part_number, loaded);
          progress();
        }));
        inFlight.delete(part.part_number);
        done.set(part.part_number, etag);
        progress();
      }
    };
    await Promise.all(Array.from({ length: PART_CONCURRENCY }, worker));
    const list = [...done.entries()].sort((a, b) => a[0] - b[0]).map(([number, etag]) => ({ part_number: number, etag }));
    await api.completeMultipart(this.multipart.upload_id, list);
  }

  partBlob(number, partSize) {
    return this.file.slice((number - 1) * partSize, Math.min(number * partSize, this.file.size));
  }

  async followReceipt(api, pollMs, signal) {
    while (!signal?.aborted) {
      try {
        const receipt = await api.getInput(this.key);
        if (receipt.status === "processed" || receipt.status === "rejected") {
          const reasons = (receipt.errors || []).map(describeError);
          this.set({ state: receipt.status, receipt, message: reasons.join("; ") });
          return;
        }
      } catch (error) {
        if (!(error instanceof ApiError) || error.status !== 404) throw error;
      }
      await pause(pollMs, signal);
    }
  }
}

/** An error of a receipt in words: where (record, path, line) and why, never a value. */
export function describeError(error) {
  const where = [];
  if (error.record_index !== undefined) where.push(`record ${error.record_index}`);
  if (error.path) where.push(error.path);
  if (error.line !== undefined) where.push(`line ${error.line}`);
  return where.length ? `${where.join(", ")}: ${error.message}` : String(error.message || error.code);
}
