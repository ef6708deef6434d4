// A rolling restart with real processes: a gateway, two agents with the same
// id, a steady loop of calls through the gateway; each agent is stopped
// (SIGTERM: a graceful stop) and replaced in turn, and no call fails.
import assert from 'node:assert/strict';
import { afterEach, it } from 'node:test';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { unary } from '../helpers/calls.js';
import { type CliProcess, killAll, startAgentCli, startGatewayCli, waitForAgent } from '../helpers/cli.js';
import { EchoClient, EchoService, echoImplementation } from '../helpers/echo-service.js';
import { startServer, stopAllServers, stopServer } from '../helpers/servers.js';

afterEach(async () => {
  await killAll();
  await stopAllServers();
});

const ID = 'edge';

function agent(gatewayAgents: string, target: string): CliProcess {
  return startAgentCli(gatewayAgents, target, ID, ['--tunnels', '2']);
}

it('a rolling restart of the two CLI agents of an id, under steady calls through the gateway, loses no call', async () => {
  // Two targets, so that each agent's share of the calls can be seen.
  const served = [0, 0];
  const waiters = new Set<() => void>();
  /** Resolves once target `index` has served more than `count` calls. */
  const servedMoreThan = (index: number, count: number) =>
    new Promise<void>((resolve) => {
      const check = () => {
        if ((served[index] ?? 0) <= count) return;
        waiters.delete(check);
        resolve();
      };
      waiters.add(check);
      check();
    });
  const targets = await Promise.all(
    [0, 1].map((i) => {
      const echo = echoImplementation({ cancelled: [] });
      return startServer((s) =>
        s.addService(EchoService, {
          ...echo,
          unary: (call: Parameters<typeof echo.unary>[0], callback: Parameters<typeof echo.unary>[1]) => {
            served[i] = (served[i] ?? 0) + 1;
            for (const waiter of [...waiters]) waiter();
            echo.unary(call, callback);
          },
        }),
      );
    }),
  );
  const [t0, t1] = targets as [(typeof targets)[0], (typeof targets)[0]];
  const gateway = await startGatewayCli();
  const gw = gateway.p;
  const { listen, agents, admin } = gateway;

  let a = agent(agents, t0.address);
  let b = agent(agents, t1.address);
  await waitForAgent(admin, ID, 4);

  const echo = new EchoClient(listen, credentials.createInsecure());
  let stopping = false;
  let ok = 0;
  const failures: Array<ServiceError | null> = [];
  const loops = Array.from({ length: 8 }, async (_, i) => {
    let n = 0;
    while (!stopping) {
      const md = new Metadata();
      md.set('grpctunnel-agent', ID);
      md.set('x-delay-ms', i === 0 ? '150' : '20');
      const payload = Buffer.from(`${i}:${n++}`);
      const r = await unary(echo, payload, md);
      if (r.error === null && r.value?.equals(payload)) ok++;
      else failures.push(r.error);
    }
  });

  // Each restart: SIGTERM (graceful stop, exit 0), then a replacement on the
  // same target, ready (four tunnels again) and taking calls.
  const restart = async (old: CliProcess, target: string, index: number) => {
    const before = ok;
    assert.equal(await old.stop(), 0, 'the agent exits 0 after its graceful stop');
    const fresh = agent(agents, target);
    await waitForAgent(admin, ID, 4);
    await servedMoreThan(index, served[index] ?? 0);
    assert.ok(ok > before, 'calls were served while the agent was replaced');
    return fresh;
  };
  // Both agents take calls before the first restart.
  await Promise.all([servedMoreThan(0, 0), servedMoreThan(1, 0)]);
  try {
    a = await restart(a, t0.address, 0);
    b = await restart(b, t1.address, 1);
  } finally {
    stopping = true;
    await Promise.all(loops);
  }
  echo.close();
  assert.deepEqual(failures, [], 'no call failed');
  assert.ok(ok > 20, `calls kept succeeding (${ok})`);
  assert.ok((served[0] ?? 0) > 0 && (served[1] ?? 0) > 0, 'both targets took calls');

  await Promise.all([a.stop(), b.stop()]);
  assert.equal(await gw.stop(), 0);
  await Promise.all([stopServer(t0.server), stopServer(t1.server)]);
});
