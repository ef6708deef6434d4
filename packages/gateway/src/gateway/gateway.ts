// The gateway: accepts agents' reverse tunnels on one port, and on another
// accepts ordinary gRPC calls for any method and forwards each through a
// tunnel of the chosen agent.
import http2 from 'node:http2';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import {
  type ChannelInterface,
  Metadata,
  Server,
  ServerCredentials,
  status as Status,
  type StatusObject,
} from '@grpc/grpc-js';
import { type AuthContext, type KeepaliveOptions, type ReverseTunnel, TunnelServiceHandler } from 'grpctunnel';
import { DEFAULT_HTTP2_WINDOW_SIZE, PeerFaultLog } from 'grpctunnel/internal';
import type { Registry } from 'prom-client';
import { type AccessPolicy, type AgentTokens, bearer, type CallerTokens } from './access.js';
import { type AdminServer, startAdmin } from './admin.js';
import { NOT_GRPC_TEXT, type Route, serveAnyMethod } from './any-method-server.js';
import { identifyCaller } from './caller-auth.js';
import { answerHttp1OverTls, sniffHttp1 } from './http1-hint.js';
import { createLogger, type Logger } from './logger.js';
import { BoundedLabels, codeName, createMetrics, OTHER_LABEL } from './metrics.js';
import { listenHttp2, splitHostPort } from './net.js';
import {
  closeIdleSessions,
  DEFAULT_PEER_LIMITS,
  listenGuarded,
  PeerConnectionGuard,
  type PeerLimits,
} from './peer-limits.js';
import { advertiseReplica, type ReplicaAdvert } from './replicas.js';

/** The request header that names the agent a call is for (and, on a tunnel, the agent's id). */
export const AGENT_HEADER = 'grpctunnel-agent';

/** Who may use the gateway; {@link Gateway.reload} swaps it while running. */
export interface GatewayAccess {
  /** Agent tokens and the ids each may register; without them any agent is accepted. */
  agentTokens?: AgentTokens;
  /** Caller tokens naming callers on the caller port. */
  callerTokens?: CallerTokens;
  /** Which caller reaches which agents and methods; without it, every authenticated caller reaches all. */
  policy?: AccessPolicy;
}

/**
 * A call arriving on the caller port, as the {@link GatewayHooks} see it.
 */
export interface IncomingCall {
  /** The method path, `/package.Service/Method`. */
  readonly path: string;
  /**
   * The request metadata. Hooks may change it: what is left is what the
   * target behind the agent receives, less `grpctunnel-agent` (always
   * removed) and `authorization` (removed unless `forwardCallerAuth`).
   */
  readonly metadata: Metadata;
  /** The caller's address, `host:port`. */
  readonly peer: string;
  /**
   * The client certificate the caller presented on a TLS caller port
   * (verified against `clientCa` when that is set; see `authorized`).
   */
  readonly certificate: PeerCertificate | undefined;
  /** Whether {@link IncomingCall.certificate} chains to `clientCa`. */
  readonly authorized: boolean;
  /** Aborted when the caller goes away before the hooks have answered. */
  readonly signal: AbortSignal;
}

/** Who a caller is, as {@link GatewayHooks.authenticateCaller} decides. */
export interface CallerIdentity {
  /** The name the policy, the logs and the metrics know the caller by. */
  readonly name: string;
}

/** A reverse tunnel an agent asks to open, as {@link GatewayHooks.admitAgent} sees it. */
export interface AgentTunnelRequest {
  /** The id the agent asked for in its `grpctunnel-agent` header, if any. */
  readonly requestedId: string | undefined;
  /** The tunnel RPC's request metadata (the agent's token is in `authorization`). */
  readonly metadata: Metadata;
  /** The agent's address, `host:port`. */
  readonly peer: string;
  /**
   * TLS facts of the agent's connection. The agents port does not ask agents
   * for certificates, so there is no peer certificate; agents authenticate
   * with their token (or what `admitAgent` checks in `metadata`).
   */
  readonly authContext: AuthContext;
}

/**
 * Hooks that let a program embedding the gateway decide who gets in and
 * where calls go. Each may answer at once or with a promise. To refuse, throw
 * a {@link GatewayRefusal} (its code and message reach the peer); anything
 * else thrown is logged and the peer gets INTERNAL with a generic message.
 */
export interface GatewayHooks {
  /**
   * Names the caller of a call, replacing the built-in checks (caller tokens,
   * client certificates); `undefined` refuses the call with UNAUTHENTICATED.
   * The policy, when there is one, then applies to the name returned.
   */
  authenticateCaller?(call: IncomingCall): CallerIdentity | undefined | Promise<CallerIdentity | undefined>;
  /**
   * Chooses the agent id a call goes to; `undefined` leaves the choice to the
   * default rule (the `grpctunnel-agent` header, else the only agent connected).
   */
  routeCall?(call: IncomingCall, caller: string): string | undefined | Promise<string | undefined>;
  /**
   * Admits or refuses an agent's tunnel, after the agent token check (when
   * there are agent tokens). Returns the id to register the tunnel under;
   * `undefined` keeps the id the agent asked for.
   */
  admitAgent?(tunnel: AgentTunnelRequest): string | undefined | Promise<string | undefined>;
}

/** Thrown by a {@link GatewayHooks} function to refuse with a status the peer sees. */
export class GatewayRefusal extends Error {
  /** Always `'GatewayRefusal'`. */
  override readonly name = 'GatewayRefusal';
  /** The gRPC status message sent to the peer (the same as `message`). */
  readonly details: string;
  constructor(
    /** The gRPC status code sent to the peer, e.g. `status.PERMISSION_DENIED`. */
    readonly code: Status,
    message: string,
  ) {
    super(message);
    this.details = message;
  }
}

/** Options of {@link startGateway}. */
export interface GatewayOptions {
  /** host:port for ordinary gRPC callers. */
  listen: string;
  /** host:port for agents' reverse tunnels. */
  agents: string;
  /** host:port for /metrics, /healthz and the status page; none without it. */
  admin?: string;
  /**
   * A bearer token the admin port's status page and /metrics ask for
   * (`authorization: Bearer TOKEN`; Prometheus sends it with
   * `authorization.credentials_file`). The page lists agent ids, their
   * addresses and recent errors. /healthz and /livez stay open for probes.
   * Default: none, the port is open to whoever reaches it.
   */
  adminToken?: string;
  /** Credentials and policy. */
  access: GatewayAccess;
  /** Serve both gRPC ports over TLS with this certificate. */
  tls?: {
    /** The certificate chain, PEM. */
    cert: Buffer;
    /** Its private key, PEM. */
    key: Buffer;
  };
  /** Ask callers for client certificates signed by this CA (mTLS on the caller port; needs `tls`). */
  clientCa?: Buffer;
  /** Serve callers on a non-loopback address with no caller authentication (a warning is logged). */
  allowUnauthenticatedCallers?: boolean;
  /** Forward the caller's `authorization` header to the target (dropped by default). */
  forwardCallerAuth?: boolean;
  /** This replica's id and the replica count, advertised to agents; none for a single gateway. */
  replica?: ReplicaAdvert;
  /** Per-peer connection limits on both gRPC ports. */
  limits?: PeerLimits;
  /**
   * The admin port's /healthz says ready once an agent has attached, or this
   * long after start (ms), so a rolling restart does not send callers to a
   * replica that holds no agents yet. Default 10000.
   */
  readyAfterMs?: number;
  /**
   * For its first minute, the gateway holds a call for an agent that is not
   * connected for up to this long (ms, within the caller's deadline), waiting
   * for the agent to arrive: after a restart, agents reconnect over a few
   * seconds while callers already arrive. 0 fails such calls at once with
   * UNAVAILABLE. Default 5000.
   */
  agentArrivalWaitMs?: number;
  /**
   * On {@link Gateway.close}, how long (ms) the gateway first goes on serving
   * as before while its /healthz already says not ready, so that a load
   * balancer takes it out of rotation before it stops accepting connections.
   * Without it, a caller whose new connection lands on the gateway in the
   * instant it stops sees a failed connect, and grpc-js fails that caller's
   * calls at once until its reconnect backoff ends. Set it to a little more
   * than the balancer's time to notice (readiness period times failure
   * threshold). Default 0 (a single gateway with no balancer in front).
   */
  drainDelayMs?: number;
  /**
   * Largest message, in bytes, a call may carry through the gateway in
   * either direction: a caller's request on the caller port, and a
   * response arriving from an agent. Larger ones fail that call with
   * RESOURCE_EXHAUSTED, as grpc-js does. Agents have a limit of their own
   * (`AgentOptions.maxMessageSize`); raise both together. Default 4 MiB,
   * grpc-js's default.
   */
  maxMessageSize?: number;
  /** Where log lines go; by default warnings and errors go to stderr. */
  logger?: Logger;
  /** Liveness pings toward agents (see the `keepalive` option of `TunnelServiceHandler`). */
  keepalive?: KeepaliveOptions | false;
  /** Custom caller authentication, routing and agent admission. */
  hooks?: GatewayHooks;
  /** Aborting it stops the gateway as {@link Gateway.close} does (and a start in progress fails). */
  signal?: AbortSignal;
}

/** A running gateway. */
export interface Gateway {
  /** host:port the caller port is bound to (the real port when `listen` asked for port 0). */
  readonly listenAddress: string;
  /** host:port the agents port is bound to. */
  readonly agentsAddress: string;
  /** host:port of the admin HTTP server, when `admin` was given. */
  readonly adminAddress: string | undefined;
  /** The agents connected now: each id with how many tunnels it has open here. */
  agents(): ReadonlyMap<string, number>;
  /**
   * A grpc-js channel through the tunnels of agent `agentId`, to call it
   * from this process. Calls made while the agent has no tunnel fail with
   * UNAVAILABLE.
   *
   * @example
   * ```ts
   * const client = new SomeClient('', credentials.createInsecure(), {
   *   channelOverride: gateway.channelFor('edge-1'),
   * });
   * ```
   */
  channelFor(agentId: string): ChannelInterface;
  /** The gateway's Prometheus metrics (served on the admin port; merge it into yours with `Registry.merge`). */
  readonly metrics: Registry;
  /**
   * Replaces the credentials and policy (SIGHUP). Calls in flight and tunnels
   * are untouched, except tunnels whose agent token no longer allows their
   * id: those close at once (their calls fail with UNAVAILABLE). Returns how
   * many tunnels closed.
   */
  reload(access: GatewayAccess): number;
  /**
   * Says not ready on /healthz, keeps serving for `drainDelayMs`, then stops
   * accepting, lets running calls finish for up to `graceMs` (default 5000),
   * cuts what still runs, and closes everything. A number is `graceMs`.
   * Calling it again returns the same promise, and a shorter grace (or an
   * aborted `signal`) takes effect: `close(0)` while a close is under way
   * skips what is left of the drain delay and the grace.
   */
  close(options?: GatewayCloseOptions | number): Promise<void>;
}

/** Options of {@link Gateway.close}. */
export interface GatewayCloseOptions {
  /** How long running calls may finish once callers are refused (ms); default 5000, 0 skips the drain delay too. */
  graceMs?: number;
  /** Aborting it ends the grace (and the drain delay) at once: running calls are cut. */
  signal?: AbortSignal;
}

/** A recent failure, for the status page. */
export interface RecentError {
  at: Date;
  what: string;
}

/** Node's timers hold at most this many milliseconds (2^31 - 1). */
const MAX_TIMER_MS = 2_147_483_647;

/** Throws a RangeError unless `ms` is a duration a timer can hold. */
function checkDuration(name: string, ms: number): void {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0 || ms > MAX_TIMER_MS) {
    throw new RangeError(`${name} must be a number of milliseconds from 0 to ${MAX_TIMER_MS}, not ${String(ms)}`);
  }
}

/** grpc-js's default limit on received messages, which the gateway and the agent keep unless told otherwise. */
export const DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024;
/** The largest message a gRPC length prefix can announce (2^32 - 1 bytes). */
const MAX_MESSAGE_SIZE = 0xffff_ffff;

/** Throws a RangeError unless `bytes` is a message size limit (1 byte up to what a gRPC frame can carry). */
export function checkMessageSize(name: string, bytes: number): void {
  if (!Number.isInteger(bytes) || bytes < 1 || bytes > MAX_MESSAGE_SIZE) {
    throw new RangeError(`${name} must be a whole number of bytes from 1 to ${MAX_MESSAGE_SIZE}, not ${String(bytes)}`);
  }
}

/** host:port of a connection, to match a connection with its HTTP/2 session. */
const endpoint = (socket: { remoteAddress?: string | undefined; remotePort?: number | undefined }) =>
  `${socket.remoteAddress}:${socket.remotePort}`;

/** A short description of a value a hook returned, for the log. */
const describe = (value: unknown): string =>
  value === null ? 'null' : typeof value === 'object' ? 'an object of another shape' : `a ${typeof value}`;

const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;

function refusal(code: Status, details: string): StatusObject {
  return { code, details, metadata: new Metadata() };
}

/** The path of the RPC agents open their tunnels with. */
const OPEN_REVERSE_TUNNEL = '/grpctunnel.v1.TunnelService/OpenReverseTunnel';

/**
 * Agents reach a replica that has just started over its first seconds (each
 * keeps dialing through the balancer until it holds tunnels on every
 * replica), while callers may reach it as soon as the first agent made it
 * ready. So for `windowMs` after start, a call for an agent that has not
 * arrived yet waits a while for it (`agentArrivalWaitMs`, within the
 * caller's deadline) instead of failing at once with UNAVAILABLE.
 */
const AGENT_ARRIVAL = { windowMs: 60_000, defaultWaitMs: 5000 };

/** Methods named in /metrics; calls to others count under {@link OTHER_LABEL}. */
const MAX_METHOD_LABELS = 500;
/** Agent ids named in /metrics (ids come from tunnels, which anyone may open without tokens). */
const MAX_AGENT_LABELS = 200;

/** Status codes that say nothing about whether a service has the method: callers and transports cause them. */
const NOT_A_SERVICE_ANSWER: ReadonlySet<number> = new Set([
  Status.UNIMPLEMENTED,
  Status.CANCELLED,
  Status.DEADLINE_EXCEEDED,
  Status.UNAVAILABLE,
]);

/** Whether a listen host can only be reached from this machine. */
function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

/** The agent ids with a ready tunnel (per key, not per tunnel: this runs on every call without a route header). */
function agentIds(handler: TunnelServiceHandler): string[] {
  return handler.reverseTunnelKeys().map(String);
}

const handlers = new WeakMap<Gateway, TunnelServiceHandler>();

/** The tunnel handler inside a gateway (for tests and the demo; not part of the public API). */
export function handlerOf(gateway: Gateway): TunnelServiceHandler {
  const handler = handlers.get(gateway);
  if (!handler) throw new Error('not a gateway made by startGateway');
  return handler;
}

/** Runs `next` on a value that may still be on its way, synchronously when it is already there. */
function after<T, R>(value: T | Promise<T>, next: (value: T) => R | Promise<R>): R | Promise<R> {
  return value instanceof Promise ? value.then(next) : next(value);
}

/** Warnings and errors to stderr: what an embedding program sees unless it passes a logger. */
const defaultLogger = createLogger('warn');

/**
 * Starts a gateway: agents' reverse tunnels on `agents`, ordinary gRPC
 * callers on `listen`, each call forwarded through a tunnel of the agent it
 * is for. The `grpctunnel gateway` command is this function behind flags.
 */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  options.signal?.throwIfAborted();
  const logger = options.logger ?? defaultLogger;
  const hooks = options.hooks ?? {};
  let access = options.access;
  const clientCertificates = options.clientCa !== undefined;
  if (clientCertificates && !options.tls) throw new Error('client certificates (--client-ca) need TLS (--tls-cert)');
  if (!access.callerTokens && !clientCertificates && !hooks.authenticateCaller) {
    const { host } = splitHostPort(options.listen);
    if (!isLoopback(host) && !options.allowUnauthenticatedCallers) {
      throw new Error(
        `refusing to serve callers on ${options.listen} without caller authentication: give --caller-tokens-file or --client-ca, or --allow-unauthenticated-callers`,
      );
    }
    if (!isLoopback(host))
      logger.warn(`callers on ${options.listen} are not authenticated: anyone who can reach it can call every agent`);
  }
  {
    const { host } = splitHostPort(options.agents);
    if (!isLoopback(host) && !access.agentTokens) {
      logger.warn(`agents on ${options.agents} are not authenticated: anyone who can reach it can serve any agent id`);
    } else if (!isLoopback(host) && access.agentTokens?.hasUnboundToken) {
      logger.warn('an agent token may register any agent id: bind tokens to ids in --tokens-file');
    }
  }
  // Refused tunnels, calls and connections are peers' doing: logged, but a
  // peer retrying in a loop must not flood the log.
  const refusals = new PeerFaultLog({
    linesPerInterval: 20,
    intervalMs: 10_000,
    prefix: '',
    write: (line) => logger.warn(line),
  });
  const refusedLog = (line: string) => refusals.log(line);
  const failedCalls = new PeerFaultLog({
    linesPerInterval: 20,
    intervalMs: 10_000,
    prefix: '',
    write: (line) => logger.info(line),
  });
  /**
   * Runs a hook. A refusal it throws goes to `onRefusal`; anything else it
   * throws is logged here (the peer only learns that `what` failed).
   */
  const guarded = <T, R>(
    name: string,
    what: string,
    run: () => T | Promise<T>,
    onRefusal: (refusal: GatewayRefusal) => R,
  ): T | R | Promise<T | R> => {
    const fail = (err: unknown): R => {
      // Only a GatewayRefusal is a decision to pass on: other errors, even
      // ones that carry a gRPC code (a failed call to an auth backend), say
      // internal things the peer must not read.
      if (err instanceof GatewayRefusal) return onRefusal(err);
      logger.error(
        `gateway: the ${name} hook failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
      );
      return onRefusal(new GatewayRefusal(Status.INTERNAL, `the gateway failed to ${what}`));
    };
    try {
      const result = run();
      return result instanceof Promise ? result.catch(fail) : result;
    } catch (err) {
      return fail(err);
    }
  };
  const limits = options.limits ?? DEFAULT_PEER_LIMITS;
  const arrivalWaitMs = options.agentArrivalWaitMs ?? AGENT_ARRIVAL.defaultWaitMs;
  checkDuration('agentArrivalWaitMs', arrivalWaitMs);
  if (options.drainDelayMs !== undefined) checkDuration('drainDelayMs', options.drainDelayMs);
  if (options.readyAfterMs !== undefined) checkDuration('readyAfterMs', options.readyAfterMs);
  const maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
  checkMessageSize('maxMessageSize', maxMessageSize);
  if (
    options.adminToken !== undefined &&
    (typeof options.adminToken !== 'string' || !/^\S+$/.test(options.adminToken))
  ) {
    throw new TypeError('adminToken must be a non-empty string without whitespace');
  }
  const recent: RecentError[] = [];
  const remember = (what: string) => {
    recent.unshift({ at: new Date(), what });
    recent.length = Math.min(recent.length, 20);
  };

  const tunnelsOf = new Map<string, { open: number; most: number }>();
  /** Aborted once the gateway refuses callers (close): hooks and waits let go. */
  const stopping = new AbortController();
  /** Calls waiting for an agent to reach this young replica, by agent id. */
  const arrivals = new Map<string, Set<() => void>>();
  const agentLabels = new BoundedLabels(MAX_AGENT_LABELS);
  /**
   * Closes `tunnel` if `tokens` no longer let its token register its id:
   * after a reload, and for a tunnel whose admission was still under way
   * when the tokens changed.
   */
  const cutIfRevoked = (tunnel: ReverseTunnel, tokens: AgentTokens | undefined): boolean => {
    if (!tokens || tokens.size === 0) return false;
    const token = bearer(tunnel.info.metadata.get('authorization')[0]?.toString());
    const requested = tunnel.info.metadata.get(AGENT_HEADER)[0]?.toString() ?? '';
    if (!tokens.check(token, requested)) return false;
    logger.warn(
      `agent ${String(tunnel.key)}: tunnel from ${tunnel.info.peer} closed: its token is no longer valid for it`,
    );
    // Calls in flight fail with a status that says why, and so does the
    // agent's tunnel RPC.
    tunnel.channel.close({ code: Status.UNAVAILABLE, details: 'the agent is no longer admitted' });
    return true;
  };

  const handler = new TunnelServiceHandler({
    ...(options.keepalive !== undefined && { keepalive: options.keepalive }),
    // Responses from agents arrive on these tunnels.
    maxReceiveMessageSize: maxMessageSize,
    affinityKey: (tunnel) => {
      const refuse = (code: Status, details: string, why: string): never => {
        metrics.connects.inc({ result: 'refused' });
        refusedLog(`refused a tunnel from ${tunnel.peer}: ${why}`);
        remember(`refused a tunnel from ${tunnel.peer}: ${why}`);
        throw new GatewayRefusal(code, details);
      };
      const requested = tunnel.metadata.get(AGENT_HEADER)[0]?.toString() || undefined;
      const tokens = access.agentTokens;
      if (tokens && tokens.size > 0) {
        const verdict = tokens.check(bearer(tunnel.metadata.get('authorization')[0]?.toString()), requested ?? '');
        if (verdict === 'id-not-allowed' && requested !== undefined) {
          refuse(
            Status.PERMISSION_DENIED,
            `this agent token may not register the agent id ${JSON.stringify(requested)}`,
            `its token may not register the agent id ${JSON.stringify(requested)}`,
          );
        } else if (verdict && verdict !== 'id-not-allowed') {
          refuse(
            Status.UNAUTHENTICATED,
            'invalid or missing agent token',
            verdict === 'no-token' ? 'no token' : 'unknown token',
          );
        }
      }
      const named = (id: string | undefined): string => {
        if (!id) {
          return refuse(
            Status.INVALID_ARGUMENT,
            `agents must send their id in the ${AGENT_HEADER} header`,
            `no ${AGENT_HEADER} header`,
          );
        }
        return id;
      };
      const admit = hooks.admitAgent;
      if (!admit) return named(requested);
      const admitted = guarded(
        'admitAgent',
        'accept the tunnel',
        () =>
          admit({
            requestedId: requested,
            metadata: tunnel.metadata,
            peer: tunnel.peer,
            authContext: tunnel.authContext,
          }),
        (refusal): never => {
          metrics.connects.inc({ result: 'refused' });
          refusedLog(`refused a tunnel from ${tunnel.peer}: ${refusal.details}`);
          remember(`refused a tunnel from ${tunnel.peer}: ${refusal.details}`);
          throw refusal;
        },
      );
      return after(admitted, (id) => named(id ?? requested));
    },
    // One info line when an agent id gets its first tunnel and one when its
    // last goes; each tunnel at debug level.
    onReverseTunnelOpen: (t: ReverseTunnel) => {
      // Tokens may have been reloaded while this tunnel was being admitted.
      if (cutIfRevoked(t, access.agentTokens)) return;
      metrics.connects.inc({ result: 'accepted' });
      const id = String(t.key);
      const counts = tunnelsOf.get(id) ?? { open: 0, most: 0 };
      tunnelsOf.set(id, counts);
      counts.open++;
      counts.most = Math.max(counts.most, counts.open);
      logger.debug(`agent ${id}: tunnel from ${t.info.peer} open (${plural(counts.open, 'tunnel')})`);
      if (counts.open === 1) logger.info(`agent ${id} connected from ${t.info.peer}`);
      const waiting = arrivals.get(id);
      if (waiting) for (const arrived of [...waiting]) arrived();
    },
    onReverseTunnelClose: (t: ReverseTunnel, error) => {
      const id = String(t.key);
      const counts = tunnelsOf.get(id);
      if (!counts) return;
      counts.open--;
      const why = error ? `: ${error.message}` : '';
      logger.debug(`agent ${id}: tunnel from ${t.info.peer} closed${why} (${plural(counts.open, 'tunnel')} left)`);
      if (counts.open > 0) return;
      tunnelsOf.delete(id);
      logger.info(`agent ${id} disconnected${why} (it had ${plural(counts.most, 'tunnel')}; none left)`);
    },
  });
  const metrics = createMetrics({
    agents: () => agentIds(handler).length,
    tunnels: () => handler.allReverseTunnels().length,
    activeStreams: () => handler.allReverseTunnels().reduce((n, t) => n + t.channel.activeCalls, 0),
    tunnelsPerAgent: () => {
      const counts = new Map<string, number>();
      for (const t of handler.allReverseTunnels()) {
        const label = agentLabels.label(String(t.key), true);
        counts.set(label, (counts.get(label) ?? 0) + 1);
      }
      return counts;
    },
    ...(options.replica && { replica: options.replica.id }),
  });

  const grpcServer = new Server({
    // Sessions that hold no stream (agents that never open a tunnel) are closed.
    'grpc.max_connection_idle_ms': limits.idleTimeoutMs,
    ...(options.replica && { interceptors: [advertiseReplica(options.replica)] }),
  });
  handler.register(grpcServer);
  const agentsCredentials = options.tls
    ? ServerCredentials.createSsl(null, [{ cert_chain: options.tls.cert, private_key: options.tls.key }], false)
    : ServerCredentials.createInsecure();
  const onRefusedConnection = (port: string) => (peer: string, why: string) => {
    metrics.connectionRefusals.inc({ port, reason: why });
    refusedLog(`closed a connection from ${peer} on the ${port} port: ${why}`);
  };
  const agentsPort = await listenGuarded(
    grpcServer,
    options.agents,
    agentsCredentials,
    new PeerConnectionGuard(limits, onRefusedConnection('agents')),
  );
  const agentsAddress = agentsPort.address;

  // Callers' requests travel on through the tunnels: give them the same
  // windows the handler gives the agents' connections (HTTP/2's 64 KiB
  // default would hold uploads to 64 KiB per round trip).
  const windows = { settings: { initialWindowSize: DEFAULT_HTTP2_WINDOW_SIZE } };
  const front = options.tls
    ? http2.createSecureServer({
        cert: options.tls.cert,
        key: options.tls.key,
        handshakeTimeout: limits.idleTimeoutMs,
        ...windows,
        // Client certificates are checked per call, so that a caller without
        // one gets a gRPC UNAUTHENTICATED instead of a failed handshake.
        ...(options.clientCa && { ca: options.clientCa, requestCert: true, rejectUnauthorized: false }),
      })
    : http2.createServer(windows);
  const callerGuard = new PeerConnectionGuard(limits, onRefusedConnection('callers'));
  closeIdleSessions(front, limits.idleTimeoutMs);
  const methodLabels = new BoundedLabels(MAX_METHOD_LABELS);
  /** Where a call from `caller` for `agent` (none named: the only one connected) goes. */
  const forwardTo = (
    path: string,
    metadata: Metadata,
    caller: string,
    agent: string | undefined,
    signal: AbortSignal,
  ): Route | Promise<Route> => {
    if (agent === undefined) {
      const ids = agentIds(handler);
      if (ids.length !== 1) {
        return {
          refuse: refusal(
            Status.UNAVAILABLE,
            ids.length === 0
              ? 'no agent connected'
              : `${ids.length} agents connected; choose one with the ${AGENT_HEADER} request header`,
          ),
        };
      }
      agent = ids[0] as string;
    }
    if (access.policy && !access.policy.allows(caller, agent, path)) {
      metrics.callerRefusals.inc({ reason: 'permission_denied' });
      refusedLog(`denied ${caller} a call to ${path} on agent ${agent}`);
      return { refuse: refusal(Status.PERMISSION_DENIED, `caller ${caller} may not call ${path} on agent ${agent}`) };
    }
    const pool = handler.keyAsChannel(agent);
    const route: Route = { channel: pool, metadata, label: agent };
    if (pool.ready()) return route;
    const absent: Route = { refuse: refusal(Status.UNAVAILABLE, `no agent ${agent} connected`) };
    const shuttingDown: Route = { refuse: refusal(Status.UNAVAILABLE, 'the gateway is shutting down') };
    if (arrivalWaitMs <= 0 || Date.now() - startedAt >= AGENT_ARRIVAL.windowMs) return absent;
    const id = agent;
    // The caller left, or the gateway closed, while the call was being routed.
    if (signal.aborted) return stopping.signal.aborted ? shuttingDown : absent;
    return new Promise<Route>((resolve) => {
      const waiters = arrivals.get(id) ?? new Set();
      arrivals.set(id, waiters);
      const done = (arrived: boolean) => {
        clearTimeout(timer);
        signal.removeEventListener('abort', gone);
        waiters.delete(onArrival);
        if (waiters.size === 0) arrivals.delete(id);
        resolve(arrived ? route : stopping.signal.aborted ? shuttingDown : absent);
      };
      const onArrival = () => done(true);
      const gone = () => done(false);
      const timer = setTimeout(gone, arrivalWaitMs);
      waiters.add(onArrival);
      signal.addEventListener('abort', gone, { once: true });
    });
  };
  serveAnyMethod(front, {
    maxMessageSize,
    route(path, metadata, connection) {
      if (path === OPEN_REVERSE_TUNNEL) {
        // An agent pointed at this port: say so, in words its log can show.
        return {
          refuse: refusal(
            Status.UNIMPLEMENTED,
            "this is a grpctunnel gateway's caller port, not a tunnel endpoint: agents connect to its agents port",
          ),
        };
      }
      const socket = connection.socket as TLSSocket | undefined;
      const tls = socket && typeof socket.getPeerCertificate === 'function' ? socket : undefined;
      const from = socket ? `${socket.remoteAddress}:${socket.remotePort}` : 'unknown';
      const refused = (r: GatewayRefusal): Route => ({ refuse: refusal(r.code, r.details) });
      const unauthenticated = (why: string): Route => {
        metrics.callerRefusals.inc({ reason: 'unauthenticated' });
        refusedLog(`refused a call to ${path} from ${from}: ${why}`);
        return { refuse: refusal(Status.UNAUTHENTICATED, 'missing or invalid caller credentials') };
      };
      // The caller leaving, or the gateway closing, ends what is done for the call.
      let signal: AbortSignal | undefined;
      const callSignal = () => {
        signal ??= AbortSignal.any([connection.signal, stopping.signal]);
        return signal;
      };
      let incoming: IncomingCall | undefined;
      const asIncoming = (): IncomingCall => {
        if (incoming) return incoming;
        const certificate = tls?.getPeerCertificate();
        incoming = {
          path,
          metadata,
          peer: from,
          certificate: certificate && Object.keys(certificate).length > 0 ? certificate : undefined,
          authorized: tls?.authorized ?? false,
          get signal() {
            return callSignal();
          },
        };
        return incoming;
      };
      const authenticate = hooks.authenticateCaller;
      let caller: string | undefined | Route | Promise<string | undefined | Route>;
      if (authenticate) {
        caller = guarded(
          'authenticateCaller',
          'authenticate the call',
          () =>
            after(authenticate(asIncoming()), (who) => {
              // Hooks are user code: a result of the wrong shape is its failure, not a route.
              if (who === undefined || who === null) return undefined;
              if (typeof who !== 'object' || typeof who.name !== 'string') {
                throw new TypeError(
                  `authenticateCaller resolved to ${describe(who)}, not { name: string } or undefined`,
                );
              }
              return who.name;
            }),
          refused,
        );
      } else {
        const verdict = identifyCaller(metadata.get('authorization')[0]?.toString(), tls ? { tls } : {}, {
          ...(access.callerTokens && { tokens: access.callerTokens }),
          clientCertificates,
        });
        if ('refused' in verdict) return unauthenticated(verdict.refused);
        caller = verdict.caller;
      }
      return after(caller, (name) => {
        if (name === undefined) return unauthenticated('the authenticateCaller hook named no caller');
        if (typeof name !== 'string') return name;
        const requested = metadata.get(AGENT_HEADER)[0]?.toString();
        const routeCall = hooks.routeCall;
        const chosen = routeCall
          ? guarded(
              'routeCall',
              'route the call',
              () =>
                after(routeCall(asIncoming(), name), (agent) => {
                  if (agent === undefined || agent === null) return undefined;
                  if (typeof agent !== 'string') {
                    throw new TypeError(`routeCall resolved to ${describe(agent)}, not an agent id or undefined`);
                  }
                  return agent;
                }),
              refused,
            )
          : undefined;
        return after(chosen, (agent) => {
          if (agent !== undefined && typeof agent !== 'string') return agent;
          // With caller tokens, an authorization header is a gateway credential
          // (it was just checked): never forwarded, whatever forwardCallerAuth says.
          if (!options.forwardCallerAuth || access.callerTokens) metadata.remove('authorization');
          metadata.remove(AGENT_HEADER);
          return forwardTo(path, metadata, name, agent ?? requested, callSignal());
        });
      });
    },
    onFinish(path, result, ms, bytesIn, bytesOut, agent, answered) {
      const code = codeName(result.code);
      // Callers choose paths freely: a path is named only once an agent's
      // service answered it with a code only a service gives.
      const served = agent !== undefined && answered === true && !NOT_A_SERVICE_ANSWER.has(result.code);
      metrics.calls.inc({
        agent: agent === undefined ? '' : agentLabels.label(agent, true),
        method: methodLabels.label(path, served),
        code,
      });
      metrics.latency.observe({ code }, ms / 1000);
      metrics.bytes.inc({ direction: 'in' }, bytesIn);
      metrics.bytes.inc({ direction: 'out' }, bytesOut);
      if (result.code !== Status.OK) {
        // A service's own answers are its business (info); failures the
        // gateway or a tunnel gave are worth a warning. Either way a caller
        // looping on them must not flood the log.
        const line = `call ${path}${agent ? ` to ${agent}` : ''} failed: ${code} ${result.details}`;
        if (served) failedCalls.log(line);
        else refusedLog(line);
        remember(`${path}${agent ? ` to ${agent}` : ''}: ${code} ${result.details}`);
      } else logger.debug(`call ${path} OK in ${ms} ms`);
    },
  });
  const sessions = new Set<http2.Http2Session>();
  front.on('session', (session) => {
    // A connection whose handshake ended after close began gets GOAWAY at once.
    if (stopping.signal.aborted) {
      session.close();
      return;
    }
    session.setLocalWindowSize(DEFAULT_HTTP2_WINDOW_SIZE);
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
  });
  const hint = `${NOT_GRPC_TEXT}This is the caller port of a grpctunnel gateway.\n`;
  let sniffing: ReturnType<typeof sniffHttp1> | undefined;
  if (options.tls) answerHttp1OverTls(front as http2.Http2SecureServer, hint);
  else {
    sniffing = sniffHttp1(front as http2.Http2Server, hint, {
      timeoutMs: limits.idleTimeoutMs,
      onSilent: (socket) => onRefusedConnection('callers')(socket.remoteAddress ?? 'unknown', 'idle'),
    });
  }
  // Every connection passes the per-peer limit first; under TLS, a silent
  // connection is closed by the TLS handshake timeout (set below).
  const callerSockets = new Set<import('node:net').Socket>();
  (sniffing?.listener ?? front).on('connection', (socket: import('node:net').Socket) => {
    if (!callerGuard.accept(socket)) return;
    callerSockets.add(socket);
    socket.once('close', () => callerSockets.delete(socket));
  });
  // A start that fails part way releases what it had bound, so that the
  // program may try again on the same ports.
  const unwind = async (err: unknown): Promise<never> => {
    grpcServer.forceShutdown();
    await agentsPort.close();
    const listener = sniffing?.listener ?? front;
    if (listener.listening) await new Promise((resolve) => listener.close(resolve));
    throw err;
  };
  const listenAddress = await listenHttp2(sniffing?.listener ?? front, options.listen, (err) =>
    logger.error(`gateway: the caller port's listener failed: ${err.message}`),
  ).catch(unwind);

  const startedAt = Date.now();
  const readyAfterMs = options.readyAfterMs ?? 10_000;
  const drainDelayMs = options.drainDelayMs ?? 0;
  let closing = false;
  let admin: AdminServer | undefined;
  if (options.admin) {
    admin = await startAdmin(options.admin, {
      token: options.adminToken,
      metrics: () => metrics.registry.metrics(),
      contentType: metrics.registry.contentType,
      status: () => ({
        agents: handler.allReverseTunnels(),
        recent,
        ...(options.replica && { replica: `replica ${options.replica.id} of ${options.replica.count}` }),
      }),
      ready: () => !closing && (handler.openReverseTunnels > 0 || Date.now() - startedAt >= readyAfterMs),
    }).catch(unwind);
  }
  logger.info(
    `gateway: callers on ${listenAddress}, agents on ${agentsAddress}${admin ? `, admin on http://${admin.address}/` : ''}`,
  );

  /** Cuts the tunnels whose agent token no longer allows their id; returns how many. */
  const revoke = (tokens: AgentTokens | undefined): number => {
    let cut = 0;
    for (const tunnel of handler.allReverseTunnels()) if (cutIfRevoked(tunnel, tokens)) cut++;
    return cut;
  };

  let closed: Promise<void> | undefined;
  const gateway: Gateway = {
    listenAddress,
    agentsAddress,
    adminAddress: admin?.address,
    agents() {
      const counts = new Map<string, number>();
      for (const t of handler.allReverseTunnels()) counts.set(String(t.key), (counts.get(String(t.key)) ?? 0) + 1);
      return counts;
    },
    channelFor: (agentId) => handler.keyAsChannel(agentId),
    metrics: metrics.registry,
    reload(next) {
      access = next;
      const cut = revoke(next.agentTokens);
      logger.info(
        `gateway: credentials and policy reloaded${cut ? `; closed ${plural(cut, 'tunnel')} of revoked agents` : ''}`,
      );
      return cut;
    },
    close(options = {}) {
      const { graceMs = 5000, signal } = typeof options === 'number' ? { graceMs: options } : options;
      checkDuration('graceMs', graceMs);
      hurry(signal?.aborted ? 0 : graceMs);
      closed ??= shutDown();
      if (signal && !signal.aborted) {
        const now = () => hurry(0);
        signal.addEventListener('abort', now, { once: true });
        const forget = () => signal.removeEventListener('abort', now);
        closed.then(forget, forget);
      }
      return closed;
    },
  };
  // Shutting down. `stopping` is aborted once callers are refused: it
  // releases calls waiting for an agent and tells hooks (IncomingCall.signal).
  // The grace asked for may shrink while the close runs (close(0), a signal).
  let graceAsked = Number.POSITIVE_INFINITY;
  let graceStarted = false;
  let forceAt = Number.POSITIVE_INFINITY;
  let forceTimer: NodeJS.Timeout | undefined;
  let skipDrainDelay = () => {};
  const hurry = (graceMs: number) => {
    graceAsked = Math.min(graceAsked, graceMs);
    if (graceMs <= 0) skipDrainDelay();
    if (graceStarted) forceBy(Date.now() + graceMs);
  };
  const forceBy = (at: number) => {
    if (at >= forceAt) return;
    forceAt = at;
    clearTimeout(forceTimer);
    forceTimer = setTimeout(force, Math.max(0, at - Date.now()));
  };
  /** Past the grace: cuts every running call and connection. */
  const force = () => {
    stopping.abort();
    handler.forceShutdown();
    grpcServer.forceShutdown();
    sniffing?.dropPending();
    for (const session of sessions) session.destroy();
    for (const socket of callerSockets) socket.destroy();
  };
  const shutDown = async () => {
    // Not ready any more: the platform stops sending callers here, while
    // this replica goes on serving for the drain delay.
    closing = true;
    options.signal?.removeEventListener('abort', onAbort);
    if (drainDelayMs > 0 && graceAsked > 0) {
      logger.info(`gateway: not ready; serving ${drainDelayMs} ms more while balancers take this replica out`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, drainDelayMs);
        skipDrainDelay = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    graceStarted = true;
    forceBy(Date.now() + graceAsked);
    stopping.abort();
    // Callers first: GOAWAY on every caller connection (a call racing it is
    // refused and retried by the caller's library), and their running calls
    // finish over the agents' tunnels, which stay open until then. Draining
    // the tunnels first would fail the calls still arriving with "no agent".
    // Connections with no HTTP/2 session yet (a TLS handshake, first bytes
    // not yet sent) have nothing running: they are closed now.
    await new Promise<void>((resolve) => {
      (sniffing?.listener ?? front).close(() => resolve());
      sniffing?.dropPending();
      // (A session's socket is a proxy of the connection's: match by address.
      // A session destroyed a moment ago has no socket any more, and its
      // 'close' has not removed it from the set yet: it has nothing to drain.)
      const withSession = new Set(
        [...sessions].flatMap((session) => (session.socket ? [endpoint(session.socket)] : [])),
      );
      for (const socket of callerSockets) if (!withSession.has(endpoint(socket))) socket.destroy();
      // Idle caller connections would keep the server open; close them.
      setImmediate(() => {
        for (const session of sessions) session.close();
      });
    });
    // Then the agents: they see their tunnels here drain (they hold tunnels
    // to the other replicas already) and the agents port closes.
    await Promise.all([
      handler.tryShutdown(),
      new Promise<void>((resolve) => grpcServer.tryShutdown(() => resolve())),
      agentsPort.close(),
      admin?.close(),
    ]);
    clearTimeout(forceTimer);
  };
  handlers.set(gateway, handler);
  const signal = options.signal;
  const onAbort = () => void gateway.close();
  if (signal) {
    if (signal.aborted) {
      await gateway.close(0);
      signal.throwIfAborted();
    }
    signal.addEventListener('abort', onAbort, { once: true });
  }
  return gateway;
}
