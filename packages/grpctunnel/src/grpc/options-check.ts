// Checks of what users pass to the public API, in one place. A wrong option
// used to be coerced into something that ran (tunnels: 0 opened one tunnel,
// a negative backoff reconnected in a tight loop, openTunnel(null) dialed a
// host named "tunnel"); now it is refused where it is passed, with the
// function and the option named: TypeError for the wrong kind of value,
// RangeError for a number out of range.
import { MAX_CHUNK_SIZE, MAX_EXTENDED_CHUNK_SIZE } from '../engine/constants.js';
import { checkHttp2WindowSize } from './http2-window.js';

/** Window sizes travel as uint32 and must not overflow a sender's signed 31-bit window (as in the engine). */
const MAX_WINDOW = 0x7fffffff;
/** Message sizes travel in gRPC's 32-bit length prefix. */
const MAX_MESSAGE = 0xffffffff;
/** Longest delay a Node timer takes (about 24.8 days); longer ones fire at once. */
const MAX_TIMER_MS = 0x7fffffff;
const TIMER_HINT = ' (milliseconds; at most about 24.8 days)';
/** Engine defaults the cross-field checks compare against. */
const DEFAULT_INITIAL_WINDOW = 65536;
const DEFAULT_INITIAL_DELAY_MS = 1000;

type Options = Record<string, unknown>;

/** A short description of a bad value for an error message. */
function shown(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
    case 'number':
    case 'boolean':
    case 'bigint':
    case 'undefined':
      return String(value);
    case 'function':
      return 'a function';
    case 'symbol':
      return 'a symbol';
    default:
      return 'an object';
  }
}

/**
 * Checks options of one public call as a table of rules.
 * `where` names the call in messages, e.g. "openTunnel".
 */
class Checker {
  constructor(
    private readonly where: string,
    private readonly prefix = '',
  ) {}

  name(key: string): string {
    return `${this.where}: ${this.prefix}${key}`;
  }

  typeError(key: string, wanted: string, value: unknown): TypeError {
    return new TypeError(`${this.name(key)} must be ${wanted}, got ${shown(value)}`);
  }

  /** The options object itself: undefined stands for {}. */
  object(key: string, value: unknown): Options {
    if (value === undefined) return {};
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw this.typeError(key, 'an object', value);
    }
    return value as Options;
  }

  number(key: string, value: unknown, min: number, max: number, options: { integer?: boolean; hint?: string } = {}) {
    if (value === undefined) return;
    if (typeof value !== 'number') throw this.typeError(key, 'a number', value);
    const ok = (options.integer ? Number.isInteger(value) : !Number.isNaN(value)) && value >= min && value <= max;
    if (!ok) {
      // Bounds that only exclude Infinity read better as "finite".
      const unbounded = max >= Number.MAX_SAFE_INTEGER;
      const kind = options.integer ? 'an integer' : max === Number.POSITIVE_INFINITY ? 'a number' : 'a finite number';
      const range = unbounded ? `>= ${min}` : `from ${min} to ${max}`;
      throw new RangeError(`${this.name(key)} must be ${kind} ${range}, got ${value}${options.hint ?? ''}`);
    }
  }

  boolean(key: string, value: unknown): void {
    if (value !== undefined && typeof value !== 'boolean') throw this.typeError(key, 'a boolean', value);
  }

  func(key: string, value: unknown): void {
    if (value !== undefined && typeof value !== 'function') throw this.typeError(key, 'a function', value);
  }

  functions(key: string, value: unknown): void {
    if (value === undefined) return;
    if (!Array.isArray(value) || value.some((f) => typeof f !== 'function')) {
      throw this.typeError(key, 'an array of functions', value);
    }
  }

  /** Duck-typed, so that a grpc-js copy other than ours (or a polyfill) is accepted. */
  signal(key: string, value: unknown): void {
    if (value === undefined) return;
    const s = value as { aborted?: unknown; addEventListener?: unknown } | null;
    if (
      typeof s !== 'object' ||
      s === null ||
      typeof s.aborted !== 'boolean' ||
      typeof s.addEventListener !== 'function'
    ) {
      throw this.typeError(key, 'an AbortSignal', value);
    }
  }

  metadata(key: string, value: unknown): void {
    if (value === undefined) return;
    const m = value as { clone?: unknown; set?: unknown; get?: unknown } | null;
    if (typeof m !== 'object' || m === null || typeof m.clone !== 'function' || typeof m.set !== 'function') {
      throw this.typeError(key, 'a grpc-js Metadata', value);
    }
  }

  /** Where a grpc-js client or channel is expected (the connection a tunnel runs on, a proxy's target). */
  /** A grpc-js Client or Channel; `own`: the caller also takes a TunnelConnection (checked by the caller with instanceof). */
  connection(key: string, value: unknown, own = false): void {
    const c = value as { getChannel?: unknown; createCall?: unknown } | null;
    const ok =
      typeof c === 'object' && c !== null && (typeof c.getChannel === 'function' || typeof c.createCall === 'function');
    if (!ok)
      throw this.typeError(
        key,
        own ? 'a grpc-js Client or Channel, or a TunnelConnection' : 'a grpc-js Client or Channel',
        value,
      );
  }
}

/** Tuning shared by both ends of a tunnel (TunnelOptions). */
function tunnelOptions(check: Checker, o: Options): void {
  check.boolean('flowControl', o.flowControl);
  check.number('initialWindowSize', o.initialWindowSize, 1, MAX_WINDOW, { integer: true });
  check.number('maxWindowSize', o.maxWindowSize, 1, MAX_WINDOW, { integer: true });
  const initial = (o.initialWindowSize as number | undefined) ?? DEFAULT_INITIAL_WINDOW;
  if (o.maxWindowSize !== undefined && (o.maxWindowSize as number) < initial) {
    const which = o.initialWindowSize === undefined ? `${initial}, the default` : String(initial);
    throw new RangeError(
      `${check.name('maxWindowSize')} (${o.maxWindowSize}) must be at least initialWindowSize (${which})`,
    );
  }
  check.number('windowGrowthBudget', o.windowGrowthBudget, 0, Number.MAX_SAFE_INTEGER, { integer: true });
  check.number('windowUpdateThreshold', o.windowUpdateThreshold, 1, MAX_WINDOW, { integer: true });
  check.number('maxReceiveMessageSize', o.maxReceiveMessageSize, 0, MAX_MESSAGE, {
    integer: true,
    hint: ' (leave it unset for the 4 MiB default; -1 does not mean unlimited here)',
  });
  check.number('maxChunkSize', o.maxChunkSize, MAX_CHUNK_SIZE, MAX_EXTENDED_CHUNK_SIZE, {
    integer: true,
    hint: ` (${MAX_CHUNK_SIZE} turns larger chunks off)`,
  });
}

/** The side that serves tunneled calls (TunnelServerOptions). */
function tunnelServerOptions(check: Checker, o: Options): void {
  tunnelOptions(check, o);
  check.number('maxConcurrentStreams', o.maxConcurrentStreams, 1, Number.MAX_SAFE_INTEGER, {
    integer: true,
    hint: ' (leave it unset for no limit)',
  });
  check.functions('interceptors', o.interceptors);
}

/** Liveness pings (`keepalive`): an object of ms, or false to turn them off. */
function keepaliveOption(check: Checker, value: unknown): void {
  if (value === undefined || value === false) return;
  if (value === true) throw check.typeError('keepalive', 'an object ({ timeMs, timeoutMs }) or false', value);
  const o = check.object('keepalive', value);
  check.number('keepalive.timeMs', o.timeMs, 100, MAX_TIMER_MS);
  check.number('keepalive.timeoutMs', o.timeoutMs, 100, MAX_TIMER_MS);
}

/** The request side of a tunnel RPC: metadata, call options, signal. */
function rpcOptions(check: Checker, o: Options): void {
  check.metadata('metadata', o.metadata);
  check.object('callOptions', o.callOptions);
  check.signal('signal', o.signal);
}

/**
 * For calls that return a promise: runs `check` and returns a rejected
 * promise with its error, or undefined when the arguments are fine.
 */
export function rejection(check: () => void): Promise<never> | undefined {
  try {
    check();
    return undefined;
  } catch (err) {
    return Promise.reject(err);
  }
}

/** Arguments of `openTunnel(connection, options)`. */
export function checkOpenTunnel(connection: unknown, options: unknown, ownConnection = false): void {
  const check = new Checker('openTunnel');
  if (!ownConnection) check.connection('connection', connection, true);
  const o = check.object('options', options);
  if (ownConnection) grpcJsOnly(check, o.callOptions);
  tunnelOptions(check, o);
  rpcOptions(check, o);
  keepaliveOption(check, o.keepalive);
  http2WindowOption(check, o.http2WindowSize);
  // Any delay a timer can wait (setLongTimeout): past 2^31-1 ms too.
  check.number('connectTimeoutMs', o.connectTimeoutMs, 0, Number.MAX_SAFE_INTEGER);
}

/** Arguments of `createTunnelClient(clientClass, tunnel, options)`. */
export function checkCreateTunnelClient(clientClass: unknown, tunnel: unknown, options: unknown): void {
  const check = new Checker('createTunnelClient');
  check.func('clientClass', clientClass);
  if (clientClass === undefined) throw check.typeError('clientClass', 'a function', clientClass);
  check.connection('tunnel', tunnel);
  check.object('options', options);
}

/** Options of `new TunnelServiceHandler(options)`. */
export function checkHandlerOptions(options: unknown): void {
  const check = new Checker('TunnelServiceHandler');
  const o = check.object('options', options);
  tunnelServerOptions(check, o);
  keepaliveOption(check, o.keepalive);
  check.boolean('noReverseTunnels', o.noReverseTunnels);
  check.func('affinityKey', o.affinityKey);
  check.func('onReverseTunnelOpen', o.onReverseTunnelOpen);
  check.func('onReverseTunnelClose', o.onReverseTunnelClose);
  http2WindowOption(check, o.http2WindowSize);
}

/** An HTTP/2 window to raise a connection to (`http2WindowSize`): 0 or 65535 to 2^31-1. */
function http2WindowOption(check: Checker, value: unknown): void {
  if (value === undefined) return;
  if (typeof value !== 'number') throw check.typeError('http2WindowSize', 'a number', value);
  try {
    checkHttp2WindowSize(value);
  } catch (err) {
    throw new RangeError(`${check.name('')}${(err as Error).message}`);
  }
}

/** Arguments of `new ReverseTunnelServer(connection, options)`. */
export function checkReverseServer(connection: unknown, options: unknown, ownConnection = false): void {
  const check = new Checker('ReverseTunnelServer');
  if (!ownConnection) check.connection('connection', connection, true);
  const o = check.object('options', options);
  tunnelServerOptions(check, o);
  keepaliveOption(check, o.keepalive);
  http2WindowOption(check, o.http2WindowSize);
  check.func('authenticate', o.authenticate);
}

/** Options of `ReverseTunnelServer.serve(options)`. */
export function checkServeOptions(options: unknown, ownConnection = false): void {
  const check = new Checker('ReverseTunnelServer.serve');
  const o = check.object('options', options);
  rpcOptions(check, o);
  if (ownConnection) grpcJsOnly(check, o.callOptions);
}

/** Options of `ReverseTunnelServer.keepOpen(options)`, backoff included. */
export function checkKeepOpenOptions(options: unknown, ownConnection = false): void {
  const check = new Checker('ReverseTunnelServer.keepOpen');
  const o = check.object('options', options);
  rpcOptions(check, o);
  if (ownConnection) grpcJsOnly(check, o.callOptions);
  check.number('tunnels', o.tunnels, 1, Number.MAX_SAFE_INTEGER, { integer: true });
  const b = check.object('backoff', o.backoff);
  const backoff = new Checker('ReverseTunnelServer.keepOpen', 'backoff.');
  // A zero or negative first delay (it never grows from zero) retried in a tight loop.
  backoff.number('initialDelayMs', b.initialDelayMs, 1, MAX_TIMER_MS, { hint: TIMER_HINT });
  backoff.number('maxDelayMs', b.maxDelayMs, 1, MAX_TIMER_MS, { hint: TIMER_HINT });
  const initial = (b.initialDelayMs as number | undefined) ?? DEFAULT_INITIAL_DELAY_MS;
  if (b.maxDelayMs !== undefined && (b.maxDelayMs as number) < initial) {
    const which = b.initialDelayMs === undefined ? `${initial}, the default` : String(initial);
    throw new RangeError(
      `ReverseTunnelServer.keepOpen: backoff.maxDelayMs (${b.maxDelayMs}) must be at least backoff.initialDelayMs (${which})`,
    );
  }
  backoff.number('multiplier', b.multiplier, 1, Number.MAX_VALUE);
  backoff.number('jitter', b.jitter, 0, 1);
  backoff.number('resetAfterMs', b.resetAfterMs, 0, Number.POSITIVE_INFINITY);
}

/** Options of the `tryShutdown(options)` methods (`where` names the method). */
export function checkShutdownOptions(where: string, options: unknown): void {
  const check = new Checker(where);
  check.signal('signal', check.object('options', options).signal);
}

/** Options of `TunnelPool.waitForReady(options)`. */
export function checkWaitForReadyOptions(options: unknown): void {
  const check = new Checker('TunnelPool.waitForReady');
  const o = check.object('options', options);
  check.signal('signal', o.signal);
  // setLongTimeout waits past Node's 2^31-1 ms timer limit: any finite wait.
  check.number('timeoutMs', o.timeoutMs, 0, Number.MAX_SAFE_INTEGER);
  check.number('timeout', o.timeout, 0, Number.MAX_SAFE_INTEGER);
}

/** Arguments of `createProxyHandler(target, options)`. */
export function checkProxyHandler(target: unknown, options: unknown): void {
  const check = new Checker('createProxyHandler');
  check.connection('target', target);
  const o = check.object('options', options);
  check.func('rewriteMetadata', o.rewriteMetadata);
  check.func('onFinish', o.onFinish);
}

/** A PEM value of the TLS options: a string, a Buffer, or an array of them. */
function pem(check: Checker, key: string, value: unknown): void {
  if (value === undefined) return;
  const one = (v: unknown) => typeof v === 'string' || Buffer.isBuffer(v);
  if (!(one(value) || (Array.isArray(value) && value.every(one)))) {
    throw check.typeError(key, 'a string, a Buffer or an array of them', value);
  }
}

/** Arguments of `new TunnelConnection(address, options)`. */
export function checkTunnelConnection(address: unknown, options: unknown): void {
  const check = new Checker('TunnelConnection');
  if (typeof address !== 'string') throw check.typeError('address', 'a "host:port" string', address);
  if (!/^(\[[^\]]+\]|[^:[\]/]+):\d{1,5}$/.test(address)) {
    throw new RangeError(
      `${check.name('address')} must be "host:port" (an IPv6 host in brackets), got ${shown(address)}`,
    );
  }
  const o = check.object('options', options);
  if (o.tls !== undefined && typeof o.tls !== 'boolean') {
    const tls = check.object('tls', o.tls);
    const nested = new Checker('TunnelConnection', 'tls.');
    pem(nested, 'ca', tls.ca);
    pem(nested, 'cert', tls.cert);
    pem(nested, 'key', tls.key);
    if (tls.servername !== undefined && typeof tls.servername !== 'string') {
      throw nested.typeError('servername', 'a string', tls.servername);
    }
    nested.boolean('rejectUnauthorized', tls.rejectUnauthorized);
  }
  if (o.authority !== undefined && (typeof o.authority !== 'string' || o.authority === '')) {
    throw check.typeError('authority', 'a non-empty string', o.authority);
  }
  http2WindowOption(check, o.http2WindowSize);
  check.number('maxReceiveMessageLength', o.maxReceiveMessageLength, -1, 0x7fffffff, { integer: true });
  check.number('connectTimeoutMs', o.connectTimeoutMs, 1, 0x7fffffff);
}

/** callOptions a TunnelConnection cannot apply (they are grpc-js's call stack): refused rather than ignored. */
function grpcJsOnly(check: Checker, callOptions: unknown): void {
  if (callOptions === null || typeof callOptions !== 'object') return;
  for (const key of ['interceptors', 'interceptor_providers', 'credentials', 'parent', 'propagate_flags', 'host']) {
    if ((callOptions as Options)[key] !== undefined) {
      throw new TypeError(
        `${check.name(`callOptions.${key}`)} applies to a grpc-js Client or Channel only; with a TunnelConnection only callOptions.deadline applies`,
      );
    }
  }
}
