// Issue 11, item 2: when a call ends early (call.cancel(), a deadline already
// past, a cancelled wait for a tunnel), a tunnel must deliver what grpc-js
// delivers, in the same order and on the same tick: never inside cancel().
// Each scenario runs directly over grpc-js, through a forward tunnel and
// through a reverse-tunnel pool, and the logs must be equal.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { type Channel, credentials, Metadata, type StatusObject } from '@grpc/grpc-js';
import { createChannel, createClient, Metadata as NiceMetadata } from 'nice-grpc';
import { serveAnyMethod } from '#gateway/gateway/any-method-server.js';
import { EchoClient, EchoService } from '../helpers/echo-service.js';
import {
  CALL_KINDS,
  type CallKind,
  type LoggedCall,
  markTicks,
  type Routes,
  settle,
  startLogged,
  startRoutes,
} from '../helpers/event-order.js';

let routes: Routes;
before(async () => {
  routes = await startRoutes();
});
after(async () => {
  await routes.close();
});

/** A call the server keeps open for seconds (it answers headers at once). */
function slow(): Metadata {
  const md = new Metadata();
  md.set('x-delay-ms', '10000');
  return md;
}

/** Resolves once the call has shown it is live: headers (and, for bidi, the echoed message). */
function live(logged: LoggedCall, kind: CallKind): Promise<void> {
  const call = logged.call as unknown as NodeJS.EventEmitter;
  return new Promise((resolve) => call.once(kind === 'bidi' ? 'data' : 'metadata', () => resolve()));
}

/** The events up to the first turn of the event loop after the act, without headers. */
function untilImmediate(log: string[]): string[] {
  // grpc-js may still hand over headers that were already on their way after
  // the status (a quirk of its own, outside what a tunnel must copy).
  return log.slice(0, log.indexOf('immediate') + 1).filter((e) => e !== 'metadata');
}

describe('call.cancel() delivers the status as grpc-js does', () => {
  for (const kind of CALL_KINDS) {
    it(`${kind}: cancel on a live call (direct = forward tunnel = pool)`, async () => {
      const logs: Record<string, string[]> = {};
      for (const route of ['direct', 'forward', 'pool'] as const) {
        const logged = startLogged(routes[route], kind, slow());
        await live(logged, kind);
        await new Promise((resolve) => setImmediate(resolve));
        await markTicks(logged.log, () => logged.call.cancel());
        await settle(logged);
        logs[route] = logged.log;
      }
      const direct = logs.direct ?? [];
      assert.ok(direct.indexOf('status:1') > direct.indexOf('returned'), 'grpc-js reports after cancel() returns');
      assert.deepEqual(logs.forward, logs.direct, 'forward tunnel');
      assert.deepEqual(logs.pool, logs.direct, 'reverse-tunnel pool');
    });

    it(`${kind}: cancel at once, before anything arrived (direct = forward tunnel = pool)`, async () => {
      const logs: Record<string, string[]> = {};
      for (const route of ['direct', 'forward', 'pool'] as const) {
        const logged = startLogged(routes[route], kind, new Metadata());
        await markTicks(logged.log, () => logged.call.cancel());
        await settle(logged);
        logs[route] = untilImmediate(logged.log);
      }
      assert.equal(logs.direct?.[0], 'returned', 'grpc-js reports nothing inside cancel()');
      assert.deepEqual(logs.forward, logs.direct, 'forward tunnel');
      assert.deepEqual(logs.pool, logs.direct, 'reverse-tunnel pool');
    });

    it(`${kind}: cancel while waiting for a connection / a tunnel (waitForReady)`, async () => {
      const logs: Record<string, string[]> = {};
      for (const route of ['unreachable', 'emptyPool'] as const) {
        const logged = startLogged(routes[route], kind, new Metadata({ waitForReady: true }), {
          deadline: Date.now() + 60_000,
        });
        await markTicks(logged.log, () => logged.call.cancel());
        await settle(logged);
        logs[route] = untilImmediate(logged.log);
      }
      assert.equal(logs.unreachable?.[0], 'returned');
      assert.deepEqual(logs.emptyPool, logs.unreachable);
    });

    it(`${kind}: a deadline already past ends the call on the same tick as grpc-js`, async () => {
      const logs: Record<string, string[]> = {};
      for (const route of ['direct', 'forward', 'pool'] as const) {
        const logged = startLogged(routes[route], kind, new Metadata(), { deadline: Date.now() - 1 });
        await markTicks(logged.log, () => {});
        await settle(logged);
        logs[route] = untilImmediate(logged.log);
      }
      assert.ok(logs.direct?.includes('status:4'));
      assert.deepEqual(logs.forward, logs.direct, 'forward tunnel');
      assert.deepEqual(logs.pool, logs.direct, 'reverse-tunnel pool');
    });
  }
});

/** Makes one nice-grpc call of `kind`, aborts it once it is live, and reports how it failed. */
async function abortNice(client: any, kind: CallKind): Promise<string> {
  const controller = new AbortController();
  const { signal } = controller;
  const onHeader = () => setImmediate(() => controller.abort());
  const metadata = NiceMetadata({ 'x-delay-ms': '10000' });
  const request = Buffer.from(JSON.stringify({ count: 1, size: 1 }));
  // A request stream that sends one message and stays open until the abort.
  async function* requests() {
    yield Buffer.from('a');
    await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
  }
  try {
    if (kind === 'unary') await client.unary(request, { signal, onHeader, metadata });
    else if (kind === 'clientStream') await client.clientStream(requests(), { signal, onHeader, metadata });
    else {
      const responses =
        kind === 'serverStream'
          ? client.serverStream(request, { signal, onHeader, metadata })
          : client.bidi(requests(), { signal, onHeader, metadata });
      for await (const _ of responses) {
        // bidi: the echo arrives before the abort; nothing to do with it
      }
    }
    return 'resolved';
  } catch (error) {
    const e = error as Error & { code?: number };
    return e.name === 'AbortError' ? e.name : `${e.name} ${e.code}: ${e.message}`;
  }
}

describe('nice-grpc aborts through a tunnel reject with AbortError, as direct', () => {
  let channel: ReturnType<typeof createChannel>;
  const clients: Record<string, any> = {};
  before(() => {
    channel = createChannel(routes.direct.getChannel().getTarget().replace(/^dns:/, ''));
    clients.direct = createClient(EchoService, channel);
    for (const route of ['forward', 'pool'] as const) {
      clients[route] = createClient(EchoService, (routes[route] as EchoClient).getChannel() as unknown as Channel);
    }
  });
  after(() => channel.close());

  for (const kind of CALL_KINDS) {
    it(`${kind}: AbortError direct, through a forward tunnel and through a pool`, async () => {
      const outcomes: Record<string, string> = {};
      for (const route of ['direct', 'forward', 'pool']) outcomes[route] = await abortNice(clients[route], kind);
      assert.deepEqual(outcomes, { direct: 'AbortError', forward: 'AbortError', pool: 'AbortError' });
    });
  }
});

describe('a gateway (serveAnyMethod) records a call its caller cancelled once, whatever carries it', () => {
  for (const route of ['direct', 'forward', 'pool'] as const) {
    it(`upstream ${route}`, async () => {
      const finished: string[] = [];
      let first: () => void = () => {};
      const firstFinish = new Promise<void>((resolve) => {
        first = resolve;
      });
      const front = http2.createServer();
      serveAnyMethod(front, {
        route: () => ({ channel: routes[route].getChannel() }),
        onFinish: (_path: string, s: StatusObject) => {
          finished.push(`${s.code} ${s.details}`);
          first();
        },
      });
      await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
      const caller = new EchoClient(`127.0.0.1:${(front.address() as AddressInfo).port}`, credentials.createInsecure());
      const logged = startLogged(caller, 'unary', slow());
      await live(logged, 'unary');
      logged.call.cancel();
      await firstFinish;
      // A second record would follow within the same turn (inside cancel()).
      await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(finished, ['1 the caller cancelled']);
      caller.close();
      await new Promise((resolve) => front.close(resolve));
    });
  }
});
