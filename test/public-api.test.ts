// The public surface as a user's compiler sees it. Most checks here are
// compile-time: this file is part of the build, so a regression (an `any`
// event payload, an internal method reachable again, affinity keys back to
// `unknown`) fails `tsc` and with it the test run. The run-time checks make
// sure what the types promise is what the objects do.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, describe, it } from 'node:test';
import { Client, credentials, type ServiceError, status } from '@grpc/grpc-js';
import * as root from 'grpctunnel';
import {
  openTunnel,
  type RetryEvent,
  type ReverseTunnel,
  ReverseTunnelServer,
  type ServeResult,
  type TunnelChannel,
  type TunnelInfo,
  type TunnelPool,
  TunnelServiceHandler,
} from 'grpctunnel';
import * as protocol from 'grpctunnel/protocol';
import { reverseFixture, stopAllServers } from './helpers/servers.js';

/** True when A and B are the same type (`any` equals nothing but `any`). */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
/** Compiles only when its type argument is `true`. */
function expectType<_T extends true>(): void {}

// Nothing listens on port 9; no call is ever made on this client.
const idle = new Client('127.0.0.1:9', credentials.createInsecure());
after(async () => {
  idle.close();
  await stopAllServers();
});

describe('the public API', () => {
  it('types every event payload', () => {
    const server = new ReverseTunnelServer(idle);
    server.on('retrying', (e) => expectType<Equal<typeof e, RetryEvent>>());
    server.on('connected', (info) => expectType<Equal<typeof info, TunnelInfo>>());
    server.on('disconnected', (result, info) => {
      expectType<Equal<typeof result, ServeResult>>();
      expectType<Equal<typeof info, TunnelInfo>>();
    });
    // @ts-expect-error: not an event of the reverse tunnel server
    server.on('reverseTunnelOpen', () => {});
    const handler = new TunnelServiceHandler();
    handler.on('reverseTunnelClose', (tunnel, error) => {
      expectType<Equal<typeof tunnel, ReverseTunnel<unknown>>>();
      expectType<Equal<typeof error, Error | undefined>>();
    });
    const channel = undefined as unknown as TunnelChannel;
    const onClose = (error: Error | undefined) => expectType<Equal<typeof error, Error | undefined>>();
    if (channel) channel.on('close', onClose);
    assert.equal(server.listenerCount('retrying'), 1);
    assert.equal(handler.listenerCount('reverseTunnelClose'), 1);
  });

  it('infers affinity keys from the affinityKey option', () => {
    const handler = new TunnelServiceHandler({ affinityKey: (t) => t.metadata.get('agent')[0] as string });
    expectType<Equal<ReturnType<typeof handler.reverseTunnelKeys>, string[]>>();
    expectType<Equal<Parameters<typeof handler.keyAsChannel>[0], string>>();
    expectType<Equal<ReturnType<typeof handler.keyAsChannel>, TunnelPool<string>>>();
    handler.on('reverseTunnelOpen', (tunnel) => expectType<Equal<typeof tunnel.key, string>>());
    // @ts-expect-error: keys are strings
    handler.keyAsChannel(42);
    // A handler with typed keys still fits code written for any handler.
    const any: TunnelServiceHandler = handler;
    assert.ok(any);
  });

  it('keeps the internals of channels and pools out of reach', () => {
    const handler = new TunnelServiceHandler();
    const pool = handler.asChannel();
    // @ts-expect-error: pools pick tunnels for their calls only
    assert.equal(typeof pool.pick, 'function');
    // @ts-expect-error: nor do users watch a pool's membership through it
    assert.equal(typeof pool.watch, 'function');
    const channel = undefined as unknown as TunnelChannel;
    if (channel) {
      // @ts-expect-error: only the library shuts a channel down with an engine status
      channel.shutDown(undefined);
      // @ts-expect-error: streams are opened by calls, not users
      channel.openStream('/x', { md: {} }, {});
      // @ts-expect-error: internal
      channel.unavailableReason();
    }
    // Channels and pools are interfaces: there is no constructor to call.
    assert.equal('TunnelChannel' in root, false);
    assert.equal('TunnelPool' in root, false);
  });

  it('puts the wire contract on the protocol subpath, not the root', () => {
    assert.deepEqual(Object.keys(protocol).sort(), [
      'DEFAULT_WINDOW_SIZE',
      'KEEPALIVE_POLICY_HEADER',
      'MAX_CHUNK_SIZE',
      'NEGOTIATE_HEADER',
      'OPEN_REVERSE_TUNNEL_PATH',
      'OPEN_TUNNEL_PATH',
      'TunnelServiceDefinition',
    ]);
    for (const name of Object.keys(protocol)) assert.equal(name in root, false, `${name} is also on the root`);
    assert.equal(protocol.NEGOTIATE_HEADER, 'grpctunnel-negotiate');
    assert.equal(protocol.TunnelServiceDefinition.openTunnel?.path, protocol.OPEN_TUNNEL_PATH);
  });

  it('delivers what the event types promise', async () => {
    const f = await reverseFixture();
    const tunnel = f.handler.allReverseTunnels()[0] as ReverseTunnel;
    const handlerHeard = once(f.handler, 'reverseTunnelClose');
    const closed = once(tunnel.channel, 'close');
    tunnel.channel.close();
    const [tunnelClosed, error] = await handlerHeard;
    assert.equal(tunnelClosed, tunnel);
    assert.equal(error, undefined);
    assert.deepEqual(await closed, [undefined]);
    assert.equal(await tunnel.channel.closed, undefined);
    await f.close();
  });

  it('names the unit of the waitForReady timeout', async () => {
    const pool = new TunnelServiceHandler().asChannel();
    // The signal only bounds the test: a timeoutMs that were ignored would end in CANCELLED.
    await assert.rejects(pool.waitForReady({ timeoutMs: 20, signal: AbortSignal.timeout(10_000) }), {
      code: status.DEADLINE_EXCEEDED,
    });
  });

  it('opens forward tunnels typed as the public interface', async () => {
    const rejected = openTunnel(idle, { signal: AbortSignal.abort() });
    expectType<Equal<typeof rejected, Promise<TunnelChannel>>>();
    await assert.rejects(rejected, (e: ServiceError) => e.code === status.CANCELLED);
  });
});
