// An agent's dialer against three gateway replicas in one process. The
// "balancer" is the dialer's connect(): each new connection goes to a
// replica chosen by a fixed pseudo-random sequence, as a TCP balancer would
// spread them. The multi-process version with HAProxy is in test/e2e.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { afterEach, it } from 'node:test';
import { credentials, Metadata, type Server, status } from '@grpc/grpc-js';
import { ReverseTunnelServer, TunnelConnection, TunnelServiceHandler } from 'grpctunnel';
import { ReplicaDialer } from '#gateway/gateway/replica-dialer.js';
import { advertiseReplica, readAdvert } from '#gateway/gateway/replicas.js';
import { unary } from '../helpers/calls.js';
import { EchoClient, EchoService, echoImplementation } from '../helpers/echo-service.js';
import { startServer, stopAllServers, stopServer } from '../helpers/servers.js';

afterEach(stopAllServers);

interface Replica {
  id: string;
  handler: TunnelServiceHandler;
  server: Server;
  address: string;
}

async function replica(id: string, count: number, port = 0): Promise<Replica> {
  const handler = new TunnelServiceHandler({
    affinityKey: (t) => t.metadata.get('grpctunnel-agent')[0]?.toString(),
  });
  const { server, address } = await startServer((s) => handler.register(s), {
    serverOptions: { interceptors: [advertiseReplica({ id, count })] },
    port,
  });
  return { id, handler, server, address };
}

/** The dialer's own events, so waits can re-check when its ledger changes. */
const dialerChanges = new EventEmitter();

/** Resolves once `check()` holds, re-checking whenever a replica's or the dialer's tunnels change. */
function until(replicas: Replica[], check: () => boolean, what: string, ms = 20_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => finish(new Error(`timed out: ${what}`)), ms);
    const onChange = () => {
      if (check()) finish();
    };
    const finish = (error?: Error) => {
      clearTimeout(timer);
      dialerChanges.off('change', onChange);
      for (const r of replicas) {
        r.handler.off('reverseTunnelOpen', onChange);
        r.handler.off('reverseTunnelClose', onChange);
      }
      if (error) reject(error);
      else resolve();
    };
    dialerChanges.on('change', onChange);
    for (const r of replicas) {
      r.handler.on('reverseTunnelOpen', onChange);
      r.handler.on('reverseTunnelClose', onChange);
    }
    onChange();
  });
}

const tunnelsOf = (r: Replica) => r.handler.keyAsChannel('agent-1').size;

it('reads adverts, and treats a gateway without one as a single replica', () => {
  const md = new Metadata();
  assert.deepEqual(readAdvert(md), { id: '', count: 1 });
  md.set('grpctunnel-replica', 'r7');
  md.set('grpctunnel-replicas', '3');
  assert.deepEqual(readAdvert(md), { id: 'r7', count: 3 });
  md.set('grpctunnel-replicas', 'lots');
  assert.deepEqual(readAdvert(md), { id: 'r7', count: 1 });
  md.set('grpctunnel-replicas', '100000');
  assert.equal(readAdvert(md).count, 64, 'an advert cannot make an agent dial without bound');
});

it('holds its quota on every replica, from any replica calls reach it, and it returns to a replica that restarts', async () => {
  let replicas = [await replica('r0', 3), await replica('r1', 3), await replica('r2', 3)];
  // A fixed "random" spread of new connections over the replicas.
  let seed = 7;
  const pick = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return replicas[seed % 3] as Replica;
  };
  const metadata = new Metadata();
  metadata.set('grpctunnel-agent', 'agent-1');
  let fulls = 0;
  const leaving: string[] = [];
  const dialer = new ReplicaDialer({
    perReplica: 2,
    connect: () => new TunnelConnection(pick().address),
    createServer: (connection, authenticate) => {
      const server = new ReverseTunnelServer(connection, { authenticate });
      server.addService(EchoService, echoImplementation());
      return server;
    },
    metadata,
    backoff: { initialDelayMs: 20, maxDelayMs: 300 },
    fatal: (error) => (error.code === status.UNAUTHENTICATED ? new Error(error.details) : undefined),
    events: {
      opened: () => dialerChanges.emit('change'),
      closed: () => dialerChanges.emit('change'),
      full: () => fulls++,
      leaving: (r) => {
        leaving.push(r);
        dialerChanges.emit('change');
      },
      retrying() {},
    },
  });
  try {
    await until(replicas, () => replicas.every((r) => tunnelsOf(r) === 2), 'two tunnels on each replica');
    assert.deepEqual([...dialer.held().entries()].sort(), [
      ['r0', 2],
      ['r1', 2],
      ['r2', 2],
    ]);
    assert.ok(fulls > 0, 'some connections reached a full replica and were dialed again');
    for (const r of replicas) {
      const echo = new EchoClient('pool', credentials.createInsecure(), {
        channelOverride: r.handler.keyAsChannel('agent-1'),
      });
      const reply = await unary(echo, Buffer.from(`via ${r.id}`));
      assert.equal(reply.value?.toString(), `via ${r.id}`);
    }

    // Replica r0 shuts down gracefully while a call runs on it: its GOAWAY
    // makes the agent release r0's place and dial again at once, while the
    // running call finishes on the old tunnel.
    const r0 = replicas[0] as Replica;
    const slow = new Metadata();
    slow.set('x-delay-ms', '1500');
    const echo0 = new EchoClient('pool', credentials.createInsecure(), {
      channelOverride: r0.handler.keyAsChannel('agent-1'),
    });
    // The echo handler sends its response headers as it starts: then the call is running.
    let started!: () => void;
    const reachedAgent = new Promise<void>((resolve) => (started = resolve));
    const running = new Promise<{ value?: Buffer; error?: Error }>((resolve) => {
      const call = echo0.unary(Buffer.from('finishes'), slow, (error: Error | null, value?: Buffer) =>
        resolve(error ? { error } : { value: value as Buffer }),
      );
      call.on('metadata', () => started());
    });
    await reachedAgent;
    r0.handler.initiateShutdown();
    const shutDown = new Promise<void>((resolve) => r0.server.tryShutdown(() => resolve()));
    await until(replicas, () => leaving.filter((r) => r === 'r0').length === 2, 'both r0 tunnels released early');
    assert.ok(!(await Promise.race([running.then(() => true), Promise.resolve(false)])), 'before the call ended');
    const done = await running;
    assert.equal(done.value?.toString(), 'finishes', 'the call on the draining replica finished');
    await shutDown;
    await until(replicas, () => dialer.held().get('r0') === undefined, 'r0 forgotten');
    const r0Port = Number(r0.address.split(':')[1]);
    const r0back = await replica('r0', 3, r0Port);
    replicas = [r0back, replicas[1] as Replica, replicas[2] as Replica];
    await until(replicas, () => tunnelsOf(r0back) === 2, 'two tunnels on the restarted r0');

    // Replica r1 goes away: its tunnels end; the other replicas keep theirs.
    const port = Number((replicas[1] as Replica).address.split(':')[1]);
    await stopServer((replicas[1] as Replica).server);
    await until(replicas, () => dialer.held().get('r1') === undefined, 'r1 forgotten');
    assert.equal(tunnelsOf(replicas[0] as Replica), 2);
    assert.equal(tunnelsOf(replicas[2] as Replica), 2);

    // It comes back on the same address: the agent fills it again.
    const back = await replica('r1', 3, port);
    replicas = [replicas[0] as Replica, back, replicas[2] as Replica];
    await until(replicas, () => tunnelsOf(back) === 2, 'two tunnels on the restarted r1');
    assert.equal(dialer.held().get('r1'), 2);
  } finally {
    await dialer.tryShutdown();
  }
  for (const r of replicas) assert.equal(tunnelsOf(r), 0);
});

it('after losing one replica it redials at the prompt pace even when dials fail; with every replica gone it backs off', async () => {
  const replicas = [await replica('r0', 2), await replica('r1', 2)];
  // A balancer that still lists a dead replica: every other connection goes to r1's address.
  let next = 0;
  const metadata = new Metadata();
  metadata.set('grpctunnel-agent', 'agent-1');
  const retries: Array<{ code: number | undefined; delayMs: number; holding: number }> = [];
  let dialer!: ReplicaDialer;
  const dialerHolds = () => [...dialer.held().values()].reduce((n, k) => n + k, 0);
  dialer = new ReplicaDialer({
    perReplica: 1,
    connect: () => new TunnelConnection((replicas[next++ % 2] as Replica).address),
    createServer: (connection, authenticate) => {
      const server = new ReverseTunnelServer(connection, { authenticate });
      server.addService(EchoService, echoImplementation());
      return server;
    },
    metadata,
    // The agent's production defaults: 1 s first delay, growing to 30 s.
    backoff: { initialDelayMs: 1000, maxDelayMs: 30_000 },
    fatal: () => undefined,
    events: {
      opened: () => dialerChanges.emit('change'),
      closed: () => dialerChanges.emit('change'),
      full() {},
      leaving: () => dialerChanges.emit('change'),
      retrying: (error, delayMs) => {
        retries.push({ code: error?.code, delayMs, holding: dialerHolds() });
        dialerChanges.emit('change');
      },
    },
  });
  try {
    await until(replicas, () => replicas.every((r) => tunnelsOf(r) === 1), 'a tunnel on each replica');
    // r1 dies; the balancer keeps sending it half of the new connections.
    await stopServer((replicas[1] as Replica).server);
    const failedWhileR0Holds = () => retries.filter((r) => r.code === status.UNAVAILABLE && r.holding > 0);
    await until(replicas, () => failedWhileR0Holds().length >= 3, 'three failed dials while r0 holds its tunnel');
    assert.deepEqual(
      failedWhileR0Holds()
        .map((r) => r.delayMs)
        .filter((ms) => ms > 250),
      [],
      'failed dials while another replica holds tunnels wait at most the prompt 250 ms',
    );

    // Now the whole gateway is gone: reconnections spread out on the ordinary backoff.
    const before = retries.length;
    await stopServer((replicas[0] as Replica).server);
    await until(replicas, () => retries.slice(before).some((r) => r.holding === 0), 'a retry with no replica left');
    const alone = retries.slice(before).filter((r) => r.holding === 0);
    assert.ok(
      alone.every((r) => r.delayMs >= 500),
      `with no replica left the delays follow the backoff (1 s +/- 20%): ${alone.map((r) => r.delayMs)}`,
    );
  } finally {
    await dialer.tryShutdown();
  }
});
