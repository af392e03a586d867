// The devpulse TypeScript client (its compiled dist/client.js) against a REAL devpulse server.
//
//   DEVPULSE_URL=http://127.0.0.1:8000 DEVPULSE_TOKEN=dp_... DEVPULSE_DEVELOPER=dev-1 node --test clients/typescript/test/
//
// tests/clients/test_typescript_client.py starts the server and runs this. Without DEVPULSE_URL the tests that
// need a server are skipped. When DEVPULSE_RECORD_FILE is set, the event_ids that must end up stored are appended
// to it (one per line) so the Python side can check raw_events.

import assert from "node:assert/strict";
import { appendFileSync } from "node:fs";
import http from "node:http";
import { test } from "node:test";

import { DevpulseClient, MemoryStore, mementoStore, parseRetryAfter } from "../dist/client.js";

const URL_ = process.env.DEVPULSE_URL;
const TOKEN = process.env.DEVPULSE_TOKEN;
const DEVELOPER = process.env.DEVPULSE_DEVELOPER ?? "dev-1";
const live = { skip: URL_ && TOKEN ? false : "DEVPULSE_URL and DEVPULSE_TOKEN are not set (no server)" };

function expectStored(ids) {
  if (process.env.DEVPULSE_RECORD_FILE && ids.length) {
    appendFileSync(process.env.DEVPULSE_RECORD_FILE, ids.map((id) => id + "\n").join(""));
  }
}

function save(file = "src/extension.ts") {
  return { type: "file.save", payload: { file, language: "typescript" } };
}

function client(options = {}) {
  return new DevpulseClient({
    url: URL_,
    token: TOKEN,
    developerId: DEVELOPER,
    client: { extension_version: "0.1.0", editor: "vscode", editor_version: "1.95.0", os: process.platform },
    flushIntervalMs: 0,
    baseDelayMs: 1,
    ...options,
  });
}

async function getBatch(batchId) {
  const response = await fetch(`${URL_}/api/workflow/batches/${batchId}`, {
    headers: { Authorization: `Bearer ${TOKEN}` },
  });
  assert.equal(response.status, 200, await response.clone().text());
  return response.json();
}

/** A promise of the next acknowledgement, and the callback to pass as onAcknowledged. */
function nextAck() {
  let resolve;
  const promise = new Promise((r) => (resolve = r));
  return { promise, onAcknowledged: (ack) => resolve(ack) };
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A port nothing listens on. */
async function deadPort() {
  const server = http.createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

// ------------------------------------------------------------------------------------------------ no server needed

test("backoff is exponential with full jitter, capped", () => {
  const c = new DevpulseClient({ url: "http://127.0.0.1:9", token: "t", developerId: "d", flushIntervalMs: 0,
    baseDelayMs: 100, maxDelayMs: 1000, random: () => 0.999999 });
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((n) => c.backoff(n)), [99, 199, 399, 799, 999, 999]);
  const zero = new DevpulseClient({ url: "http://127.0.0.1:9", token: "t", developerId: "d", flushIntervalMs: 0,
    random: () => 0 });
  assert.equal(zero.backoff(3), 0);
});

test("Retry-After as seconds or an HTTP date", () => {
  const now = new Date("2024-05-01T12:00:00Z");
  assert.equal(parseRetryAfter("3", now), 3000);
  assert.equal(parseRetryAfter("Wed, 01 May 2024 12:00:05 GMT", now), 5000);
  assert.equal(parseRetryAfter(null, now), undefined);
  assert.equal(parseRetryAfter("soon", now), undefined);
});

test("network errors: bounded retries with jittered sleeps, the batch stays stored", async () => {
  const sleeps = [];
  const errors = [];
  const store = new MemoryStore();
  const c = new DevpulseClient({
    url: "http://127.0.0.1:9", token: "t", developerId: "d", flushIntervalMs: 0, store,
    maxAttempts: 4, baseDelayMs: 100, random: () => 0.5,
    fetch: async () => { throw new TypeError("fetch failed"); },
    sleep: async (ms) => { sleeps.push(ms); },
    onError: (e) => errors.push(e),
  });
  c.record(save());
  const result = await c.flush();
  assert.deepEqual(sleeps, [50, 100, 200]);
  assert.equal(errors.length, 4);
  assert.equal(result.pending, 1);
  assert.equal(store.state.batches.length, 1);
  assert.equal(store.state.batches[0].events.length, 1);
});

test("mementoStore adapts a VS Code globalState-like memento", async () => {
  const data = new Map();
  const memento = { get: (k) => data.get(k), update: async (k, v) => { data.set(k, v); } };
  const c = new DevpulseClient({ url: "http://127.0.0.1:9", token: "t", developerId: "d", flushIntervalMs: 0,
    store: mementoStore(memento) });
  const id = c.record(save());
  await c.persisted();
  assert.equal(data.get("devpulse.pending").buffer[0].event_id, id);
});

// ----------------------------------------------------------------------------------------------- the real server

test("a batch is sent as soon as maxBatchEvents are buffered", live, async () => {
  const ack = nextAck();
  const c = client({ maxBatchEvents: 3, onAcknowledged: ack.onAcknowledged });
  const ids = [c.record(save("a.ts")), c.record(save("b.ts")), c.record(save("c.ts"))];
  const first = await withTimeout(ack.promise, 10_000, "size flush");
  assert.equal(first.status, 202);
  assert.equal(first.body.accepted, 3);
  assert.equal((await getBatch(first.batch_id)).accepted, 3);

  ids.push(c.record(save("d.ts")));
  assert.equal(c.pendingEvents, 1); // below the size: waits for the timer or a flush
  const result = await c.close();
  assert.equal(result.acknowledged.length, 1);
  assert.equal(result.acknowledged[0].body.accepted, 1);
  expectStored(ids);
});

test("the timer flushes what is buffered", live, async () => {
  const ack = nextAck();
  const c = client({ flushIntervalMs: 200, maxBatchEvents: 100, onAcknowledged: ack.onAcknowledged });
  const started = Date.now();
  const ids = [c.record(save("timer-1.ts")), c.record(save("timer-2.ts"))];
  const got = await withTimeout(ack.promise, 10_000, "timer flush");
  assert.ok(Date.now() - started >= 150, "sent before the interval elapsed");
  assert.equal(got.body.accepted, 2);
  assert.equal(c.pendingEvents, 0);
  await c.close();
  expectStored(ids);
});

test("a resend after a lost response is a duplicate: success, stored once", live, async () => {
  const sent = [];
  let calls = 0;
  const c = client({
    fetch: async (url, init) => {
      sent.push(JSON.parse(init.body));
      const response = await fetch(url, init);
      if (++calls === 1) {
        await response.text(); // the server stored it, but the answer never reaches the client
        throw new TypeError("socket hang up");
      }
      return response;
    },
  });
  const ids = [c.record(save("r1.ts")), c.record(save("r2.ts")), c.record(save("r3.ts"))];
  const result = await c.flush();
  assert.equal(result.acknowledged.length, 1);
  const [ack] = result.acknowledged;
  assert.equal(ack.status, 200);
  assert.equal(ack.body.status, "duplicate");
  assert.equal(ack.attempts, 2);
  assert.equal(sent.length, 2);
  assert.equal(sent[0].batch_id, sent[1].batch_id);
  assert.deepEqual(sent[0].events, sent[1].events);
  assert.ok(sent[0].sent_at && sent[1].sent_at);
  const batch = await getBatch(ack.batch_id);
  assert.equal(batch.received, 3);
  assert.equal(batch.accepted, 3);
  assert.equal(c.pendingBatches, 0);
  expectStored(ids);
});

test("503 and 429 are retried after their Retry-After, then delivered", live, async () => {
  let requests = 0;
  const proxy = http.createServer(async (req, res) => {
    requests += 1;
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    if (requests === 1) {
      res.writeHead(503, { "Retry-After": "1", "Content-Type": "application/json" });
      res.end(JSON.stringify({ error: { code: "storage_unavailable", message: "down", details: [] } }));
      return;
    }
    if (requests === 2) {
      res.writeHead(429, { "Retry-After": "1", "Content-Type": "application/json" });
      res.end(JSON.stringify({ error: { code: "rate_limited", message: "slow down", details: [] } }));
      return;
    }
    const upstream = await fetch(URL_ + req.url, {
      method: req.method,
      headers: { "Content-Type": req.headers["content-type"], Authorization: req.headers.authorization },
      body: Buffer.concat(chunks),
    });
    res.writeHead(upstream.status, { "Content-Type": "application/json" });
    res.end(await upstream.text());
  });
  await new Promise((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  try {
    const sleeps = [];
    const c = client({
      url: `http://127.0.0.1:${proxy.address().port}`,
      maxAttempts: 5,
      sleep: (ms) => { sleeps.push(ms); return new Promise((r) => setTimeout(r, ms)); },
    });
    const ids = [c.record(save("retry.ts"))];
    const started = Date.now();
    const result = await c.flush();
    assert.ok(Date.now() - started >= 1900, "Retry-After was not honoured");
    assert.deepEqual(sleeps, [1000, 1000]);
    assert.equal(requests, 3);
    assert.equal(result.acknowledged.length, 1);
    assert.equal(result.acknowledged[0].status, 202);
    assert.equal(result.acknowledged[0].attempts, 3);
    expectStored(ids);
  } finally {
    await new Promise((resolve) => proxy.close(resolve));
  }
});

test("events rejected one by one go to onRejected and are never resent", live, async () => {
  let requests = 0;
  const rejected = [];
  const c = client({
    fetch: (url, init) => { requests += 1; return fetch(url, init); },
    onRejected: (rejections, batchId) => rejected.push({ rejections, batchId }),
  });
  const good = c.record(save("ok.ts"));
  const bad = c.record({ type: "file.edit", payload: { file: "x.ts" } }); // lines_added/deleted missing
  const result = await c.flush();
  assert.equal(result.acknowledged[0].status, 202);
  assert.equal(result.acknowledged[0].body.status, "partially_accepted");
  assert.equal(rejected.length, 1);
  assert.equal(rejected[0].rejections.length, 1);
  const [r] = rejected[0].rejections;
  assert.equal(r.event_id, bad);
  assert.equal(r.index, 1);
  assert.equal(r.code, "missing_field");
  assert.equal(r.event.type, "file.edit");
  assert.equal(c.pendingBatches, 0);

  // A batch where nothing is valid (422): every event reported, the batch dropped, no retry.
  c.record({ type: "no.such.type", payload: {} });
  const all = await c.flush();
  assert.equal(all.acknowledged[0].status, 422);
  assert.equal(rejected.length, 2);
  assert.equal(rejected[1].rejections[0].code, "unknown_event_type");
  assert.equal(requests, 2);
  await c.flush();
  assert.equal(requests, 2);
  expectStored([good]);
});

test("409 batch_conflict and 401 drop the batch once, reported to onBatchDropped", live, async () => {
  const first = client();
  const ids = [first.record(save("conflict.ts"))];
  const sent = await first.flush();
  const batchId = sent.acknowledged[0].batch_id;
  expectStored(ids);

  // The same batch_id with other content (e.g. a store restored from an older backup).
  const store = new MemoryStore({ version: 1, buffer: [], batches: [{
    batch_id: batchId, created_at: new Date().toISOString(),
    events: [{ event_id: crypto.randomUUID(), type: "file.save", timestamp: new Date().toISOString(),
               payload: { file: "other.ts" } }],
  }] });
  const dropped = [];
  let requests = 0;
  const second = client({ store, onBatchDropped: (d) => dropped.push(d),
    fetch: (url, init) => { requests += 1; return fetch(url, init); } });
  const result = await second.flush();
  assert.equal(result.dropped.length, 1);
  assert.deepEqual([dropped[0].status, dropped[0].code], [409, "batch_conflict"]);
  assert.equal(dropped[0].batch.batch_id, batchId);
  assert.equal(result.pending, 0);
  assert.deepEqual(store.state.batches, []);
  await second.flush();
  assert.equal(requests, 1);

  const unauthorized = client({ token: "dp_wrong", onBatchDropped: (d) => dropped.push(d) });
  unauthorized.record(save());
  const denied = await unauthorized.flush();
  assert.deepEqual([denied.dropped[0].status, denied.dropped[0].code], [401, "invalid_token"]);
  assert.equal(unauthorized.pendingEvents, 0);
});

test("what a crashed client left in the store is sent by the next instance", live, async () => {
  const store = new MemoryStore();
  const crashed = client({ url: `http://127.0.0.1:${await deadPort()}`, store, maxAttempts: 2 });
  const ids = [crashed.record(save("offline-1.ts")), crashed.record(save("offline-2.ts"))];
  const offline = await crashed.flush();
  assert.equal(offline.pending, 1); // unreachable: the batch waits in the store
  ids.push(crashed.record(save("offline-3.ts"))); // still in the open buffer when the process dies
  await crashed.persisted();
  const storedBatchId = store.state.batches[0].batch_id;
  assert.equal(store.state.buffer.length, 1);

  const next = client({ store });
  const result = await next.flush();
  assert.equal(result.acknowledged.length, 2);
  assert.equal(result.acknowledged[0].batch_id, storedBatchId); // the same batch_id: idempotent
  assert.equal(result.acknowledged[0].body.accepted, 2);
  assert.equal(result.acknowledged[1].body.accepted, 1);
  assert.deepEqual(store.state, { version: 1, buffer: [], batches: [] });
  assert.equal((await getBatch(storedBatchId)).accepted, 2);
  expectStored(ids);
});
