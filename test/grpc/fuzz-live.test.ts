// Random client frame sequences against a live tunnel server over loopback
// (the same generator as the in-memory fuzzer, test/engine/server-fuzz.ts),
// through grpc-js and the handler: nothing is logged at error level; each
// stream gets at most one close_stream and nothing after it; the tunnel
// RPC ends exactly when the sequence broke a tunnel-level rule; and a
// normal call works afterwards, on the same tunnel when it survived and on
// a fresh one. FUZZ_RUNS / FUZZ_SEED scale it up (see fuzz-config.ts).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { logVerbosity, type Server, setLogger, setLogVerbosity, status } from '@grpc/grpc-js';
import fc from 'fast-check';
import { TunnelServiceHandler } from 'grpctunnel';
import type { ServerToClient } from '#grpctunnel/gen/grpctunnel/v1/tunnel.js';
import { fuzzParameters } from '../engine/fuzz-config.js';
import { type Action, checkServerWire, framesOf, resolveId, sequence } from '../engine/server-fuzz.js';
import { EchoService, echoImplementation } from '../helpers/echo-service.js';
import { closeOf, type RawClient, rawClient, sendUnary } from '../helpers/raw-peer.js';
import { startServer, stopServer } from '../helpers/servers.js';

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('a live tunnel server under random frame sequences', () => {
  let server: Server;
  let address: string;
  const errors: string[] = [];
  before(async () => {
    const handler = new TunnelServiceHandler();
    handler.addService(EchoService, echoImplementation());
    ({ server, address } = await startServer((s) => handler.register(s)));
    const keep = (message?: unknown, ...rest: unknown[]) => errors.push([message, ...rest].map(String).join(' '));
    setLogger({ error: keep, info: () => {}, debug: () => {} });
    setLogVerbosity(logVerbosity.ERROR);
  });
  after(() => stopServer(server));

  /** A normal unary call on `peer` ends OK with its echo. */
  async function normalCall(peer: RawClient, id: number): Promise<ServerToClient[]> {
    sendUnary(peer, id, Buffer.from('ping'));
    const { frames, all, status: s } = await closeOf(peer, id);
    assert.equal(s, undefined, `normal call on stream ${id}: ${JSON.stringify(s)}`);
    const reply = frames.find((f) => f.frame?.$case === 'responseMessage')?.frame;
    assert.equal(reply?.$case === 'responseMessage' && Buffer.from(reply.value.data).toString(), 'ping');
    return all;
  }

  async function run(actions: readonly Action[]): Promise<void> {
    const peer = rawClient(address);
    try {
      const settings = await peer.frames.next(10_000);
      assert.equal(settings?.frame?.$case, 'settings');
      const opened: number[] = [];
      let last = -1;
      let violated = false;
      for (const a of actions) {
        if (a.op === 'tick') {
          await tick();
          continue;
        }
        const id = resolveId(a.id, opened, last);
        if (a.op === 'new') {
          if (id <= last) violated = true;
          else {
            last = id;
            opened.push(id);
          }
        } else if (a.op !== 'empty' && id > last) {
          violated = true;
        }
        for (const frame of framesOf(a, id)) peer.send(frame);
        if (violated) break;
      }
      const seen: ServerToClient[] = [];
      if (violated) {
        const ended = await peer.status;
        assert.notEqual(ended.code, status.OK, 'the tunnel ends for a tunnel-level violation');
      } else {
        seen.push(...(await normalCall(peer, last + 1)));
      }
      seen.push(...peer.frames.drain());
      checkServerWire(seen);
    } finally {
      peer.close();
    }
    assert.deepEqual(errors, [], 'error-level log lines');
    const fresh = rawClient(address);
    try {
      await fresh.frames.next(10_000);
      await normalCall(fresh, 1);
    } finally {
      fresh.close();
    }
  }

  it('keeps every invariant', async () => {
    await fc.assert(fc.asyncProperty(sequence, run), fuzzParameters(150));
  });
});
