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

/** What an extension records: the event type from the catalog and its payload. */
export interface DevpulseEvent {
  type: string;
  payload?: Record<string, unknown>;
  /** RFC 3339 with an offset; defaults to now. */
  timestamp?: string | Date;
  /** Defaults to a random UUID. Set it yourself only if you can regenerate the same id for the same event. */
  event_id?: string;
  session_id?: string | null;
  schema_version?: string;
}

/** An event as sent on the wire. */
export interface WireEvent {
  event_id: string;
  type: string;
  timestamp: string;
  payload: Record<string, unknown>;
  session_id?: string | null;
  schema_version?: string;
}

export interface ClientInfo {
  extension_version?: string;
  editor?: string;
  editor_version?: string;
  os?: string;
}

export interface PendingBatch {
  batch_id: string;
  events: WireEvent[];
  /** When the batch was cut (ISO 8601); informational. */
  created_at: string;
}

/** Everything a client must not lose: the open buffer and the batches not yet acknowledged. */
export interface PersistedState {
  version: number;
  buffer: WireEvent[];
  batches: PendingBatch[];
}

/** Where unsent events live. `save` receives a fresh object each time; it may keep it as is. */
export interface BatchStore {
  load(): PersistedState | undefined | Promise<PersistedState | undefined>;
  save(state: PersistedState): void | Promise<void>;
}

/** The default store: survives nothing but lets several client instances in one process share state. */
export class MemoryStore implements BatchStore {
  state: PersistedState | undefined;

  constructor(initial?: PersistedState) {
    this.state = initial ? clone(initial) : undefined;
  }

  load(): PersistedState | undefined {
    return this.state ? clone(this.state) : undefined;
  }

  save(state: PersistedState): void {
    this.state = clone(state);
  }
}

/** A store over a VS Code `Memento` (`context.globalState`) or anything with the same get/update. */
export function mementoStore(
  memento: { get<T>(key: string): T | undefined; update(key: string, value: unknown): PromiseLike<void> },
  key = "devpulse.pending",
): BatchStore {
  return {
    load: () => memento.get<PersistedState>(key),
    save: async (state) => {
      await memento.update(key, state);
    },
  };
}

/** One event the server rejected (from the response's `errors`), with the event as it was sent. */
export interface EventRejection {
  index: number;
  event_id: string | null;
  code: string;
  field: string;
  message: string;
  event: WireEvent | undefined;
}

/** A batch given up on because the server refused it as a whole (any 4xx but 429). */
export interface DroppedBatch {
  batch: PendingBatch;
  status: number;
  code: string;
  message: string;
  body: unknown;
}

export interface Acknowledgement {
  batch_id: string;
  /** 202 (accepted / partially accepted), 200 (duplicate: already stored) or 422 (no event valid). */
  status: number;
  body: any;
  attempts: number;
}

export interface FlushResult {
  acknowledged: Acknowledgement[];
  dropped: DroppedBatch[];
  /** Batches still in the store (retries exhausted for now, or the client was closed). */
  pending: number;
}

export interface ClientOptions {
  /** The devpulse base URL, e.g. "https://devpulse.example.com". */
  url: string;
  /** A developer token ("dp_..."). */
  token: string;
  /** The developer the token belongs to. */
  developerId: string;
  schemaVersion?: string;
  client?: ClientInfo;
  /** Send at least this often while there is something to send (default 10 000 ms; 0 disables the timer). */
  flushIntervalMs?: number;
  /** Cut a batch as soon as this many events are buffered (default 100; the server allows 1000). */
  maxBatchEvents?: number;
  store?: BatchStore;
  /** Attempts per batch and flush for retryable failures (default 6); the batch then waits for the next flush. */
  maxAttempts?: number;
  /** Backoff: the n-th retry waits random() * min(maxDelayMs, baseDelayMs * 2^(n-1)) (full jitter). */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Upper bound for a server's Retry-After (default 300 000 ms). */
  maxRetryAfterMs?: number;
  requestTimeoutMs?: number;
  onRejected?: (rejections: EventRejection[], batchId: string) => void;
  onBatchDropped?: (dropped: DroppedBatch) => void;
  onAcknowledged?: (ack: Acknowledgement) => void;
  /** Retryable failures and store errors, for logging. */
  onError?: (error: unknown) => void;
  /** Injection points (tests, older runtimes). */
  fetch?: typeof fetch;
  randomUUID?: () => string;
  random?: () => number;
  sleep?: (ms: number) => Promise<void>;
  now?: () => Date;
}

type Outcome =
  | { kind: "ack"; ack: Acknowledgement }
  | { kind: "dropped"; dropped: DroppedBatch }
  | { kind: "retry"; delayMs: number | undefined; error: unknown };

const RETRYABLE = new Set([408, 425, 429, 500, 502, 503, 504]);

export class DevpulseClient {
  private readonly opts: Required<
    Pick<ClientOptions, "flushIntervalMs" | "maxBatchEvents" | "maxAttempts" | "baseDelayMs" | "maxDelayMs"
      | "maxRetryAfterMs" | "requestTimeoutMs" | "schemaVersion">
  >;
  private readonly endpoint: string;
  private readonly store: BatchStore;
  private readonly fetchImpl: typeof fetch;
  private readonly uuid: () => string;
  private readonly random: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly now: () => Date;

  private buffer: WireEvent[] = [];
  private batches: PendingBatch[] = [];
  private readonly ready: Promise<void>;
  private saving: Promise<void> = Promise.resolve();
  private flushing: Promise<FlushResult> | undefined;
  private flushAgain = false;
  private timer: ReturnType<typeof setInterval> | undefined;
  private closed = false;

  constructor(private readonly options: ClientOptions) {
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
    if (typeof f !== "function") throw new TypeError("devpulse: no fetch available; pass options.fetch");
    this.fetchImpl = f.bind(globalThis);
    this.uuid = options.randomUUID ?? (() => globalThis.crypto.randomUUID());
    this.random = options.random ?? Math.random;
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.now = options.now ?? (() => new Date());
    this.ready = this.restore();
    if (this.opts.flushIntervalMs > 0) {
      this.timer = setInterval(() => {
        if (this.buffer.length || this.batches.length) this.flush().catch((e) => this.report(e));
      }, this.opts.flushIntervalMs);
      // Never keep a Node process (or the extension host's shutdown) waiting for the timer.
      (this.timer as { unref?: () => void }).unref?.();
    }
  }

  /** Buffer one event; returns its event_id. A full buffer is cut into a batch and sent right away. */
  record(event: DevpulseEvent): string {
    if (this.closed) throw new Error("devpulse: client is closed");
    if (!event || typeof event.type !== "string" || !event.type) {
      throw new TypeError("devpulse: an event needs a type");
    }
    const ts = event.timestamp instanceof Date ? event.timestamp.toISOString()
      : event.timestamp ?? this.now().toISOString();
    const wire: WireEvent = {
      event_id: event.event_id ?? this.uuid(),
      type: event.type,
      timestamp: ts,
      payload: event.payload ?? {},
    };
    if (event.session_id !== undefined) wire.session_id = event.session_id;
    if (event.schema_version !== undefined) wire.schema_version = event.schema_version;
    this.buffer.push(wire);
    if (this.buffer.length >= this.opts.maxBatchEvents) {
      this.cut();
      this.flush().catch((e) => this.report(e));
    } else {
      this.persist();
    }
    return wire.event_id;
  }

  /** Events buffered plus events in unsent batches. */
  get pendingEvents(): number {
    return this.buffer.length + this.batches.reduce((n, b) => n + b.events.length, 0);
  }

  get pendingBatches(): number {
    return this.batches.length;
  }

  /** Cut the buffer into a batch and send every stored batch, oldest first. Concurrent calls coalesce. */
  async flush(): Promise<FlushResult> {
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
  async close(): Promise<FlushResult> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    const result = await this.flush();
    this.closed = true;
    await this.saving;
    return result;
  }

  /** Resolves once everything written so far has reached the store. */
  async persisted(): Promise<void> {
    await this.ready;
    await this.saving;
  }

  // ---------------------------------------------------------------------------------------------------- internals

  private async restore(): Promise<void> {
    let state: PersistedState | undefined;
    try {
      state = await this.store.load();
    } catch (error) {
      this.report(error);
    }
    if (state && state.version === STATE_VERSION) {
      // Events recorded before the store answered come after the restored ones.
      this.buffer = [...(state.buffer ?? []), ...this.buffer];
      this.batches = [...(state.batches ?? []), ...this.batches];
    }
  }

  private cut(): void {
    while (this.buffer.length) {
      const events = this.buffer.splice(0, this.opts.maxBatchEvents);
      this.batches.push({ batch_id: this.uuid(), events, created_at: this.now().toISOString() });
    }
    this.persist();
  }

  private persist(): void {
    const snapshot = (): PersistedState => ({
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

  private async drain(): Promise<FlushResult> {
    const result: FlushResult = { acknowledged: [], dropped: [], pending: 0 };
    do {
      this.flushAgain = false;
      if (this.buffer.length) this.cut();
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
        } else {
          result.dropped.push(outcome.dropped);
          this.safe(() => this.options.onBatchDropped?.(outcome.dropped));
        }
      }
    } while (this.flushAgain);
    result.pending = this.batches.length;
    await this.saving;
    return result;
  }

  private async sendWithRetries(batch: PendingBatch): Promise<Outcome> {
    let last: Outcome | undefined;
    for (let attempt = 1; attempt <= this.opts.maxAttempts; attempt++) {
      if (attempt > 1) {
        const delay = last?.kind === "retry" && last.delayMs !== undefined
          ? last.delayMs
          : this.backoff(attempt - 1);
        await this.sleep(delay);
      }
      last = await this.sendOnce(batch, attempt);
      if (last.kind !== "retry") return last;
      this.report(last.error);
    }
    return last as Outcome;
  }

  /** Full jitter: random() * min(maxDelayMs, baseDelayMs * 2^(retry-1)). */
  backoff(retry: number): number {
    const ceiling = Math.min(this.opts.maxDelayMs, this.opts.baseDelayMs * 2 ** Math.max(0, retry - 1));
    return Math.floor(this.random() * ceiling);
  }

  private async sendOnce(batch: PendingBatch, attempt: number): Promise<Outcome> {
    const body = {
      batch_id: batch.batch_id,
      developer_id: this.options.developerId,
      sent_at: this.now().toISOString(), // stamped at each send: the server corrects clock skew with it
      schema_version: this.opts.schemaVersion,
      ...(this.options.client ? { client: this.options.client } : {}),
      events: batch.events,
    };
    let response: Response;
    let text: string;
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
    } catch (error) {
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
    const dropped: DroppedBatch = {
      batch,
      status,
      code: errorCode(json) ?? `http_${status}`,
      message: errorMessage(json) ?? text.slice(0, 200),
      body: json,
    };
    return { kind: "dropped", dropped };
  }

  private reportRejections(batch: PendingBatch, json: any): void {
    const errors: any[] = Array.isArray(json?.errors) ? json.errors
      : Array.isArray(json?.error?.details) ? json.error.details : [];
    const rejections: EventRejection[] = errors
      .filter((e) => e && typeof e.index === "number")
      .map((e) => ({
        index: e.index,
        event_id: e.event_id ?? null,
        code: String(e.code ?? "invalid_event"),
        field: String(e.field ?? ""),
        message: String(e.message ?? ""),
        event: batch.events[e.index],
      }));
    if (rejections.length) this.safe(() => this.options.onRejected?.(rejections, batch.batch_id));
  }

  private report(error: unknown): void {
    this.safe(() => this.options.onError?.(error));
  }

  private safe(fn: () => void): void {
    try {
      fn();
    } catch {
      // A throwing callback must not break delivery.
    }
  }
}

/** Retry-After as milliseconds: delta-seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null, now: Date = new Date()): number | undefined {
  if (value === null || value.trim() === "") return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now.getTime());
}

function parseJson(text: string): any {
  try {
    return text ? JSON.parse(text) : undefined;
  } catch {
    return undefined;
  }
}

function errorCode(json: any): string | undefined {
  return typeof json?.error?.code === "string" ? json.error.code : undefined;
}

function errorMessage(json: any): string | undefined {
  return typeof json?.error?.message === "string" ? json.error.message : undefined;
}

function clone<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}
