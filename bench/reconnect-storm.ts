// npm run storm [-- --agents 5 --tunnels 100 --max-backoff 30000]
// A reconnect storm: agent processes hold many reverse tunnels to a gateway
// process; the gateway restarts on the same address; every agent reconnects
// on its own backoff. Measures how fast the tunnels come back, how the
// gateway's memory behaves during the storm, refused accepts, and that calls
// through every agent work again afterwards.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { credentials, Metadata, makeGenericClientConstructor, Server, ServerCredentials } from '@grpc/grpc-js';
import { addNotesService, type Note, NotesService } from '#gateway/cli/demo-service.js';
// The tests' process helper: it runs the built CLI and reads its log.
import { type CliProcess, freePort, runCli } from '../test/helpers/cli.js';

/** What {@link runStorm} measured. */
export interface StormResult {
  tunnels: number;
  /** From the new gateway's first log line to half, 90% and all tunnels back, in ms. */
  halfMs: number;
  ninetyMs: number;
  allMs: number;
  /** The gateway's RSS with every tunnel open before the restart, and its peak during the storm, in MiB. */
  steadyRssMiB: number;
  stormPeakRssMiB: number;
  /** RSS once all tunnels are back. */
  afterRssMiB: number;
  /** Tunnels the new gateway refused (should be 0). */
  refused: number;
  /** Calls made through each agent after the storm, and how many succeeded. */
  calls: number;
  callsOk: number;
}

export interface StormOptions {
  agents: number;
  tunnelsPerAgent: number;
  maxBackoffMs: number;
  /** Called with progress lines. */
  log?: (line: string) => void;
}

function rssMiB(pid: number | undefined): number {
  try {
    const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb ? Number(kb) / 1024 : 0;
  } catch {
    return 0;
  }
}

async function metric(admin: string, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`http://${admin}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

function gatewayArgs(agentsPort: number): string[] {
  return ['gateway', '--listen', '127.0.0.1:0', '--agents', `127.0.0.1:${agentsPort}`, '--admin', '127.0.0.1:0'];
}

export async function runStorm(options: StormOptions): Promise<StormResult> {
  const log = options.log ?? (() => {});
  const total = options.agents * options.tunnelsPerAgent;
  const target = new Server();
  addNotesService(target);
  const targetPort = await new Promise<number>((resolve, reject) =>
    target.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  const agentsPort = await freePort();
  const procs: CliProcess[] = [];
  try {
    let gateway = runCli(gatewayArgs(agentsPort));
    procs.push(gateway);
    let m = await gateway.waitFor(/callers on (\S+), agents on \S+, admin on http:\/\/(\S+)\//, 20_000);
    for (let i = 0; i < options.agents; i++) {
      const agent = runCli([
        'agent',
        '--gateway',
        `127.0.0.1:${agentsPort}`,
        '--target',
        `127.0.0.1:${targetPort}`,
        '--id',
        `storm-${i}`,
        '--insecure',
        '--tunnels',
        String(options.tunnelsPerAgent),
        '--max-backoff',
        String(options.maxBackoffMs),
        '--log-level',
        'error',
      ]);
      procs.push(agent);
    }
    let admin = m[2] as string;
    while ((await metric(admin, 'grpctunnel_gateway_tunnels')) < total) await new Promise((r) => setTimeout(r, 50));
    const steadyRssMiB = rssMiB(gateway.child.pid);
    log(`${total} tunnels open; gateway RSS ${steadyRssMiB.toFixed(1)} MiB; restarting the gateway`);

    await gateway.stop('SIGKILL');
    gateway = runCli(gatewayArgs(agentsPort));
    procs.push(gateway);
    m = await gateway.waitFor(/callers on (\S+), agents on \S+, admin on http:\/\/(\S+)\//, 20_000);
    const began = Date.now();
    admin = m[2] as string;
    let halfMs = -1;
    let ninetyMs = -1;
    let peak = 0;
    for (;;) {
      const n = await metric(admin, 'grpctunnel_gateway_tunnels');
      peak = Math.max(peak, rssMiB(gateway.child.pid));
      const at = Date.now() - began;
      if (halfMs < 0 && n >= total / 2) halfMs = at;
      if (ninetyMs < 0 && n >= total * 0.9) ninetyMs = at;
      if (n >= total) break;
      if (at > options.maxBackoffMs * 3 + 30_000) throw new Error(`only ${n} of ${total} tunnels came back`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const allMs = Date.now() - began;
    const refused = await metric(admin, 'grpctunnel_gateway_agent_connections_total', '{result="refused"}');
    const afterRssMiB = rssMiB(gateway.child.pid);
    log(`all back in ${allMs} ms (half ${halfMs}, 90% ${ninetyMs}); peak RSS ${peak.toFixed(1)} MiB`);

    // Calls resume: one through each agent.
    const Notes = makeGenericClientConstructor(NotesService, 'Notes');
    const client = new Notes(m[1] as string, credentials.createInsecure()) as InstanceType<typeof Notes> &
      Record<string, any>;
    let callsOk = 0;
    await Promise.all(
      Array.from({ length: options.agents }, (_, i) => {
        const md = new Metadata();
        md.set('grpctunnel-agent', `storm-${i}`);
        return new Promise<void>((resolve) =>
          client.echo({ text: 'after the storm' }, md, (err: Error | null, _reply: Note) => {
            if (!err) callsOk++;
            resolve();
          }),
        );
      }),
    );
    client.close();
    return {
      tunnels: total,
      halfMs,
      ninetyMs,
      allMs,
      steadyRssMiB,
      stormPeakRssMiB: peak,
      afterRssMiB,
      refused,
      calls: options.agents,
      callsOk,
    };
  } finally {
    await Promise.all(procs.map((p) => p.stop('SIGKILL')));
    target.forceShutdown();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const flag = (name: string, fallback: number) => {
    const at = args.indexOf(name);
    return at >= 0 ? Number(args[at + 1]) : fallback;
  };
  const result = await runStorm({
    agents: flag('--agents', 5),
    tunnelsPerAgent: flag('--tunnels', 100),
    maxBackoffMs: flag('--max-backoff', 30_000),
    log: (line) => console.log(line),
  });
  console.log(JSON.stringify(result, null, 2));
}
