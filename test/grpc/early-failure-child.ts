// Run as a child process by call-fidelity.test.ts: makes every call kind the
// usual grpc-js way on one early-failure path (argv[2]), through a forward
// tunnel, through a reverse-tunnel pool and directly over grpc-js (the
// analogous failure), with no 'error' listener on the calls that report
// through a callback. An unhandled 'error' kills this process (exit code 1);
// otherwise it prints what each call reported as one JSON line.
import { credentials, Metadata, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import { EchoClient, EchoService, echoImplementation } from '../helpers/echo-service.js';
import { CALL_KINDS, type CallKind } from '../helpers/event-order.js';
import { forwardFixture, reverseFixture, startServer, stopServer } from '../helpers/servers.js';

/** What one call reported. */
interface Outcome {
  route: 'direct' | 'forward' | 'pool';
  kind: CallKind;
  /** The callback's error, "code details" (unary and client-streaming calls). */
  callback?: string;
  /** The 'status' event, "code details". */
  status: string;
  /** 'error' events of response streams, "code details" each. */
  errors: string[];
}

/** The early-failure paths this script knows. */
const PATHS = ['closed-tunnel', 'expired-deadline', 'empty-pool', 'pool-wait-timeout', 'dies-mid-write'] as const;
type FailurePath = (typeof PATHS)[number];

const text = (s: { code: number; details: string }) => `${s.code} ${s.details}`;

/**
 * Makes one call of `kind` and resolves with what it reported. Streaming
 * requests write before and after `midway` (which runs once the call is live
 * when `waitLive` is set) and then end.
 */
function call(
  client: EchoClient,
  kind: CallKind,
  route: Outcome['route'],
  options: { metadata?: Metadata; deadline?: number; midway?: () => Promise<void>; waitLive?: boolean } = {},
): Promise<Outcome> {
  const metadata = options.metadata ?? new Metadata();
  // A live call stays open on the server; the others never reach a handler
  // (or, direct, reach it already cancelled), so they ask for no delay.
  if (options.waitLive) metadata.set('x-delay-ms', '10000');
  const callOptions = options.deadline === undefined ? {} : { deadline: options.deadline };
  const outcome: Outcome = { route, kind, status: '', errors: [] };
  let calledBack: Promise<void> = Promise.resolve();
  let resolveCallback = () => {};
  if (kind === 'unary' || kind === 'clientStream') {
    calledBack = new Promise((resolve) => {
      resolveCallback = resolve;
    });
  }
  const callback = (error: ServiceError | null) => {
    outcome.callback = error ? text(error) : '0';
    resolveCallback();
  };
  const request = Buffer.from(JSON.stringify({ count: 1, size: 1 }));
  let c: any;
  if (kind === 'unary') c = client.unary(request, metadata, callOptions, callback);
  else if (kind === 'clientStream') c = client.clientStream(metadata, callOptions, callback);
  else if (kind === 'serverStream') c = client.serverStream(request, metadata, callOptions);
  // Response streams emit their status as 'error' in grpc-js itself, so they need the listener.
  else c = client.bidi(metadata, callOptions);
  if (kind === 'serverStream' || kind === 'bidi') {
    c.on('error', (e: ServiceError) => outcome.errors.push(text(e)));
    c.resume();
  }
  const status = new Promise<void>((resolve) =>
    c.on('status', (s: StatusObject) => {
      outcome.status = text(s);
      resolve();
    }),
  );
  const live = options.waitLive ? new Promise((resolve) => c.once('metadata', resolve)) : Promise.resolve();
  const writes = kind === 'clientStream' || kind === 'bidi';
  return (async () => {
    if (writes) c.write(Buffer.from('before'));
    await live;
    await options.midway?.();
    if (writes) {
      for (let i = 0; i < 3; i++) c.write(Buffer.alloc(100_000, i));
      c.end();
    }
    await Promise.all([status, calledBack]);
    // Anything a failed write would emit comes within a turn or two.
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    return outcome;
  })();
}

async function run(path: FailurePath): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  const plain = await startServer((s) => s.addService(EchoService, echoImplementation()));
  const direct = new EchoClient(plain.address, credentials.createInsecure());
  const unreachable = new EchoClient('127.0.0.1:1', credentials.createInsecure());
  try {
    for (const kind of CALL_KINDS) {
      if (path === 'closed-tunnel') {
        const f = await forwardFixture();
        f.tunnel.close();
        outcomes.push(await call(f.echo, kind, 'forward'));
        await f.close();
        const r = await reverseFixture();
        const [only] = r.handler.allReverseTunnels();
        // A pool call that already took its tunnel when the tunnel closes.
        const pooled = call(r.echo, kind, 'pool', {
          waitLive: true,
          midway: async () => {
            only?.channel.close();
          },
        });
        outcomes.push(await pooled);
        await r.close();
        outcomes.push(await call(unreachable, kind, 'direct'));
      } else if (path === 'expired-deadline') {
        const f = await forwardFixture();
        const r = await reverseFixture();
        outcomes.push(await call(f.echo, kind, 'forward', { deadline: Date.now() - 1 }));
        outcomes.push(await call(r.echo, kind, 'pool', { deadline: Date.now() - 1 }));
        outcomes.push(await call(direct, kind, 'direct', { deadline: Date.now() - 1 }));
        await f.close();
        await r.close();
      } else if (path === 'empty-pool' || path === 'pool-wait-timeout') {
        const r = await reverseFixture();
        const empty = new EchoClient('empty', credentials.createInsecure(), {
          channelOverride: r.handler.keyAsChannel('nobody'),
        });
        const waiting = path === 'pool-wait-timeout';
        const options = () =>
          waiting ? { metadata: new Metadata({ waitForReady: true }), deadline: Date.now() + 200 } : {};
        outcomes.push(await call(empty, kind, 'pool', options()));
        outcomes.push(await call(unreachable, kind, 'direct', options()));
        await r.close();
      } else {
        // The connection carrying the tunnel (or the call) is torn down mid-call.
        const f = await forwardFixture();
        outcomes.push(await call(f.echo, kind, 'forward', { waitLive: true, midway: () => stopServer(f.server) }));
        await f.close();
        const r = await reverseFixture();
        outcomes.push(await call(r.echo, kind, 'pool', { waitLive: true, midway: () => stopServer(r.server) }));
        await r.close();
        const d = await startServer((s) => s.addService(EchoService, echoImplementation()));
        const client = new EchoClient(d.address, credentials.createInsecure());
        outcomes.push(await call(client, kind, 'direct', { waitLive: true, midway: () => stopServer(d.server) }));
        client.close();
      }
    }
  } finally {
    direct.close();
    unreachable.close();
    await stopServer(plain.server);
  }
  return outcomes;
}

const path = process.argv[2] as FailurePath;
if (!PATHS.includes(path)) throw new Error(`unknown path ${path}`);
process.stdout.write(`${JSON.stringify(await run(path))}\n`);
