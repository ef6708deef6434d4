// The gateway: accepts agents' reverse tunnels on one port, and on another
// accepts ordinary gRPC calls for any method and forwards each through a
// tunnel of the chosen agent.
import http2 from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { Metadata, Server, ServerCredentials, status as Status, type StatusObject } from '@grpc/grpc-js';
import type { KeepaliveOptions } from '../grpc/keepalive.js';
import { PeerFaultLog } from '../grpc/peer-faults.js';
import { DEFAULT_HTTP2_WINDOW_SIZE } from '../grpc/server/http2-window.js';
import { TunnelServiceHandler } from '../handler/tunnel-service-handler.js';
import type { ReverseTunnel } from '../pool/reverse-tunnel.js';
import { NOT_GRPC_TEXT, serveAnyMethod } from '../proxy/any-method-server.js';
import { answerHttp1OverTls, sniffHttp1 } from '../proxy/http1-hint.js';
import type { AccessPolicy, AgentTokens, CallerTokens } from './access.js';
import { type AdminServer, startAdmin } from './admin.js';
import { identifyCaller } from './caller-auth.js';
import type { Logger } from './logger.js';
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

/** Options of {@link startGateway}. */
export interface GatewayOptions {
  /** host:port for ordinary gRPC callers. */
  listen: string;
  /** host:port for agents' reverse tunnels. */
  agents: string;
  /** host:port for /metrics, /healthz and the status page; none without it. */
  admin?: string;
  /** Credentials and policy. */
  access: GatewayAccess;
  /** Serve both gRPC ports over TLS with this certificate. */
  tls?: { cert: Buffer; key: Buffer };
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
  logger: Logger;
  /** Liveness pings toward agents (see {@link TunnelServiceHandlerOptions.keepalive}). */
  keepalive?: KeepaliveOptions | false;
}

/** A running gateway. */
export interface Gateway {
  readonly listenAddress: string;
  readonly agentsAddress: string;
  readonly adminAddress: string | undefined;
  readonly handler: TunnelServiceHandler;
  /** Replaces the credentials and policy (SIGHUP); tunnels and calls in flight are untouched. */
  reload(access: GatewayAccess): void;
  /** Stops accepting, lets running calls finish for up to `graceMs`, then closes everything. */
  close(graceMs?: number): Promise<void>;
}

/** A recent failure, for the status page. */
export interface RecentError {
  at: Date;
  what: string;
}

const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;

function refusal(code: Status, details: string): StatusObject {
  return { code, details, metadata: new Metadata() };
}

/** The path of the RPC agents open their tunnels with. */
const OPEN_REVERSE_TUNNEL = '/grpctunnel.v1.TunnelService/OpenReverseTunnel';

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

export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const { logger } = options;
  let access = options.access;
  const clientCertificates = options.clientCa !== undefined;
  if (clientCertificates && !options.tls) throw new Error('client certificates (--client-ca) need TLS (--tls-cert)');
  if (!access.callerTokens && !clientCertificates) {
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
  const limits = options.limits ?? DEFAULT_PEER_LIMITS;
  const recent: RecentError[] = [];
  const remember = (what: string) => {
    recent.unshift({ at: new Date(), what });
    recent.length = Math.min(recent.length, 20);
  };

  const tunnelsOf = new Map<string, { open: number; most: number }>();
  const handler = new TunnelServiceHandler({
    ...(options.keepalive !== undefined && { keepalive: options.keepalive }),
    affinityKey: (tunnel) => {
      const refuse = (code: Status, details: string, why: string) => {
        metrics.connects.inc({ result: 'refused' });
        refusedLog(`refused a tunnel from ${tunnel.peer}: ${why}`);
        remember(`refused a tunnel from ${tunnel.peer}: ${why}`);
        throw { code, details };
      };
      const id = tunnel.metadata.get(AGENT_HEADER)[0]?.toString();
      if (!id) {
        refuse(
          Status.INVALID_ARGUMENT,
          `agents must send their id in the ${AGENT_HEADER} header`,
          `no ${AGENT_HEADER} header`,
        );
      }
      const agent = id as string;
      const tokens = access.agentTokens;
      if (tokens && tokens.size > 0) {
        const auth = tunnel.metadata.get('authorization')[0]?.toString() ?? '';
        const token = auth.startsWith('Bearer ') ? auth.slice(7) : undefined;
        const verdict = tokens.check(token, agent);
        if (verdict === 'id-not-allowed') {
          refuse(
            Status.PERMISSION_DENIED,
            `this agent token may not register the agent id ${JSON.stringify(agent)}`,
            `its token may not register the agent id ${JSON.stringify(agent)}`,
          );
        } else if (verdict) {
          refuse(
            Status.UNAUTHENTICATED,
            'invalid or missing agent token',
            verdict === 'no-token' ? 'no token' : 'unknown token',
          );
        }
      }
      return agent;
    },
    // One info line when an agent id gets its first tunnel and one when its
    // last goes; each tunnel at debug level.
    onReverseTunnelOpen: (t: ReverseTunnel) => {
      metrics.connects.inc({ result: 'accepted' });
      const id = String(t.key);
      const counts = tunnelsOf.get(id) ?? { open: 0, most: 0 };
      tunnelsOf.set(id, counts);
      counts.open++;
      counts.most = Math.max(counts.most, counts.open);
      logger.debug(`agent ${id}: tunnel from ${t.info.peer} open (${plural(counts.open, 'tunnel')})`);
      if (counts.open === 1) logger.info(`agent ${id} connected from ${t.info.peer}`);
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
  const agentLabels = new BoundedLabels(MAX_AGENT_LABELS);
  serveAnyMethod(front, {
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
      const verdict = identifyCaller(
        metadata.get('authorization')[0]?.toString(),
        socket && typeof socket.getPeerCertificate === 'function' ? { tls: socket } : {},
        { ...(access.callerTokens && { tokens: access.callerTokens }), clientCertificates },
      );
      if ('refused' in verdict) {
        metrics.callerRefusals.inc({ reason: 'unauthenticated' });
        refusedLog(`refused a call to ${path} from ${socket?.remoteAddress ?? 'unknown'}: ${verdict.refused}`);
        return { refuse: refusal(Status.UNAUTHENTICATED, 'missing or invalid caller credentials') };
      }
      // With caller tokens, an authorization header is a gateway credential
      // (it was just checked): never forwarded, whatever --forward-caller-auth says.
      if (!options.forwardCallerAuth || access.callerTokens) metadata.remove('authorization');
      const requested = metadata.get(AGENT_HEADER)[0]?.toString();
      metadata.remove(AGENT_HEADER);
      let agent = requested;
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
      if (access.policy && !access.policy.allows(verdict.caller, agent, path)) {
        metrics.callerRefusals.inc({ reason: 'permission_denied' });
        refusedLog(`denied ${verdict.caller} a call to ${path} on agent ${agent}`);
        return {
          refuse: refusal(Status.PERMISSION_DENIED, `caller ${verdict.caller} may not call ${path} on agent ${agent}`),
        };
      }
      const pool = handler.keyAsChannel(agent);
      if (!pool.ready()) return { refuse: refusal(Status.UNAVAILABLE, `no agent ${agent} connected`) };
      return { channel: pool, metadata, label: agent };
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
        logger.warn(`call ${path}${agent ? ` to ${agent}` : ''} failed: ${code} ${result.details}`);
        remember(`${path}${agent ? ` to ${agent}` : ''}: ${code} ${result.details}`);
      } else logger.debug(`call ${path} OK in ${ms} ms`);
    },
  });
  const sessions = new Set<http2.Http2Session>();
  front.on('session', (session) => {
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
  (sniffing?.listener ?? front).on('connection', (socket: import('node:net').Socket) => callerGuard.accept(socket));
  const listenAddress = await listenHttp2(sniffing?.listener ?? front, options.listen);

  const startedAt = Date.now();
  const readyAfterMs = options.readyAfterMs ?? 10_000;
  let closing = false;
  let admin: AdminServer | undefined;
  if (options.admin) {
    admin = await startAdmin(options.admin, {
      metrics: () => metrics.registry.metrics(),
      contentType: metrics.registry.contentType,
      status: () => ({
        agents: handler.allReverseTunnels(),
        recent,
        ...(options.replica && { replica: `replica ${options.replica.id} of ${options.replica.count}` }),
      }),
      ready: () => !closing && (handler.openReverseTunnels > 0 || Date.now() - startedAt >= readyAfterMs),
    });
  }
  logger.info(
    `gateway: callers on ${listenAddress}, agents on ${agentsAddress}${admin ? `, admin on http://${admin.address}/` : ''}`,
  );

  return {
    listenAddress,
    agentsAddress,
    adminAddress: admin?.address,
    handler,
    reload(next) {
      access = next;
      logger.info('gateway: credentials and policy reloaded');
    },
    async close(graceMs = 5000) {
      // Not ready any more: the platform stops sending callers here. Agents
      // see GOAWAY and dial the other replicas while running calls finish.
      closing = true;
      handler.initiateShutdown();
      await Promise.all([
        new Promise<void>((resolve) => {
          const force = setTimeout(() => grpcServer.forceShutdown(), graceMs);
          grpcServer.tryShutdown(() => {
            clearTimeout(force);
            resolve();
          });
          void agentsPort.close();
        }),
        new Promise<void>((resolve) => {
          (sniffing?.listener ?? front).close(() => resolve());
          sniffing?.dropPending();
          // Idle caller connections would keep the server open; close them.
          setImmediate(() => {
            for (const s of sessions) s.close();
          });
        }),
        admin?.close(),
      ]);
    },
  };
}
