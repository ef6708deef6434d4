// The gateway: accepts agents' reverse tunnels on one port, and on another
// accepts ordinary gRPC calls for any method and forwards each through a
// tunnel of the chosen agent.
import http2 from 'node:http2';
import { Metadata, Server, ServerCredentials, status as Status, type StatusObject } from '@grpc/grpc-js';
import { DEFAULT_HTTP2_WINDOW_SIZE } from '../grpc/server/http2-window.js';
import { TunnelServiceHandler } from '../handler/tunnel-service-handler.js';
import type { ReverseTunnel } from '../pool/reverse-tunnel.js';
import { NOT_GRPC_TEXT, serveAnyMethod } from '../proxy/any-method-server.js';
import { answerHttp1OverTls, sniffHttp1 } from '../proxy/http1-hint.js';
import { type AdminServer, startAdmin } from './admin.js';
import type { Logger } from './logger.js';
import { BoundedLabels, codeName, createMetrics, OTHER_LABEL } from './metrics.js';
import { bindGrpc, listenHttp2 } from './net.js';

/** The request header that names the agent a call is for (and, on a tunnel, the agent's id). */
export const AGENT_HEADER = 'grpctunnel-agent';

/** Options of {@link startGateway}. */
export interface GatewayOptions {
  /** host:port for ordinary gRPC callers. */
  listen: string;
  /** host:port for agents' reverse tunnels. */
  agents: string;
  /** host:port for /metrics, /healthz and the status page; none without it. */
  admin?: string;
  /** Tokens agents may present (`authorization: Bearer T`); any agent is accepted when empty. */
  tokens: ReadonlySet<string>;
  /** Serve both gRPC ports over TLS with this certificate. */
  tls?: { cert: Buffer; key: Buffer };
  logger: Logger;
}

/** A running gateway. */
export interface Gateway {
  readonly listenAddress: string;
  readonly agentsAddress: string;
  readonly adminAddress: string | undefined;
  readonly handler: TunnelServiceHandler;
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

/** The agent ids with a ready tunnel (per key, not per tunnel: this runs on every call without a route header). */
function agentIds(handler: TunnelServiceHandler): string[] {
  return handler.reverseTunnelKeys().map(String);
}

export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const { logger } = options;
  const recent: RecentError[] = [];
  const remember = (what: string) => {
    recent.unshift({ at: new Date(), what });
    recent.length = Math.min(recent.length, 20);
  };

  const tunnelsOf = new Map<string, { open: number; most: number }>();
  const handler = new TunnelServiceHandler({
    affinityKey: (tunnel) => {
      const auth = tunnel.metadata.get('authorization')[0]?.toString() ?? '';
      const token = auth.startsWith('Bearer ') ? auth.slice(7) : '';
      if (options.tokens.size > 0 && !options.tokens.has(token)) {
        metrics.connects.inc({ result: 'refused' });
        logger.warn(`refused a tunnel from ${tunnel.peer}: ${token ? 'unknown token' : 'no token'}`);
        remember(`refused a tunnel from ${tunnel.peer}: ${token ? 'unknown token' : 'no token'}`);
        throw { code: Status.UNAUTHENTICATED, details: 'invalid or missing agent token' };
      }
      const id = tunnel.metadata.get(AGENT_HEADER)[0]?.toString();
      if (!id) {
        metrics.connects.inc({ result: 'refused' });
        logger.warn(`refused a tunnel from ${tunnel.peer}: no ${AGENT_HEADER} header`);
        throw { code: Status.INVALID_ARGUMENT, details: `agents must send their id in the ${AGENT_HEADER} header` };
      }
      return id;
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
  });

  const grpcServer = new Server();
  handler.register(grpcServer);
  const agentsCredentials = options.tls
    ? ServerCredentials.createSsl(null, [{ cert_chain: options.tls.cert, private_key: options.tls.key }], false)
    : ServerCredentials.createInsecure();
  const agentsAddress = await bindGrpc(grpcServer, options.agents, agentsCredentials);

  // Callers' requests travel on through the tunnels: give them the same
  // windows the handler gives the agents' connections (HTTP/2's 64 KiB
  // default would hold uploads to 64 KiB per round trip).
  const windows = { settings: { initialWindowSize: DEFAULT_HTTP2_WINDOW_SIZE } };
  const front = options.tls
    ? http2.createSecureServer({ cert: options.tls.cert, key: options.tls.key, ...windows })
    : http2.createServer(windows);
  const methodLabels = new BoundedLabels(MAX_METHOD_LABELS);
  const agentLabels = new BoundedLabels(MAX_AGENT_LABELS);
  serveAnyMethod(front, {
    route(path, metadata) {
      if (path === OPEN_REVERSE_TUNNEL) {
        // An agent pointed at this port: say so, in words its log can show.
        return {
          refuse: refusal(
            Status.UNIMPLEMENTED,
            "this is a grpctunnel gateway's caller port, not a tunnel endpoint: agents connect to its agents port",
          ),
        };
      }
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
  else sniffing = sniffHttp1(front as http2.Http2Server, hint);
  const listenAddress = await listenHttp2(sniffing?.listener ?? front, options.listen);

  let admin: AdminServer | undefined;
  if (options.admin) {
    admin = await startAdmin(options.admin, {
      metrics: () => metrics.registry.metrics(),
      contentType: metrics.registry.contentType,
      status: () => ({ agents: handler.allReverseTunnels(), recent }),
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
    async close(graceMs = 5000) {
      handler.initiateShutdown();
      await Promise.all([
        new Promise<void>((resolve) => {
          const force = setTimeout(() => grpcServer.forceShutdown(), graceMs);
          grpcServer.tryShutdown(() => {
            clearTimeout(force);
            resolve();
          });
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
