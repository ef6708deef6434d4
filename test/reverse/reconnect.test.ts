// keepOpen: a reverse tunnel server keeps N tunnels open and comes back after
// the network server restarts.
import assert from 'node:assert/strict';
import { afterEach, it } from 'node:test';
import { credentials } from '@grpc/grpc-js';
import { type RetryEvent, ReverseTunnelServer, TunnelServiceHandler } from 'grpctunnel';
import { unary } from '../helpers/calls.js';
import { EchoClient, EchoService, echoImplementation } from '../helpers/echo-service.js';
import { reverseTunnelsOpened, startServer, stopAllServers, stopServer } from '../helpers/servers.js';

// A failed test skips its own cleanup; never let that hang the run.
afterEach(stopAllServers);

it('keeps two tunnels open and reconnects after the network server restarts', async () => {
  const first = new TunnelServiceHandler();
  const { server, address } = await startServer((s) => first.register(s));
  const port = Number(address.split(':')[1]);
  // grpc-js has its own reconnect backoff for the connection; keep it in line
  // with the tunnel's so the bound below is the tunnel backoff's.
  const connection = new EchoClient(address, credentials.createInsecure(), {
    'grpc.initial_reconnect_backoff_ms': 50,
    'grpc.max_reconnect_backoff_ms': 200,
  });
  const reverse = new ReverseTunnelServer(connection);
  reverse.addService(EchoService, echoImplementation());
  const events: string[] = [];
  const retries: RetryEvent[] = [];
  reverse.on('connected', () => events.push('connected'));
  reverse.on('disconnected', () => events.push('disconnected'));
  reverse.on('retrying', (e: RetryEvent) => retries.push(e));
  const firstOpen = reverseTunnelsOpened(first, 2);
  const kept = reverse.keepOpen({ tunnels: 2, backoff: { initialDelayMs: 50, maxDelayMs: 200 } });

  await firstOpen;
  assert.equal(first.asChannel().size, 2);

  await stopServer(server);
  const second = new TunnelServiceHandler();
  const secondOpen = reverseTunnelsOpened(second, 2);
  const { server: restarted } = await startServer((s) => second.register(s), { port });
  const pool = second.asChannel();
  await pool.waitForReady({ timeout: 5000 });
  const echo = new EchoClient('pool', credentials.createInsecure(), { channelOverride: pool });
  const r = await unary(echo, Buffer.from('back'));
  assert.equal(r.error, null);
  assert.equal(r.value?.toString(), 'back');
  await secondOpen;
  assert.equal(pool.size, 2);

  assert.deepEqual(events.slice(0, 4), ['connected', 'connected', 'disconnected', 'disconnected']);
  assert.ok(events.filter((e) => e === 'connected').length >= 4);
  assert.ok(retries.length >= 2, 'each slot retried');
  assert.ok(
    retries.every((e) => e.delayMs <= 200),
    'delays stay within the bound',
  );

  reverse.stop();
  await kept;
  assert.equal(reverse.openTunnels, 0);
  connection.close();
  await stopServer(restarted);
});
