/**
 * devpulse client for editor extensions: dependency-free, uses `fetch`.
 *
 * - `record(event)` buffers events; they are sent as one batch every `flushIntervalMs` or as soon as
 *   `maxBatchEvents` are buffered.
 * - Every batch gets a client-generated `batch_id` (crypto.randomUUID) when it is cut, and every event an
 *   `event_id`, so a resend after a timeout is idempotent: the server answers `200 duplicate`, which is success.
 * - The open buffer and every unsent batch live in a pluggable `BatchStore` (in memory by default; back it with
 *   VS Code's `globalState` to survive restarts and offline periods). `sent_at` is stamped at each send, so the
 *   server can correct the client's clock skew.
 * - Network errors, 429 and 5xx are retried with exponential backoff and full jitter, honouring `Retry-After`;
 *   after `maxAttempts` the batch stays in the store for the next flush. Events the server rejected one by one
 *   (202 `errors`, or a 422 where no event was valid) are reported to `onRejected` and never resent; any other 4xx
 *   (409 batch_conflict, 400, 401, 403, 413, 415) reports the batch to `onBatchDropped` and drops it, so the
 *   client never loops forever.
 */
export const DEFAULT_SCHEMA_VERSION = "1.1";
export const INGEST_PATH = "/api/workflow/events/orchestrate";
export const STATE_VERSION = 1;
/** The default store: survives nothing but lets several client instances in one process share state. */
export class MemoryStore {
    state;
    constructor(initial) {
        this.state = initial ? clone(initial) : undefined;
    }
    load() {
        return this.state ? clone(this.state) : undefined;
    }
    save(state) {
        this.state = clone(state);
    }
}
/** A store over a VS Code `Memento` (`context.globalState`) or anything with the same get/update. */
export function mementoStore(memento, key = "devpulse.pending") {
    return {
        load: () => memento.get(key),
        save: async (state) => {
            await memento.update(key, state);
        },
    };
}
const RETRYABLE = new Set([408, 425, 429, 500, 502, 503, 504]);
export class DevpulseClient {
    options;
    opts;
    endpoint;
    store;
    fetchImpl;
    uuid;
    random;
    sleep;
    now;
    buffer = [];
    batches = [];
    ready;
    saving = Promise.resolve();
    flushing;
    flushAgain = false;
    timer;
    closed = false;
    constructor(options) {
        this.options = options;
        if (!options.url || !options.token || !options.developerId) {
            throw new TypeError("devpulse: url, token and developerId are required");
        }
        this.opts = {
            flushIntervalMs: options.flushIntervalMs ?? 10_000,
            maxBatchEvents: Math.max(1, Math.min(options.maxBatchEvents ?? 100, 1000)),
            maxAttempts: Math.max(1, options.maxAttempts ?? 6),
            baseDelayMs: options.baseDelayMs ?? 500,
            maxDelayMs: options.maxDelayMs ?? 60_000,
            maxRetryAfterMs: options.maxRetryAfterMs ?? 300_000,
            requestTimeoutMs: options.requestTimeoutMs ?? 30_000,
            schemaVersion: options.schemaVersion ?? DEFAULT_SCHEMA_VERSION,
        };
        this.endpoint = options.url.replace(/\/+$/, "") + INGEST_PATH;
        this.store = options.store ?? new MemoryStore();
        const f = options.fetch ?? globalThis.fetch;
        if (typeof f !== "function")
            throw new TypeError("devpulse: no fetch available; pass options.fetch");
        this.fetchImpl = f.bind(globalThis);
        this.uuid = options.randomUUID ?? (() => globalThis.crypto.randomUUID());
        this.random = options.random ?? Math.random;
        this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
        this.now = options.now ?? (() => new Date());
        this.ready = this.restore();
        if (this.opts.flushIntervalMs > 0) {
            this.timer = setInterval(() => {
                if (this.buffer.length || this.batches.length)
                    this.flush().catch((e) => this.report(e));
            }, this.opts.flushIntervalMs);
            // Never keep a Node process (or the extension host's shutdown) waiting for the timer.
            this.timer.unref?.();
        }
    }
    /** Buffer one event; returns its event_id. A full buffer is cut into a batch and sent right away. */
    record(event) {
        if (this.closed)
            throw new Error("devpulse: client is closed");
        if (!event || typeof event.type !== "string" || !event.type) {
            throw new TypeError("devpulse: an event needs a type");
        }
        const ts = event.timestamp instanceof Date ? event.timestamp.toISOString()
            : event.timestamp ?? this.now().toISOString();
        const wire = {
            event_id: event.event_id ?? this.uuid(),
            type: event.type,
            timestamp: ts,
            payload: event.payload ?? {},
        };
        if (event.session_id !== undefined)
            wire.session_id = event.session_id;
        if (event.schema_version !== undefined)
            wire.schema_version = event.schema_version;
        this.buffer.push(wire);
        if (this.buffer.length >= this.opts.maxBatchEvents) {
            this.cut();
            this.flush().catch((e) => this.report(e));
        }
        else {
            this.persist();
        }
        return wire.event_id;
    }
    /** Events buffered plus events in unsent batches. */
    get pendingEvents() {
        return this.buffer.length + this.batches.reduce((n, b) => n + b.events.length, 0);
    }
    get pendingBatches() {
        return this.batches.length;
    }
    /** Cut the buffer into a batch and send every stored batch, oldest first. Concurrent calls coalesce. */
    async flush() {
        await this.ready;
        if (this.flushing) {
            // The running flush goes round once more and sends what was added meanwhile.
            this.flushAgain = true;
            return this.flushing;
        }
        this.flushing = this.drain().finally(() => {
            this.flushing = undefined;
        });
        return this.flushing;
    }
    /** Stop the timer, then try one last flush; whatever is unsent stays in the store for the next instance. */
    async close() {
        if (this.timer !== undefined)
            clearInterval(this.timer);
        this.timer = undefined;
        const result = await this.flush();
        this.closed = true;
        await this.saving;
        return result;
    }
    /** Resolves once everything written so far has reached the store. */
    async persisted() {
        await this.ready;
        await this.saving;
    }
    // ---------------------------------------------------------------------------------------------------- internals
    async restore() {
        let state;
        try {
            state = await this.store.load();
        }
        catch (error) {
            this.report(error);
        }
        if (state && state.version === STATE_VERSION) {
            // Events recorded before the store answered come after the restored ones.
            this.buffer = [...(state.buffer ?? []), ...this.buffer];
            this.batches = [...(state.batches ?? []), ...this.batches];
        }
    }
    cut() {
        while (this.buffer.length) {
            const events = this.buffer.splice(0, this.opts.maxBatchEvents);
            this.batches.push({ batch_id: this.uuid(), events, created_at: this.now().toISOString() });
        }
        this.persist();
    }
    persist() {
        const snapshot = () => ({
            version: STATE_VERSION,
            buffer: clone(this.buffer),
            batches: clone(this.batches),
        });
        // Saves are chained so they land in order; each writes the state as of when it runs.
        this.saving = this.saving
            .then(() => this.ready)
            .then(() => this.store.save(snapshot()))
            .catch((error) => this.report(error));
    }
    async drain() {
        const result = { acknowledged: [], dropped: [], pending: 0 };
        do {
            this.flushAgain = false;
            if (this.buffer.length)
                this.cut();
            while (this.batches.length) {
                const batch = this.batches[0];
                const outcome = await this.sendWithRetries(batch);
                if (outcome.kind === "retry") {
                    // Retries exhausted for now: keep this and every later batch, in order, for the next flush.
                    result.pending = this.batches.length;
                    await this.saving;
                    return result;
                }
                this.batches = this.batches.filter((b) => b.batch_id !== batch.batch_id);
                this.persist();
                if (outcome.kind === "ack") {
                    result.acknowledged.push(outcome.ack);
                    this.safe(() => this.options.onAcknowledged?.(outcome.ack));
                }
                else {
                    result.dropped.push(outcome.dropped);
                    this.safe(() => this.options.onBatchDropped?.(outcome.dropped));
                }
            }
        } while (this.flushAgain);
        result.pending = this.batches.length;
        await this.saving;
        return result;
    }
    async sendWithRetries(batch) {
        let last;
        for (let attempt = 1; attempt <= this.opts.maxAttempts; attempt++) {
            if (attempt > 1) {
                const delay = last?.kind === "retry" && last.delayMs !== undefined
                    ? last.delayMs
                    : this.backoff(attempt - 1);
                await this.sleep(delay);
            }
            last = await this.sendOnce(batch, attempt);
            if (last.kind !== "retry")
                return last;
            this.report(last.error);
        }
        return last;
    }
    /** Full jitter: random() * min(maxDelayMs, baseDelayMs * 2^(retry-1)). */
    backoff(retry) {
        const ceiling = Math.min(this.opts.maxDelayMs, this.opts.baseDelayMs * 2 ** Math.max(0, retry - 1));
        return Math.floor(this.random() * ceiling);
    }
    async sendOnce(batch, attempt) {
        const body = {
            batch_id: batch.batch_id,
            developer_id: this.options.developerId,
            sent_at: this.now().toISOString(), // stamped at each send: the server corrects clock skew with it
            schema_version: this.opts.schemaVersion,
            ...(this.options.client ? { client: this.options.client } : {}),
            events: batch.events,
        };
        let response;
        let text;
        try {
            response = await this.fetchImpl(this.endpoint, {
                method: "POST",
                headers: {
                    "Authorization": `Bearer ${this.options.token}`,
                    "Content-Type": "application/json",
                    "Accept": "application/json",
                },
                body: JSON.stringify(body),
                signal: AbortSignal.timeout(this.opts.requestTimeoutMs),
            });
            text = await response.text();
        }
        catch (error) {
            return { kind: "retry", delayMs: undefined, error };
        }
        const json = parseJson(text);
        const status = response.status;
        // 422 "rejected": no event of the batch is valid; each is reported like a per-event rejection.
        if (status === 200 || status === 202 || (status === 422 && json?.status === "rejected")) {
            this.reportRejections(batch, json);
            return { kind: "ack", ack: { batch_id: batch.batch_id, status, body: json, attempts: attempt } };
        }
        if (RETRYABLE.has(status)) {
            const retryAfter = parseRetryAfter(response.headers.get("Retry-After"), this.now());
            const delayMs = retryAfter === undefined ? undefined : Math.min(retryAfter, this.opts.maxRetryAfterMs);
            return { kind: "retry", delayMs, error: new Error(`devpulse: HTTP ${status} (${errorCode(json) ?? "no code"})`) };
        }
        const dropped = {
            batch,
            status,
            code: errorCode(json) ?? `http_${status}`,
            message: errorMessage(json) ?? text.slice(0, 200),
            body: json,
        };
        return { kind: "dropped", dropped };
    }
    reportRejections(batch, json) {
        const errors = Array.isArray(json?.errors) ? json.errors
            : Array.isArray(json?.error?.details) ? json.error.details : [];
        const rejections = errors
            .filter((e) => e && typeof e.index === "number")
            .map((e) => ({
            index: e.index,
            event_id: e.event_id ?? null,
            code: String(e.code ?? "invalid_event"),
            field: String(e.field ?? ""),
            message: String(e.message ?? ""),
            event: batch.events[e.index],
        }));
        if (rejections.length)
            this.safe(() => this.options.onRejected?.(rejections, batch.batch_id));
    }
    report(error) {
        this.safe(() => this.options.onError?.(error));
    }
    safe(fn) {
        try {
            fn();
        }
        catch {
            // A throwing callback must not break delivery.
        }
    }
}
/** Retry-After as milliseconds: delta-seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(value, now = new Date()) {
    if (value === null || value.trim() === "")
        return undefined;
    const trimmed = value.trim();
    if (/^\d+$/.test(trimmed))
        return Number(trimmed) * 1000;
    const date = Date.parse(trimmed);
    if (Number.isNaN(date))
        return undefined;
    return Math.max(0, date - now.getTime());
}
function parseJson(text) {
    try {
        return text ? JSON.parse(text) : undefined;
    }
    catch {
        return undefined;
    }
}
function errorCode(json) {
    return typeof json?.error?.code === "string" ? json.error.code : undefined;
}
function errorMessage(json) {
    return typeof json?.error?.message === "string" ? json.error.message : undefined;
}
function clone(value) {
    return JSON.parse(JSON.stringify(value));
}
