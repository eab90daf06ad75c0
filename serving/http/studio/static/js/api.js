// Kiln's public HTTP API, as any script could call it. The key travels only in the
// Authorization header: images are fetched as Blobs (shown through blob: URLs), and a
// job's event stream is read with fetch() and a ReadableStream, not EventSource (which
// cannot send headers).

import { parseSSE } from "./sse.js";

/** An API error: the server's error object (DESIGN.md §5) plus the HTTP status. */
export class ApiError extends Error {
  constructor(status, error, requestId) {
    super(error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = error?.code ?? null;
    this.param = error?.param ?? null;
    this.type = error?.type ?? null;
    this.requestId = requestId;
    // 402's message says "this request needs N, M available": kept as numbers too.
    const credits = /needs (\d+), (\d+) available/.exec(this.message);
    this.needed = credits ? Number(credits[1]) : null;
    this.available = credits ? Number(credits[2]) : null;
  }
}

function query(params) {
  const pairs = Object.entries(params || {}).filter(([, v]) => v !== undefined && v !== null && v !== "");
  return pairs.length ? `?${new URLSearchParams(pairs)}` : "";
}

export class Api {
  constructor(key, { asyncJobs = false } = {}) {
    this.key = key;
    // Ask for asynchronous generations (Prefer: respond-async) and follow their events.
    this.asyncJobs = asyncJobs;
  }

  async request(method, path, { json, params, headers, signal } = {}) {
    const init = { method, headers: { authorization: `Bearer ${this.key}`, ...headers }, signal };
    if (json !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(json);
    }
    const response = await fetch(path + query(params), init);
    if (!response.ok) {
      let body = null;
      try {
        body = await response.json();
      } catch {
        body = null;
      }
      throw new ApiError(response.status, body?.error, response.headers.get("x-request-id"));
    }
    return response;
  }

  async json(method, path, options) {
    return (await this.request(method, path, options)).json();
  }

  async blob(path, params) {
    return (await this.request("GET", path, { params })).blob();
  }

  models() { return this.json("GET", "/v1/models"); }
  styles() { return this.json("GET", "/v1/styles"); }
  prices() { return this.json("GET", "/v1/prices"); }
  credits(params) { return this.json("GET", "/v1/credits", { params }); }
  assets(params) { return this.json("GET", "/v1/assets", { params }); }
  asset(id) { return this.json("GET", `/v1/assets/${encodeURIComponent(id)}`); }
  preview(id) { return this.blob(`/v1/assets/${encodeURIComponent(id)}/preview`); }
  deleteAsset(id) { return this.json("DELETE", `/v1/assets/${encodeURIComponent(id)}`); }
  buyLicense(id) { return this.json("POST", `/v1/assets/${encodeURIComponent(id)}/license`); }
  license(id) { return this.json("GET", `/v1/licenses/${encodeURIComponent(id)}`); }
  upscale(id, body) { return this.json("POST", `/v1/assets/${encodeURIComponent(id)}/upscale`, { json: body }); }
  removeBackground(id) {
    return this.json("POST", `/v1/assets/${encodeURIComponent(id)}/remove-background`, { json: {} });
  }
  download(id, params) { return this.blob(`/v1/assets/${encodeURIComponent(id)}/download`, params); }
  imageToPrompt(body) { return this.json("POST", "/v1/image-to-prompt", { json: body }); }
  pins() { return this.json("GET", "/v1/pins"); }
  createPin(body) { return this.json("POST", "/v1/pins", { json: body }); }

  /**
   * A generation (native or agentic). Synchronous unless ``asyncJobs``: then the server
   * may answer 202 with a job, whose events are followed until its result. ``onEvent``
   * sees each event ({type, data}) as it comes (progress, previews, queue position).
   */
  async generate(path, body, { onEvent, signal } = {}) {
    const headers = this.asyncJobs ? { prefer: "respond-async" } : {};
    const response = await this.request("POST", path, { json: body, headers, signal });
    const answer = await response.json();
    if (response.status !== 202) return answer; // the server answered synchronously
    return this.followJob(answer.id || answer.job?.id, { onEvent, signal });
  }

  /** Read a job's SSE stream until it ends; its result (or an ApiError for its error). */
  async followJob(jobId, { onEvent, signal } = {}) {
    const response = await this.request("GET", `/v1/jobs/${encodeURIComponent(jobId)}/events`, {
      headers: { accept: "text/event-stream" },
      signal,
    });
    for await (const event of parseSSE(response.body)) {
      onEvent?.(event);
      if (event.type === "error") throw new ApiError(401, event.data?.error);
      if (event.type !== "state") continue;
      const state = event.data?.state;
      if (state === "succeeded") return event.data.result ?? (await this.job(jobId)).result;
      if (state === "failed" || state === "cancelled") {
        const job = await this.job(jobId);
        throw new ApiError(500, { message: job.error || `job ${state}`, code: job.error_code });
      }
    }
    // The stream closed early (a proxy, a restart): the job's own record has the answer.
    const job = await this.job(jobId);
    if (job.state === "succeeded") return job.result;
    throw new ApiError(500, { message: job.error || `job ${job.state}`, code: job.error_code });
  }

  job(id) { return this.json("GET", `/v1/jobs/${encodeURIComponent(id)}`); }
}
