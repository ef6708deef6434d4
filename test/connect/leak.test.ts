// Connect clients and implementations through tunnels, through their whole
// life (every call kind, a deadline, an abort, an early exit, a failure),
// leave nothing open once the tunnels and servers are closed.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Code } from '@connectrpc/connect';
import { forwardEnv, reverseEnv } from './environments.js';

const WATCHED = new Set(['TCPSocketWrap', 'TCPServerWrap', 'Timeout', 'Immediate']);

function resources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) if (WATCHED.has(r)) counts[r] = (counts[r] ?? 0) + 1;
  return counts;
}

it('leaves no handles, timers or sockets behind', async () => {
  const baseline = resources();
  for (const factory of [forwardEnv, reverseEnv]) {
    const env = await factory();
    await env.client.unary({ text: 'a' }, { timeoutMs: 60_000 });
    await env.client.clientStream(
      (async function* () {
        yield { text: 'b' };
      })(),
    );
    for await (const _ of env.client.serverStream({ repeat: 3 })) {
    }
    for await (const _ of env.client.bidi(
      (async function* () {
        yield { text: 'c' };
      })(),
    )) {
    }
    await env.client.unary({ hang: true }, { timeoutMs: 30 }).catch(() => undefined);
    env.seen.rearm();
    const controller = new AbortController();
    void env.seen.hanging.then(() => controller.abort());
    await env.client.unary({ hang: true }, { signal: controller.signal }).catch(() => undefined);
    env.seen.rearm();
    for await (const _ of env.client.serverStream({ repeat: 1, hang: true })) break;
    await env.seen.aborted;
    await env.client.unary({ failCode: Code.Internal }).catch(() => undefined);
    await env.close();
  }
  // grpc-js closes sockets asynchronously: a bounded wait for the count to settle (no event tells).
  let now = resources();
  for (let i = 0; i < 100 && JSON.stringify(now) !== JSON.stringify(baseline); i++) {
    await sleep(20);
    now = resources();
  }
  assert.deepEqual(now, baseline);
});
