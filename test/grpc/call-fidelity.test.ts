// Issue 11, item 1: a call that fails early (dead or closed tunnel, deadline
// already past, empty pool, pool wait timing out, tunnel dying mid-write),
// made the usual grpc-js way with a callback and no 'error' listener, must
// not crash the caller's process: grpc-js never hands an Error to a write
// callback, so the callback gets the status and nothing else is emitted.
// Each path runs in a child process (early-failure-child.ts), where an
// unhandled 'error' would end the process with exit code 1.
// Also: a pool call waiting for a tunnel follows its parent server call
// (cancellation, deadline) as a grpc-js call waiting for a connection does.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { afterEach, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  credentials,
  type handleUnaryCall,
  Metadata,
  propagate,
  type ServiceError,
  type StatusObject,
  status,
} from '@grpc/grpc-js';
import { EchoClient, EchoService, echoImplementation } from '../helpers/echo-service.js';
import { reverseFixture, startServer, stopAllServers, stopServer } from '../helpers/servers.js';

afterEach(stopAllServers);

const CHILD = fileURLToPath(new URL('./early-failure-child.js', import.meta.url));

interface Outcome {
  route: 'direct' | 'forward' | 'pool';
  kind: string;
  callback?: string;
  status: string;
  errors: string[];
}

/** Runs the child on one path; resolves with its exit code, stderr and outcomes. */
function runChild(path: string): Promise<{ code: number | null; stderr: string; outcomes: Outcome[] }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, path], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
    });
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    // Bounded: a hung child fails the test instead of hanging the run.
    const timer = setTimeout(() => child.kill(), 60_000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      const line = stdout.trim();
      resolve({ code, stderr, outcomes: line ? (JSON.parse(line) as Outcome[]) : [] });
    });
  });
}

const code = (s: string | undefined) => Number(s?.split(' ')[0]);

/** Checks one path: the child lives, and every call reports its status once, where grpc-js reports it. */
async function check(path: string, expected: Partial<Record<Outcome['route'], string | RegExp>>) {
  const { code: exit, stderr, outcomes } = await runChild(path);
  assert.equal(stderr, '', 'no unhandled error, no warning');
  assert.equal(exit, 0);
  assert.equal(outcomes.length, 4 * (Object.keys(expected).length + 1));
  for (const o of outcomes) {
    const what = `${path} ${o.kind} via ${o.route}`;
    if (o.kind === 'unary' || o.kind === 'clientStream') {
      assert.equal(o.callback, o.status, `${what}: the callback gets the status`);
      assert.deepEqual(o.errors, [], what);
    } else {
      assert.deepEqual(o.errors, [o.status], `${what}: one 'error', the status's, as grpc-js emits it`);
    }
    const want = o.route === 'direct' ? undefined : expected[o.route];
    if (typeof want === 'string') assert.equal(o.status, want, what);
    else if (want) assert.match(o.status, want, what);
  }
  return outcomes;
}

/** For paths with a direct analogue: the tunnel's status code is the one grpc-js gives. */
function sameCodesAsDirect(outcomes: Outcome[], routes: Array<Outcome['route']>) {
  for (const kind of ['unary', 'clientStream', 'serverStream', 'bidi']) {
    const direct = outcomes.find((o) => o.kind === kind && o.route === 'direct');
    for (const route of routes) {
      const tunneled = outcomes.find((o) => o.kind === kind && o.route === route);
      assert.equal(code(tunneled?.status), code(direct?.status), `${kind} via ${route} vs direct`);
    }
  }
}

describe('early failures never crash a callback-style caller (child process per path)', () => {
  it('closed tunnel: UNAVAILABLE, like a grpc-js channel with no connection; a pool tunnel closed mid-call: CANCELLED', async () => {
    const outcomes = await check('closed-tunnel', {
      forward: '14 the tunnel channel was closed',
      pool: '1 the tunnel channel was closed',
    });
    sameCodesAsDirect(outcomes, ['forward']);
  });

  it('deadline already past: DEADLINE_EXCEEDED, as direct', async () => {
    const outcomes = await check('expired-deadline', { forward: '4 Deadline exceeded', pool: '4 Deadline exceeded' });
    sameCodesAsDirect(outcomes, ['forward', 'pool']);
  });

  it('empty pool: UNAVAILABLE "no channels ready", as a grpc-js channel with no connection', async () => {
    const outcomes = await check('empty-pool', { pool: '14 no channels ready' });
    sameCodesAsDirect(outcomes, ['pool']);
  });

  it('pool wait (waitForReady) timing out, with writes held meanwhile: DEADLINE_EXCEEDED, as direct', async () => {
    const outcomes = await check('pool-wait-timeout', { pool: '4 Deadline exceeded while waiting for a tunnel' });
    sameCodesAsDirect(outcomes, ['pool']);
  });

  it('tunnel dying mid-write: UNAVAILABLE "tunnel closed: ..."', async () => {
    await check('dies-mid-write', { forward: /^14 tunnel closed: /, pool: /^14 tunnel closed: / });
  });
});

/**
 * A front server whose unary handler makes a waitForReady call through
 * `inner` with the handler's call as parent; resolves with that inner
 * call's status and how long it took.
 */
async function nested(
  inner: EchoClient,
  outerOptions: { deadline?: number },
  cancelOuter: boolean,
  flags: number = propagate.DEFAULTS,
): Promise<{ status: StatusObject; ms: number }> {
  let innerStatus: (r: { status: StatusObject; ms: number }) => void = () => {};
  const result = new Promise<{ status: StatusObject; ms: number }>((resolve) => {
    innerStatus = resolve;
  });
  let innerStarted: () => void = () => {};
  const started = new Promise<void>((resolve) => {
    innerStarted = resolve;
  });
  const unary: handleUnaryCall<Buffer, Buffer> = (call, callback) => {
    const begun = Date.now();
    // Its own deadline is far off (and bounds the test): only the parent can end it early.
    const c = inner.unary(
      Buffer.from('x'),
      new Metadata({ waitForReady: true }),
      { parent: call, deadline: Date.now() + 30_000, propagate_flags: flags },
      (_e: ServiceError | null) => {},
    );
    c.on('status', (s: StatusObject) => {
      innerStatus({ status: s, ms: Date.now() - begun });
      callback({ code: s.code, details: s.details });
    });
    innerStarted();
  };
  const front = await startServer((s) => s.addService(EchoService, { ...echoImplementation(), unary }));
  const outer = new EchoClient(front.address, credentials.createInsecure());
  const call = outer.unary(Buffer.from('x'), new Metadata(), outerOptions, () => {});
  await started;
  if (cancelOuter) call.cancel();
  const r = await result;
  outer.close();
  await stopServer(front.server);
  return r;
}

describe('a pool call waiting for a tunnel follows its parent call, as a grpc-js call waiting to connect', () => {
  it('the parent cancelled: the wait ends CANCELLED "Cancelled by parent call"', async () => {
    const r = await reverseFixture();
    const empty = new EchoClient('empty', credentials.createInsecure(), {
      channelOverride: r.handler.keyAsChannel('nobody'),
    });
    const unreachable = new EchoClient('127.0.0.1:1', credentials.createInsecure());
    const direct = await nested(unreachable, {}, true);
    const pool = await nested(empty, {}, true);
    assert.equal(`${direct.status.code} ${direct.status.details}`, `${status.CANCELLED} Cancelled by parent call`);
    assert.equal(`${pool.status.code} ${pool.status.details}`, `${status.CANCELLED} Cancelled by parent call`);
    unreachable.close();
    await r.close();
  });

  it("the parent's deadline bounds the wait: DEADLINE_EXCEEDED when the parent's deadline passes", async () => {
    const r = await reverseFixture();
    const empty = new EchoClient('empty', credentials.createInsecure(), {
      channelOverride: r.handler.keyAsChannel('nobody'),
    });
    const unreachable = new EchoClient('127.0.0.1:1', credentials.createInsecure());
    // Only the deadline propagates, so the parent's own cancellation at its deadline does not race it.
    const direct = await nested(unreachable, { deadline: Date.now() + 300 }, false, propagate.DEADLINE);
    const pool = await nested(empty, { deadline: Date.now() + 300 }, false, propagate.DEADLINE);
    assert.equal(direct.status.code, status.DEADLINE_EXCEEDED);
    assert.equal(pool.status.code, status.DEADLINE_EXCEEDED);
    // Its own deadline was 30 s away: it ended because the parent's passed.
    assert.ok(direct.ms < 10_000 && pool.ms < 10_000, `direct ${direct.ms} ms, pool ${pool.ms} ms`);
    unreachable.close();
    await r.close();
  });
});
