// Several gateway replicas behind a real TCP balancer (HAProxy), with real
// processes: three gateways, ten agents dialing the balanced agents address,
// callers through the balanced callers address. Every call reaches its agent
// from any replica; a killed replica costs callers nothing once the balancer
// has noticed; when it comes back, every agent returns to it; and a rolling
// restart of every replica (SIGTERM, restart, next once ready) loses no call.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  type Client,
  type ClientOptions,
  credentials,
  type handleUnaryCall,
  Metadata,
  makeGenericClientConstructor,
  type ServiceError,
  status,
} from '@grpc/grpc-js';
import { type CliProcess, freePort, killAll, runCli } from '../helpers/cli.js';
import { type Balancer, haproxyPath, startHaproxy } from '../helpers/haproxy.js';
import { methodDefinition, rawBytesCodec } from '../helpers/method-definition.js';
import { startServer, stopAllServers } from '../helpers/servers.js';

const REPLICAS = 3;
const AGENTS = 10;
const skip = haproxyPath()
  ? false
  : 'HAProxy is not installed (apt-get install haproxy): the multi-replica suite did not run';
if (skip) console.warn(`# SKIPPED: ${skip}`);

/** A target that says which one it is. */
const WhoService = { who: methodDefinition('test.Who', 'Am', false, false, rawBytesCodec) };
const WhoClient = makeGenericClientConstructor(WhoService, 'Who') as unknown as new (
  address: string,
  creds: ReturnType<typeof credentials.createInsecure>,
  options?: ClientOptions,
) => Client & { who(req: Buffer, md: Metadata, cb: (e: ServiceError | null, r?: Buffer) => void): void };

interface ReplicaProc {
  proc: CliProcess;
  listen: string;
  agents: string;
  admin: string;
}

async function startReplica(i: number, ports: { listen: number; agents: number; admin: number }): Promise<ReplicaProc> {
  const host = `127.0.0.${2 + i}`;
  const proc = runCli([
    'gateway',
    '--listen',
    `${host}:${ports.listen}`,
    '--agents',
    `${host}:${ports.agents}`,
    '--admin',
    `${host}:${ports.admin}`,
    '--token',
    'replica-test',
    '--replica-id',
    `r${i}`,
    '--replicas',
    String(REPLICAS),
    '--allow-unauthenticated-callers',
  ]);
  await proc.waitFor(/callers on (\S+), agents on (\S+), admin on http:\/\/(\S+)\//);
  return {
    proc,
    listen: `${host}:${ports.listen}`,
    agents: `${host}:${ports.agents}`,
    admin: `${host}:${ports.admin}`,
  };
}

async function agentsHeld(admin: string): Promise<number> {
  const text = await (await fetch(`http://${admin}/metrics`)).text();
  return Number(/^grpctunnel_gateway_agents(?:\{[^}]*\})? (\d+)/m.exec(text)?.[1] ?? 0);
}

/** Waits (polling the admin port: there is no event across processes) until `check` holds. */
async function eventually(check: () => Promise<boolean>, what: string, ms = 30_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function ask(
  client: InstanceType<typeof WhoClient>,
  agent: string,
): Promise<{ who?: string; code?: number; details?: string }> {
  const md = new Metadata();
  md.set('grpctunnel-agent', agent);
  return new Promise((resolve) =>
    client.who(Buffer.from('?'), md, (err, reply) =>
      resolve(err ? { code: err.code, details: err.details } : { who: reply?.toString() ?? '' }),
    ),
  );
}

describe('gateway replicas behind HAProxy', { skip }, () => {
  const replicas: ReplicaProc[] = [];
  const ports: Array<{ listen: number; agents: number; admin: number }> = [];
  const agents: CliProcess[] = [];
  let balancer: Balancer;
  let caller: InstanceType<typeof WhoClient>;

  before(async () => {
    for (let i = 0; i < REPLICAS; i++) {
      ports.push({ listen: await freePort(), agents: await freePort(), admin: await freePort() });
      replicas.push(await startReplica(i, ports[i] as (typeof ports)[number]));
    }
    // Agents reach every replica, ready or not (their tunnels are what makes
    // a replica ready); callers reach only ready ones, as behind a Service.
    balancer = await startHaproxy([
      replicas.map((r) => r.agents),
      { servers: replicas.map((r) => r.listen), healthz: replicas.map((r) => r.admin) },
    ]);
    for (let a = 0; a < AGENTS; a++) {
      const name = `agent-${a}`;
      // A little work per call, so that a stopping replica has calls running.
      const impl: handleUnaryCall<Buffer, Buffer> = (_call, cb) => setTimeout(() => cb(null, Buffer.from(name)), 5);
      const target = await startServer((s) => s.addService(WhoService, { who: impl }));
      agents.push(
        runCli([
          'agent',
          '--gateway',
          balancer.addresses[0] as string,
          '--target',
          target.address,
          '--id',
          name,
          '--token',
          'replica-test',
          '--insecure',
          '--tunnels',
          '1',
          '--max-backoff',
          '1000',
        ]),
      );
    }
    caller = new WhoClient(balancer.addresses[1] as string, credentials.createInsecure());
  });

  after(async () => {
    caller?.close();
    await Promise.all(agents.map((a) => a.stop()));
    await Promise.all(replicas.map((r) => r.proc.stop()));
    await balancer?.stop();
    await stopAllServers();
    await killAll();
  });

  it('every agent holds a tunnel on every replica, and every call reaches its agent from any replica', async () => {
    await eventually(
      async () => (await Promise.all(replicas.map((r) => agentsHeld(r.admin)))).every((n) => n === AGENTS),
      'every replica holds every agent',
    );
    // Each replica directly, then through the balancer (which spreads calls).
    for (const r of replicas) {
      const direct = new WhoClient(r.listen, credentials.createInsecure());
      for (let a = 0; a < AGENTS; a++) assert.deepEqual(await ask(direct, `agent-${a}`), { who: `agent-${a}` });
      direct.close();
    }
    for (let round = 0; round < REPLICAS; round++) {
      for (let a = 0; a < AGENTS; a++) assert.deepEqual(await ask(caller, `agent-${a}`), { who: `agent-${a}` });
    }
  });

  it('a killed replica costs new calls nothing once the balancer notices; back, it gets every agent again', async () => {
    const victim = replicas[1] as ReplicaProc;
    await victim.proc.stop('SIGKILL');
    // Calls right after the kill may meet the dead replica (UNAVAILABLE);
    // a caller that retries on UNAVAILABLE loses none.
    for (let a = 0; a < AGENTS; a++) {
      let reply = await ask(caller, `agent-${a}`);
      for (let retry = 0; retry < 5 && reply.code === status.UNAVAILABLE; retry++)
        reply = await ask(caller, `agent-${a}`);
      assert.deepEqual(reply, { who: `agent-${a}` });
    }
    const backAt = Date.now();
    replicas[1] = await startReplica(1, ports[1] as (typeof ports)[number]);
    await eventually(async () => (await agentsHeld((replicas[1] as ReplicaProc).admin)) === AGENTS, 'agents return');
    const took = Date.now() - backAt;
    console.log(`# every agent back on the restarted replica after ${took} ms`);
    const direct = new WhoClient((replicas[1] as ReplicaProc).listen, credentials.createInsecure());
    for (let a = 0; a < AGENTS; a++) assert.deepEqual(await ask(direct, `agent-${a}`), { who: `agent-${a}` });
    direct.close();
  });

  it('a rolling restart of every replica under steady calls loses no call', async () => {
    await eventually(
      async () => (await Promise.all(replicas.map((r) => agentsHeld(r.admin)))).every((n) => n === AGENTS),
      'every replica holds every agent',
    );
    // Callers on connections of their own (so the balancer spreads them);
    // half of them retry UNAVAILABLE the way grpc-js's retry policy does.
    const retrying = JSON.stringify({
      methodConfig: [
        {
          name: [{}],
          retryPolicy: {
            maxAttempts: 5,
            initialBackoff: '0.05s',
            maxBackoff: '0.5s',
            backoffMultiplier: 2,
            retryableStatusCodes: ['UNAVAILABLE'],
          },
        },
      ],
    });
    const LOOPS = 8;
    const clients = Array.from(
      { length: LOOPS },
      (_, i) =>
        new WhoClient(balancer.addresses[1] as string, credentials.createInsecure(), {
          'grpc.use_local_subchannel_pool': 1,
          ...(i % 2 === 1 && { 'grpc.service_config': retrying }),
        }),
    );
    const results = { plain: { ok: 0, failed: [] as string[] }, retrying: { ok: 0, failed: [] as string[] } };
    let stopping = false;
    const started = Date.now();
    const loops = clients.map(async (client, i) => {
      const tally = i % 2 === 1 ? results.retrying : results.plain;
      for (let n = i; !stopping; n++) {
        const agent = `agent-${n % AGENTS}`;
        const reply = await ask(client, agent);
        if (reply.who === agent) tally.ok++;
        else tally.failed.push(`${status[reply.code ?? 2]} (${agent}, +${Date.now() - started} ms): ${reply.details}`);
      }
    });
    const timings: string[] = [];
    const everyAgentBack: Array<Promise<unknown>> = [];
    try {
      for (let i = 0; i < REPLICAS; i++) {
        const old = replicas[i] as ReplicaProc;
        const okBefore = results.plain.ok + results.retrying.ok;
        const stopAt = Date.now();
        // SIGTERM: not ready at once, still serving for the drain delay (2 s by
        // default for a replica) while HAProxy's check takes it out of rotation;
        // then GOAWAY to agents and callers, running calls finish, exit 0.
        assert.equal(await old.proc.stop(), 0, `replica r${i} exits 0 after its graceful stop`);
        const stoppedIn = Date.now() - stopAt;
        replicas[i] = await startReplica(i, ports[i] as (typeof ports)[number]);
        const backAt = Date.now();
        const fresh = replicas[i] as ReplicaProc;
        // As a Deployment's rolling update does: the next replica stops as
        // soon as this one is ready, not once every agent is back on it.
        await eventually(async () => (await fetch(`http://${fresh.admin}/healthz`)).status === 200, `r${i} ready`);
        const readyIn = Date.now() - backAt;
        everyAgentBack.push(
          eventually(async () => (await agentsHeld(fresh.admin)) === AGENTS, `every agent back on r${i}`).then(() =>
            timings.push(
              `r${i}: stopped in ${stoppedIn} ms, ready ${readyIn} ms and every agent back ${Date.now() - backAt} ms after its restart`,
            ),
          ),
        );
        assert.ok(results.plain.ok + results.retrying.ok > okBefore, 'calls kept succeeding during the restart');
      }
      await Promise.all(everyAgentBack);
    } finally {
      stopping = true;
      await Promise.all(loops);
      for (const c of clients) c.close();
    }
    console.log(`# rolling restart: ${timings.join('; ')}`);
    console.log(
      `# rolling restart: plain callers ${results.plain.ok} ok, ${results.plain.failed.length} failed; retrying callers ${results.retrying.ok} ok, ${results.retrying.failed.length} failed`,
    );
    // The first and last failures say when and why (e.g. a failed connect,
    // which grpc-js repeats for every call until its reconnect backoff ends).
    const firstAndLast = (f: string[]) => [...new Set([f[0], f.at(-1)])];
    assert.deepEqual(firstAndLast(results.retrying.failed), [undefined], 'callers that retry UNAVAILABLE lose no call');
    assert.deepEqual(firstAndLast(results.plain.failed), [undefined], 'callers that do not retry lose no call either');
    assert.ok(results.plain.ok > 50 && results.retrying.ok > 50, 'both kinds of callers kept calling');
  });
});
