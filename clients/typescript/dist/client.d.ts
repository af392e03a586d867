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
export declare const DEFAULT_SCHEMA_VERSION = "1.1";
export declare const INGEST_PATH = "/api/workflow/events/orchestrate";
export declare const STATE_VERSION = 1;
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
export declare class MemoryStore implements BatchStore {
    state: PersistedState | undefined;
    constructor(initial?: PersistedState);
    load(): PersistedState | undefined;
    save(state: PersistedState): void;
}
/** A store over a VS Code `Memento` (`context.globalState`) or anything with the same get/update. */
export declare function mementoStore(memento: {
    get<T>(key: string): T | undefined;
    update(key: string, value: unknown): PromiseLike<void>;
}, key?: string): BatchStore;
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
export declare class DevpulseClient {
    private readonly options;
    private readonly opts;
    private readonly endpoint;
    private readonly store;
    private readonly fetchImpl;
    private readonly uuid;
    private readonly random;
    private readonly sleep;
    private readonly now;
    private buffer;
    private batches;
    private readonly ready;
    private saving;
    private flushing;
    private flushAgain;
    private timer;
    private closed;
    constructor(options: ClientOptions);
    /** Buffer one event; returns its event_id. A full buffer is cut into a batch and sent right away. */
    record(event: DevpulseEvent): string;
    /** Events buffered plus events in unsent batches. */
    get pendingEvents(): number;
    get pendingBatches(): number;
    /** Cut the buffer into a batch and send every stored batch, oldest first. Concurrent calls coalesce. */
    flush(): Promise<FlushResult>;
    /** Stop the timer, then try one last flush; whatever is unsent stays in the store for the next instance. */
    close(): Promise<FlushResult>;
    /** Resolves once everything written so far has reached the store. */
    persisted(): Promise<void>;
    private restore;
    private cut;
    private persist;
    private drain;
    private sendWithRetries;
    /** Full jitter: random() * min(maxDelayMs, baseDelayMs * 2^(retry-1)). */
    backoff(retry: number): number;
    private sendOnce;
    private reportRejections;
    private report;
    private safe;
}
/** Retry-After as milliseconds: delta-seconds or an HTTP date; undefined when absent or unreadable. */
export declare function parseRetryAfter(value: string | null, now?: Date): number | undefined;
