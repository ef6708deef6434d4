// node dist/bench/gateway.js [--seconds N] [--rounds N] [--tunnels N] [--gateway-module PATH]
// Calls through the gateway to an agent's target, against the same calls made
// directly to the target, in one process as the demo runs it: a target
// server, an embedded gateway, an embedded agent forwarding to the target,
// and a caller. Rounds alternate direct and gateway so that a shared
// machine's drift hits both alike; each gateway figure is printed as a ratio
// to direct in the same round set.
// `--gateway-module` loads another build of grpctunnel-gateway (its
// dist/gateway/index.js), to compare two versions of the agent in
// alternated runs of this same script.
import { loadavg } from 'node:os';
import { pathToFileURL } from 'node:url';
import { credentials, InterceptingCall, type Interceptor, Server, ServerCredentials } from '@grpc/grpc-js';
import type { Logger } from 'grpctunnel-gateway';
import { type AnyClient, BenchClient } from './clients.js';
import { type Measured, streamLoad, unaryLoad } from './loads.js';
import { BenchService, benchImplementation } from './service.js';

const args = process.argv.slice(2);
const flag = (name: string) => {
  const at = args.indexOf(name);
  return at >= 0 ? args[at + 1] : undefined;
};
const seconds = Number(flag('--seconds') ?? 5);
const rounds = Number(flag('--rounds') ?? 3);
const tunnels = Number(flag('--tunnels') ?? 1);
const gatewayModule = flag('--gateway-module');

type GatewayModule = typeof import('grpctunnel-gateway');

async function main(): Promise<void> {
  const gw: GatewayModule = gatewayModule
    ? await import(pathToFileURL(gatewayModule).href)
    : await import('grpctunnel-gateway');

  const target = new Server();
  target.addService(BenchService, benchImplementation);
  const targetPort = await new Promise<number>((resolve, reject) =>
    target.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  // Quiet: the stream load cancels its calls at the end, which the agent logs as warnings.
  const quiet: Logger = { debug() {}, info() {}, warn() {}, error: (m) => console.error(m) };
  const gateway = await gw.startGateway({
    listen: '127.0.0.1:0',
    agents: '127.0.0.1:0',
    access: {},
    logger: quiet,
  });
  // Attached once the agent logs its last tunnel open (an event, not a wait).
  let attached!: () => void;
  const allOpen = new Promise<void>((resolve) => (attached = resolve));
  const agent = gw.startAgent({
    gateway: gateway.agentsAddress,
    target: `127.0.0.1:${targetPort}`,
    id: 'bench',
    tunnels,
    security: { insecure: true },
    logger: {
      ...quiet,
      info: (m) => {
        if (m.includes(`(${tunnels} of ${tunnels})`)) attached();
      },
    },
  });
  await allOpen;

  // Callers name the agent in a header; direct calls carry it too, so both pay the same.
  const toAgent: Interceptor = (options, next) =>
    new InterceptingCall(next(options), {
      start(metadata, listener, proceed) {
        metadata.set('grpctunnel-agent', 'bench');
        proceed(metadata, listener);
      },
    });
  const clientOptions = { interceptors: [toAgent], 'grpc.use_local_subchannel_pool': 1 };
  const transports: Array<[string, AnyClient]> = [
    ['direct', new BenchClient(`127.0.0.1:${targetPort}`, credentials.createInsecure(), clientOptions) as AnyClient],
    ['gateway', new BenchClient(gateway.listenAddress, credentials.createInsecure(), clientOptions) as AnyClient],
  ];
  const small = Buffer.alloc(100, 1);
  const scenarios: Array<[string, keyof Measured, (c: AnyClient, s: number) => Promise<Measured>]> = [
    ['unary-c1', 'qps', (c, s) => unaryLoad(c, s, 1, small)],
    ['unary-c64', 'qps', (c, s) => unaryLoad(c, s, 64, small)],
    ['stream-1mib', 'mbps', (c, s) => streamLoad(c, s, 1 << 20)],
  ];
  const load = () =>
    loadavg()
      .map((l) => l.toFixed(2))
      .join(' ');
  console.log(`agent: ${gatewayModule ?? 'this build'}; ${seconds} s x ${rounds} rounds; load ${load()}`);
  for (const [name, metric, run] of scenarios) {
    // Warm-up: connections, JIT.
    for (const [, client] of transports) await run(client, 1);
    const sums = new Map<string, number>();
    for (let r = 0; r < rounds; r++) {
      for (const [transport, client] of transports) {
        const value = (await run(client, seconds))[metric] ?? 0;
        sums.set(transport, (sums.get(transport) ?? 0) + value);
      }
    }
    const direct = (sums.get('direct') ?? 0) / rounds;
    const via = (sums.get('gateway') ?? 0) / rounds;
    console.log(
      `${name.padEnd(13)} ${metric} direct ${direct.toFixed(1).padStart(9)}  gateway ${via.toFixed(1).padStart(9)}  ratio ${(via / direct).toFixed(2)}x`,
    );
  }
  console.log(`load after: ${load()}`);

  for (const [, client] of transports) client.close();
  await agent.stop(0);
  await gateway.close(0);
  await new Promise<void>((resolve) => target.tryShutdown(() => resolve()));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
