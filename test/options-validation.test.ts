// Every public option of every exported function and class is checked where
// it is passed: a bad value is refused with a TypeError (wrong kind) or a
// RangeError (out of range) whose message names the option, instead of being
// coerced into something that runs (tunnels: 0 opened one tunnel, a negative
// backoff reconnected in a tight loop, openTunnel(null) dialed "tunnel").
// The inventory test reads the option interfaces with the TypeScript
// compiler, so an option added later without a row here fails.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Client, credentials, Metadata } from '@grpc/grpc-js';
import {
  type BackoffOptions,
  createProxyHandler,
  createTunnelClient,
  openTunnel,
  ReverseTunnelServer,
  TunnelConnection,
  TunnelServiceHandler,
} from 'grpctunnel';
import ts from 'typescript';

type Kind = typeof TypeError | typeof RangeError;
interface Row {
  /** The exported interface (or function parameter) the option belongs to. */
  readonly of: string;
  readonly option: string;
  /** Bad values with the error class each must raise. */
  readonly bad: ReadonlyArray<readonly [unknown, Kind]>;
  /** Makes the call with the bad value in place; may throw or return a promise that rejects. */
  readonly call: (value: unknown) => unknown;
}

// Nothing listens on port 9: a refused call must not dial, and an accepted one is never started.
let client: Client;
before(() => {
  client = new Client('127.0.0.1:9', credentials.createInsecure());
});
after(() => client.close());

const T = TypeError;
const R = RangeError;
const notFunctions: Array<readonly [unknown, Kind]> = [
  ['yes', T],
  [1, T],
  [null, T],
];
const notBooleans: Array<readonly [unknown, Kind]> = [
  ['false', T],
  [0, T],
  [null, T],
];
const notSignals: Array<readonly [unknown, Kind]> = [
  [{}, T],
  [true, T],
  [null, T],
];
const notObjects: Array<readonly [unknown, Kind]> = [
  [null, T],
  ['x', T],
  [42, T],
  [[], T],
];
const sizes = (min: number): Array<readonly [unknown, Kind]> => [
  [min - 1, R],
  [-1, R],
  [1.5, R],
  [Number.NaN, R],
  [Number.POSITIVE_INFINITY, R],
  ['1024', T],
  [null, T],
];

// Each family of options, applied to every API that takes it.
const tunnelOptionRows = (of: string, apply: (options: Record<string, unknown>) => unknown): Row[] => [
  { of, option: 'flowControl', bad: notBooleans, call: (v) => apply({ flowControl: v }) },
  { of, option: 'initialWindowSize', bad: [...sizes(1), [2 ** 31, R]], call: (v) => apply({ initialWindowSize: v }) },
  { of, option: 'maxWindowSize', bad: [...sizes(1), [2 ** 31, R]], call: (v) => apply({ maxWindowSize: v }) },
  {
    of,
    option: 'maxWindowSize',
    // Below the initial window, given or default (65536): used to be raised silently.
    bad: [
      [1000, R],
      [65535, R],
    ],
    call: (v) => apply({ maxWindowSize: v }),
  },
  {
    of,
    option: 'maxWindowSize',
    bad: [[1 << 19, R]],
    call: (v) => apply({ initialWindowSize: 1 << 20, maxWindowSize: v }),
  },
  { of, option: 'windowGrowthBudget', bad: sizes(0), call: (v) => apply({ windowGrowthBudget: v }) },
  { of, option: 'maxReceiveMessageSize', bad: sizes(0), call: (v) => apply({ maxReceiveMessageSize: v }) },
  { of, option: 'windowUpdateThreshold', bad: sizes(1), call: (v) => apply({ windowUpdateThreshold: v }) },
  {
    of,
    option: 'maxChunkSize',
    bad: [...sizes(16384), [4 * 1024 * 1024, R]],
    call: (v) => apply({ maxChunkSize: v }),
  },
];
const serverOptionRows = (of: string, apply: (options: Record<string, unknown>) => unknown): Row[] => [
  ...tunnelOptionRows(of, apply),
  { of, option: 'maxConcurrentStreams', bad: sizes(1), call: (v) => apply({ maxConcurrentStreams: v }) },
  {
    of,
    option: 'interceptors',
    bad: [
      [() => {}, T],
      [[1], T],
      [null, T],
    ],
    call: (v) => apply({ interceptors: v }),
  },
];
const rpcOptionRows = (of: string, apply: (options: Record<string, unknown>) => unknown): Row[] => [
  {
    of,
    option: 'metadata',
    bad: [
      [{ authorization: 'x' }, T],
      ['x', T],
      [null, T],
    ],
    call: (v) => apply({ metadata: v }),
  },
  { of, option: 'callOptions', bad: notObjects, call: (v) => apply({ callOptions: v }) },
  { of, option: 'signal', bad: notSignals, call: (v) => apply({ signal: v }) },
];
const connections: Array<readonly [unknown, Kind]> = [
  [null, T],
  [undefined, T],
  ['127.0.0.1:9', T],
  [{}, T],
];
const delays = (min: number): Array<readonly [unknown, Kind]> => [
  [min - 1, R],
  [-100, R],
  [Number.NaN, R],
  [2 ** 31, R],
  ['100', T],
];

/** `keepalive` (an object of ms, or false) and, under `KeepaliveOptions`, its two fields. */
const keepaliveRows = (of: string, apply: (options: Record<string, unknown>) => unknown): Row[] => [
  {
    of,
    option: 'keepalive',
    bad: [
      [true, T],
      ['15s', T],
      [null, T],
      [15_000, T],
    ],
    call: (v) => apply({ keepalive: v }),
  },
  ...(['timeMs', 'timeoutMs'] as const).map((field) => ({
    of: 'KeepaliveOptions',
    option: field,
    bad: [
      [99, R],
      [-1, R],
      [Number.NaN, R],
      [2 ** 31, R],
      ['10s', T],
    ] as Array<readonly [unknown, Kind]>,
    call: (v: unknown) => apply({ keepalive: { [field]: v } }),
  })),
];

/** `http2WindowSize`: 0, or an HTTP/2 window from 65535 to 2^31-1. */
const http2WindowRows = (of: string, apply: (options: Record<string, unknown>) => unknown): Row[] => [
  {
    of,
    option: 'http2WindowSize',
    bad: [
      [-1, R],
      [1000, R],
      [1.5, R],
      [2 ** 31, R],
      ['1mb', T],
    ],
    call: (v) => apply({ http2WindowSize: v }),
  },
];

const reverse = () => new ReverseTunnelServer(client);
const handler = () => new TunnelServiceHandler();

const rows: Row[] = [
  // new TunnelConnection(address, options)
  {
    of: 'TunnelConnection',
    option: 'address',
    bad: [
      [undefined, T],
      [9, T],
      ['127.0.0.1', R],
      ['http://127.0.0.1:9', R],
      ['::1:9', R],
    ],
    call: (v) => new TunnelConnection(v as string),
  },
  {
    of: 'TunnelConnection',
    option: 'options',
    bad: notObjects,
    call: (v) => new TunnelConnection('127.0.0.1:9', v as object),
  },
  {
    of: 'TunnelConnectionOptions',
    option: 'tls',
    bad: [
      ['yes', T],
      [{ ca: 5 }, T],
      [{ cert: [Buffer.alloc(1), 2] }, T],
      [{ key: {} }, T],
      [{ servername: 1 }, T],
      [{ rejectUnauthorized: 'no' }, T],
    ],
    call: (v) => new TunnelConnection('127.0.0.1:9', { tls: v as boolean }),
  },
  {
    of: 'TunnelConnectionOptions',
    option: 'authority',
    bad: [
      ['', T],
      [5, T],
    ],
    call: (v) => new TunnelConnection('127.0.0.1:9', { authority: v as string }),
  },
  ...http2WindowRows('TunnelConnectionOptions', (o) => new TunnelConnection('127.0.0.1:9', o)),
  {
    of: 'TunnelConnectionOptions',
    option: 'maxReceiveMessageLength',
    bad: [
      [-2, R],
      [1.5, R],
      [2 ** 31, R],
      ['4MiB', T],
    ],
    call: (v) => new TunnelConnection('127.0.0.1:9', { maxReceiveMessageLength: v as number }),
  },
  {
    of: 'TunnelConnectionOptions',
    option: 'connectTimeoutMs',
    bad: [
      [0, R],
      [-1, R],
      [2 ** 31, R],
      [Number.NaN, R],
      ['20s', T],
    ],
    call: (v) => new TunnelConnection('127.0.0.1:9', { connectTimeoutMs: v as number }),
  },
  {
    of: 'openTunnel on a TunnelConnection',
    option: 'callOptions',
    bad: [
      [{ interceptors: [] }, T],
      [{ interceptor_providers: [] }, T],
      [{ credentials: {} }, T],
    ],
    call: (v) => openTunnel(new TunnelConnection('127.0.0.1:9'), { callOptions: v as object }),
  },
  {
    of: 'ReverseTunnelServer.serve on a TunnelConnection',
    option: 'callOptions',
    bad: [
      [{ interceptors: [] }, T],
      [{ credentials: {} }, T],
    ],
    call: (v) => new ReverseTunnelServer(new TunnelConnection('127.0.0.1:9')).serve({ callOptions: v as object }),
  },
  {
    of: 'ReverseTunnelServer.keepOpen on a TunnelConnection',
    option: 'callOptions',
    bad: [[{ interceptor_providers: [] }, T]],
    call: (v) => new ReverseTunnelServer(new TunnelConnection('127.0.0.1:9')).keepOpen({ callOptions: v as object }),
  },
  // openTunnel(connection, options)
  { of: 'openTunnel', option: 'connection', bad: connections, call: (v) => openTunnel(v as Client) },
  { of: 'openTunnel', option: 'options', bad: notObjects, call: (v) => openTunnel(client, v as object) },
  ...tunnelOptionRows('OpenTunnelOptions', (o) => openTunnel(client, o)),
  ...rpcOptionRows('OpenTunnelOptions', (o) => openTunnel(client, o)),
  ...keepaliveRows('OpenTunnelOptions', (o) => openTunnel(client, o)),
  ...keepaliveRows('ClientKeepaliveOptions', (o) => openTunnel(client, o)),
  ...http2WindowRows('OpenTunnelOptions', (o) => openTunnel(client, o)),
  ...http2WindowRows('ClientHttp2WindowOptions', (o) => openTunnel(client, o)),
  {
    of: 'OpenTunnelOptions',
    option: 'connectTimeoutMs',
    bad: [
      [-1, R],
      [Number.NaN, R],
      [Number.POSITIVE_INFINITY, R],
      ['5s', T],
      [null, T],
    ],
    call: (v) => openTunnel(client, { connectTimeoutMs: v as number }),
  },

  // createTunnelClient(clientClass, tunnel, options)
  {
    of: 'createTunnelClient',
    option: 'clientClass',
    bad: [
      [undefined, T],
      [{}, T],
      ['EchoClient', T],
    ],
    call: (v) => createTunnelClient(v as typeof Client, client.getChannel() as never),
  },
  { of: 'createTunnelClient', option: 'tunnel', bad: connections, call: (v) => createTunnelClient(Client, v as never) },
  {
    of: 'createTunnelClient',
    option: 'options',
    bad: [
      [null, T],
      ['x', T],
    ],
    call: (v) => createTunnelClient(Client, client.getChannel() as never, v as object),
  },

  // new TunnelServiceHandler(options)
  {
    of: 'TunnelServiceHandler',
    option: 'options',
    bad: notObjects,
    call: (v) => new TunnelServiceHandler(v as object),
  },
  ...serverOptionRows('TunnelServiceHandlerOptions', (o) => new TunnelServiceHandler(o)),
  ...keepaliveRows('TunnelServiceHandlerOptions', (o) => new TunnelServiceHandler(o)),
  {
    of: 'TunnelServiceHandlerOptions',
    option: 'noReverseTunnels',
    bad: notBooleans,
    call: (v) => new TunnelServiceHandler({ noReverseTunnels: v as boolean }),
  },
  ...(['affinityKey', 'onReverseTunnelOpen', 'onReverseTunnelClose'] as const).map((option) => ({
    of: 'TunnelServiceHandlerOptions',
    option,
    bad: notFunctions,
    call: (v: unknown) => new TunnelServiceHandler({ [option]: v }),
  })),
  ...http2WindowRows('TunnelServiceHandlerOptions', (o) => new TunnelServiceHandler(o)),

  // new ReverseTunnelServer(connection, options)
  {
    of: 'ReverseTunnelServer',
    option: 'connection',
    bad: connections,
    call: (v) => new ReverseTunnelServer(v as Client),
  },
  {
    of: 'ReverseTunnelServer',
    option: 'options',
    bad: notObjects,
    call: (v) => new ReverseTunnelServer(client, v as object),
  },
  ...serverOptionRows('ReverseTunnelServerOptions', (o) => new ReverseTunnelServer(client, o)),
  ...keepaliveRows('ReverseTunnelServerOptions', (o) => new ReverseTunnelServer(client, o)),
  ...http2WindowRows('ReverseTunnelServerOptions', (o) => new ReverseTunnelServer(client, o)),
  {
    of: 'ReverseTunnelServerOptions',
    option: 'authenticate',
    bad: notFunctions,
    call: (v) => new ReverseTunnelServer(client, { authenticate: v as () => void }),
  },

  // ReverseTunnelServer#serve(options), #keepOpen(options), #gracefulStop(options)
  { of: 'ServeOptions', option: 'options', bad: notObjects, call: (v) => reverse().serve(v as object) },
  ...rpcOptionRows('ServeOptions', (o) => reverse().serve(o)),
  { of: 'KeepOpenOptions', option: 'options', bad: notObjects, call: (v) => reverse().keepOpen(v as object) },
  ...rpcOptionRows('KeepOpenOptions', (o) => reverse().keepOpen(o)),
  {
    of: 'KeepOpenOptions',
    option: 'tunnels',
    // 0, -1 and 1.5 used to open one tunnel.
    bad: [...sizes(1), [0, R]],
    call: (v) => reverse().keepOpen({ tunnels: v as number }),
  },
  {
    of: 'KeepOpenOptions',
    option: 'backoff',
    bad: notObjects,
    call: (v) => reverse().keepOpen({ backoff: v as BackoffOptions }),
  },
  {
    of: 'BackoffOptions',
    option: 'initialDelayMs',
    // Zero or below retried in a tight loop (hundreds of attempts a second).
    bad: [...delays(1), [0, R]],
    call: (v) => reverse().keepOpen({ backoff: { initialDelayMs: v as number } }),
  },
  {
    of: 'BackoffOptions',
    option: 'maxDelayMs',
    bad: [...delays(1), [999, R]],
    call: (v) => reverse().keepOpen({ backoff: { maxDelayMs: v as number } }),
  },
  {
    of: 'BackoffOptions',
    option: 'multiplier',
    bad: [
      [0.5, R],
      [-2, R],
      [Number.NaN, R],
      [Number.POSITIVE_INFINITY, R],
      ['2', T],
    ],
    call: (v) => reverse().keepOpen({ backoff: { multiplier: v as number } }),
  },
  {
    of: 'BackoffOptions',
    option: 'jitter',
    bad: [
      [-0.1, R],
      [1.5, R],
      [Number.NaN, R],
      ['0.2', T],
    ],
    call: (v) => reverse().keepOpen({ backoff: { jitter: v as number } }),
  },
  {
    of: 'BackoffOptions',
    option: 'resetAfterMs',
    bad: [
      [-1, R],
      [Number.NaN, R],
      ['1s', T],
    ],
    call: (v) => reverse().keepOpen({ backoff: { resetAfterMs: v as number } }),
  },
  {
    of: 'ReverseTunnelServer.gracefulStop',
    option: 'signal',
    bad: notSignals,
    call: (v) => reverse().gracefulStop({ signal: v as AbortSignal }),
  },
  {
    of: 'ShutdownOptions',
    option: 'signal',
    bad: notSignals,
    call: (v) => reverse().tryShutdown({ signal: v as AbortSignal }),
  },
  {
    of: 'TunnelServiceHandler.tryShutdown',
    option: 'signal',
    bad: notSignals,
    call: (v) => handler().tryShutdown({ signal: v as AbortSignal }),
  },
  {
    of: 'TunnelServiceHandler.tryShutdown',
    option: 'options',
    bad: notObjects,
    call: (v) => handler().tryShutdown(v as object),
  },

  // TunnelPool#waitForReady(options)
  {
    of: 'WaitForReadyOptions',
    option: 'options',
    bad: notObjects,
    call: (v) =>
      handler()
        .asChannel()
        .waitForReady(v as object),
  },
  {
    of: 'WaitForReadyOptions',
    option: 'signal',
    bad: notSignals,
    call: (v) =>
      handler()
        .asChannel()
        .waitForReady({ signal: v as AbortSignal }),
  },
  ...(['timeoutMs', 'timeout'] as const).map((option) => ({
    of: 'WaitForReadyOptions',
    option,
    // Any finite wait (beyond Node's 2^31-1 ms timer limit too).
    bad: [
      [-1, R],
      [-100, R],
      [Number.NaN, R],
      [Number.POSITIVE_INFINITY, R],
      ['100', T],
    ] as Array<readonly [unknown, Kind]>,
    call: (v: unknown) =>
      handler()
        .asChannel()
        .waitForReady({ [option]: v as number }),
  })),

  // createProxyHandler(target, options)
  { of: 'createProxyHandler', option: 'target', bad: connections, call: (v) => createProxyHandler(v as Client) },
  {
    of: 'createProxyHandler',
    option: 'options',
    bad: notObjects,
    call: (v) => createProxyHandler(client, v as object),
  },
  ...(['rewriteMetadata', 'onFinish'] as const).map((option) => ({
    of: 'ProxyHandlerOptions',
    option,
    bad: notFunctions,
    call: (v: unknown) => createProxyHandler(client, { [option]: v }),
  })),
];

/** The error a call raised, synchronously or by rejecting; undefined if it raised none. */
async function raised(call: () => unknown): Promise<unknown> {
  try {
    const result = call();
    if (result instanceof Promise) await result;
  } catch (err) {
    return err;
  }
  return undefined;
}

describe('public options are validated', () => {
  for (const row of rows) {
    it(`${row.of}.${row.option}`, async () => {
      for (const [value, kind] of row.bad) {
        const label = `${row.of}.${row.option} = ${typeof value === 'number' ? value : JSON.stringify(value)}`;
        const err = await raised(() => row.call(value));
        assert.ok(err instanceof kind, `${label}: expected a ${kind.name}, got ${String(err)}`);
        // The last segment of the name in the message (backoff.initialDelayMs, options, tunnels…).
        assert.match((err as Error).message, new RegExp(`\\b${row.option}\\b`), label);
      }
    });
  }

  it('accepts good values and leaves the defaults alone', async () => {
    const signal = AbortSignal.abort();
    assert.doesNotThrow(
      () =>
        new TunnelServiceHandler({
          flowControl: false,
          initialWindowSize: 1 << 20,
          maxWindowSize: 1 << 20,
          windowGrowthBudget: 0,
          maxReceiveMessageSize: 0,
          windowUpdateThreshold: 1,
          maxConcurrentStreams: 1,
          interceptors: [],
          noReverseTunnels: true,
          affinityKey: () => 1,
          http2WindowSize: 0,
        }),
    );
    assert.doesNotThrow(() => new ReverseTunnelServer(client.getChannel(), { maxWindowSize: 65536 }));
    // An aborted signal is a valid option: the call rejects with the abort, not a TypeError.
    const err = await raised(() => openTunnel(client, { metadata: new Metadata(), callOptions: {}, signal }));
    assert.ok(!(err instanceof TypeError) && !(err instanceof RangeError), String(err));
    await reverse().keepOpen({ tunnels: 3, backoff: { initialDelayMs: 1.5, maxDelayMs: 2, jitter: 0 }, signal });
    await handler()
      .asChannel()
      .waitForReady({ timeoutMs: 0 })
      .catch(() => {});
  });

  it('covers every property of every exported options interface', () => {
    const index = fileURLToPath(new URL('../../packages/grpctunnel/src/index.ts', import.meta.url));
    const program = ts.createProgram([index], { strict: true, noEmit: true, skipLibCheck: true, types: [] });
    const checker = program.getTypeChecker();
    const source = program.getSourceFile(index)!;
    const module = checker.getSymbolAtLocation(source)!;
    const covered = new Set(rows.map((r) => `${r.of}.${r.option}`));
    const missing: string[] = [];
    const seen: string[] = [];
    for (const exported of checker.getExportsOfModule(module)) {
      const name = exported.getName();
      if (!/Options$/.test(name)) continue;
      const type = checker.getDeclaredTypeOfSymbol(checker.getAliasedSymbol(exported));
      for (const property of type.getProperties()) {
        seen.push(`${name}.${property.getName()}`);
        if (!covered.has(`${name}.${property.getName()}`)) missing.push(`${name}.${property.getName()}`);
      }
    }
    // The compiler did see the interfaces (an empty inventory would pass vacuously).
    assert.ok(seen.includes('KeepOpenOptions.tunnels') && seen.includes('BackoffOptions.jitter'), seen.join());
    assert.ok(seen.length > 50, `only ${seen.length} options found`);
    // TunnelOptions and TunnelServerOptions are checked through the options that extend them.
    const viaOthers = new Set(['TunnelOptions', 'TunnelServerOptions']);
    assert.deepEqual(
      missing.filter((m) => !viaOthers.has(m.split('.')[0]!)),
      [],
    );
  });
});
