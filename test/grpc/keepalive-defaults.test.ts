// Detection times with the default keepalive settings, outside `npm test`
// (skipped unless GRPCTUNNEL_LONG_KEEPALIVE=1; each case takes up to 25 s):
// each side alone notices a black-holed peer within 30 s.
import assert from 'node:assert/strict';
import { afterEach, it } from 'node:test';
import { type ClientDuplexStream, credentials } from '@grpc/grpc-js';
import { openTunnel, ReverseTunnelServer, type ServeResult, TunnelServiceHandler } from 'grpctunnel';
import { startBlackholeProxy } from '../helpers/blackhole-proxy.js';
import { EchoClient, EchoService, echoImplementation } from '../helpers/echo-service.js';
import { startServer, stopAllServers } from '../helpers/servers.js';
import { until } from '../helpers/until.js';

const skip = process.env.GRPCTUNNEL_LONG_KEEPALIVE !== '1';
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await stopAllServers();
});

async function running(client: EchoClient): Promise<{ failed: Promise<unknown> }> {
  const call = client.bidi() as ClientDuplexStream<Buffer, Buffer>;
  const failed = new Promise((resolve) => call.on('error', resolve));
  await new Promise<void>((resolve) => {
    call.once('data', () => resolve());
    call.write(Buffer.from('x'));
  });
  return { failed };
}

for (const side of ['client', 'server'] as const) {
  it(`forward, only the ${side} pinging: detected within 30 s`, { skip, timeout: 60_000 }, async () => {
    const handler = new TunnelServiceHandler(side === 'server' ? {} : { keepalive: false });
    const seen = { cancelled: [] as string[] };
    handler.addService(EchoService, echoImplementation(seen));
    const { address } = await startServer((s) => handler.register(s));
    const proxy = await startBlackholeProxy(address);
    cleanups.push(() => proxy.close());
    const connection = new EchoClient(proxy.address, credentials.createInsecure());
    cleanups.push(() => connection.close());
    const tunnel = await openTunnel(connection, side === 'client' ? {} : { keepalive: false });
    cleanups.push(() => tunnel.close());
    const echo = new EchoClient('t', credentials.createInsecure(), { channelOverride: tunnel });
    cleanups.push(() => echo.close());
    const { failed } = await running(echo);
    const start = Date.now();
    proxy.blackhole();
    if (side === 'client') await failed;
    // The handler emits nothing when a forward tunnel ends: poll its count.
    else await until(() => handler.openTunnels === 0, 'the handler noticed', { timeoutMs: 60_000, intervalMs: 50 });
    const ms = Date.now() - start;
    console.log(`forward, ${side} pinging: detected after ${ms} ms`);
    assert.ok(ms < 30_000);
  });
}

for (const side of ['handler', 'reverse server'] as const) {
  it(`reverse, only the ${side} pinging: detected within 30 s`, { skip, timeout: 60_000 }, async () => {
    const handler = new TunnelServiceHandler(side === 'handler' ? {} : { keepalive: false });
    const { address } = await startServer((s) => handler.register(s));
    const proxy = await startBlackholeProxy(address);
    cleanups.push(() => proxy.close());
    const connection = new EchoClient(proxy.address, credentials.createInsecure());
    cleanups.push(() => connection.close());
    const reverse = new ReverseTunnelServer(connection, side === 'reverse server' ? {} : { keepalive: false });
    reverse.addService(EchoService, echoImplementation());
    const opened = new Promise((resolve) => handler.once('reverseTunnelOpen', resolve));
    const served: Promise<ServeResult> = reverse.serve();
    cleanups.push(() => served);
    cleanups.push(() => reverse.stop());
    await opened;
    const echo = new EchoClient('p', credentials.createInsecure(), { channelOverride: handler.asChannel() });
    cleanups.push(() => echo.close());
    const { failed } = await running(echo);
    const start = Date.now();
    proxy.blackhole();
    if (side === 'handler') await failed;
    else await served;
    const ms = Date.now() - start;
    console.log(`reverse, ${side} pinging: detected after ${ms} ms`);
    assert.ok(ms < 30_000);
  });
}
