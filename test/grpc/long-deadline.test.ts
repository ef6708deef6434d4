// Issue 11, item 3 (client and pool part): a deadline beyond 2^31-1 ms
// (~24.8 days) must be honoured, not expire at once with a
// TimeoutOverflowWarning. The tunnel's far side is played by hand here
// (answering-peer.ts), so the test covers the client side alone: the call
// completes OK and carries a grpc-timeout for the whole deadline.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { credentials, Metadata, status } from '@grpc/grpc-js';
import { openTunnel, TunnelServiceHandler } from 'grpctunnel';
import { decodeTimeout } from '#grpctunnel/engine/deadline.js';
import { MAX_TIMER_MS } from '#grpctunnel/grpc/long-timer.js';
import {
  ANSWER,
  type AnsweredCall,
  answeringReverseTunnel,
  answeringTunnelService,
} from '../helpers/answering-peer.js';
import { clientStream, collect, serverStream, unary } from '../helpers/calls.js';
import { EchoClient } from '../helpers/echo-service.js';
import { startServer, stopAllServers, stopServer } from '../helpers/servers.js';

afterEach(stopAllServers);

const DAY = 24 * 3_600_000;
const MAX_GRPC_TIMEOUT_MS = 99_999_999 * 3_600_000;

let warnings: Error[] = [];
const onWarning = (w: Error) => warnings.push(w);
beforeEach(() => {
  warnings = [];
  process.on('warning', onWarning);
});
afterEach(() => {
  process.off('warning', onWarning);
});

/** The grpc-timeout a call sent, in ms. */
function sentTimeout(call: AnsweredCall | undefined): number {
  const value = call?.headers['grpc-timeout'];
  assert.ok(value, 'the call carries a grpc-timeout');
  const ms = decodeTimeout(value);
  assert.ok(ms !== undefined, `a valid grpc-timeout: ${value}`);
  return ms;
}

/** Waits a turn so a warning emitted by a timer set during the call is seen. */
const turn = () => new Promise((resolve) => setImmediate(resolve));

describe('deadlines beyond 2^31-1 ms', () => {
  it('a call with a 30-day deadline through a forward tunnel completes OK, every kind, without a warning', async () => {
    const calls: AnsweredCall[] = [];
    const service = answeringTunnelService(calls);
    const { server, address } = await startServer((s) => s.addService(service.definition, service.implementation));
    const connection = new EchoClient(address, credentials.createInsecure());
    const tunnel = await openTunnel(connection);
    const client = new EchoClient('tunnel', credentials.createInsecure(), { channelOverride: tunnel });
    const deadline = () => ({ deadline: Date.now() + 30 * DAY });

    const u = await unary(client, Buffer.from('x'), new Metadata(), deadline());
    assert.equal(u.error, null);
    assert.deepEqual(u.value, ANSWER);
    const c = await clientStream(client, [Buffer.from('a'), Buffer.from('b')], new Metadata(), deadline());
    assert.equal(c.error, null);
    const s = await collect(serverStream(client, 1, 1, new Metadata(), deadline()));
    assert.equal(s.error, null);
    assert.deepEqual(s.messages, [ANSWER]);
    const bidi = client.bidi(new Metadata(), deadline());
    const b = collect(bidi);
    bidi.end();
    assert.equal((await b).error, null);

    assert.equal(calls.length, 4);
    for (const call of calls) {
      const ms = sentTimeout(call);
      assert.ok(
        ms > 30 * DAY - 60_000 && ms <= 30 * DAY,
        `${call.method}: grpc-timeout ${call.headers['grpc-timeout']}`,
      );
    }
    await turn();
    assert.deepEqual(
      warnings.map((w) => w.name),
      [],
    );
    tunnel.close();
    connection.close();
    await stopServer(server);
  });

  it('the longest deadline gRPC can express (99,999,999 hours) is sent as such and honoured', async () => {
    const calls: AnsweredCall[] = [];
    const service = answeringTunnelService(calls);
    const { server, address } = await startServer((s) => s.addService(service.definition, service.implementation));
    const connection = new EchoClient(address, credentials.createInsecure());
    const tunnel = await openTunnel(connection);
    const client = new EchoClient('tunnel', credentials.createInsecure(), { channelOverride: tunnel });
    const r = await unary(client, Buffer.from('x'), new Metadata(), { deadline: Date.now() + MAX_GRPC_TIMEOUT_MS });
    assert.equal(r.error, null);
    assert.equal(calls[0]?.headers['grpc-timeout'], '99999999H');
    await turn();
    assert.deepEqual(
      warnings.map((w) => w.name),
      [],
    );
    tunnel.close();
    connection.close();
    await stopServer(server);
  });

  it('a pool call waiting (waitForReady) with a 30-day deadline, and pool.waitForReady with a 30-day timeout, wait for the tunnel', async () => {
    const handler = new TunnelServiceHandler();
    const { server, address } = await startServer((s) => handler.register(s));
    const pool = handler.asChannel();
    const client = new EchoClient('pool', credentials.createInsecure(), { channelOverride: pool });
    const waitForReady = () => new Metadata({ waitForReady: true });

    const patient = unary(client, Buffer.from('x'), waitForReady(), { deadline: Date.now() + 30 * DAY });
    const ready = pool.waitForReady({ timeout: 30 * DAY });
    const settled: string[] = [];
    void patient.then(() => settled.push('the 30-day call'));
    void ready.then(
      () => settled.push('pool.waitForReady'),
      () => settled.push('pool.waitForReady (rejected)'),
    );
    // A sibling with a short deadline: once it has expired, the long waits
    // must still be waiting (a timer that overflowed fires after 1 ms).
    const hasty = await unary(client, Buffer.from('x'), waitForReady(), { deadline: Date.now() + 200 });
    assert.equal(hasty.error?.code, status.DEADLINE_EXCEEDED);
    assert.deepEqual(settled, [], 'nothing with a 30-day wait has ended after 200 ms');
    assert.ok(30 * DAY > MAX_TIMER_MS);

    const calls: AnsweredCall[] = [];
    const peer = answeringReverseTunnel(address, calls);
    await ready;
    const r = await patient;
    assert.equal(r.error, null);
    assert.deepEqual(r.value, ANSWER);
    const ms = sentTimeout(calls[0]);
    assert.ok(ms > 30 * DAY - 60_000 && ms <= 30 * DAY, `grpc-timeout ${calls[0]?.headers['grpc-timeout']}`);
    await turn();
    assert.deepEqual(
      warnings.map((w) => w.name),
      [],
    );
    peer.close();
    await stopServer(server);
  });
});
