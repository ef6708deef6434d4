// The gateway: accepts agents' reverse tunnels on one port, and on another
// accepts ordinary gRPC calls for any method and forwards each through a
// tunnel of the chosen agent.
import http2 from 'node:http2';
import { Metadata, Server, ServerCredentials, status as Status, type StatusObject } from '@grpc/grpc-js';
import type { KeepaliveOptions } from '../grpc/keepalive.js';
import { DEFAULT_HTTP2_WINDOW_SIZE } from '../grpc/server/http2-window.js';
import { TunnelServiceHandler } from '../handler/tunnel-service-handler.js';
import type { ReverseTunnel } from '../pool/reverse-tunnel.js';
import { serveAnyMethod } from '../proxy/any-method-server.js';
import { type AdminServer, startAdmin } from './admin.js';
import type { Logger } from './logger.js';
import { codeName, createMetrics } from './metrics.js';
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
  /** Liveness pings toward agents (see {@link TunnelServiceHandlerOptions.keepalive}). */
  keepalive?: KeepaliveOptions | false;
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

function refusal(code: Status, details: string): StatusObject {
  return { code, details, metadata: new Metadata() };
}

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

  const handler = new TunnelServiceHandler({
    ...(options.keepalive !== undefined && { keepalive: options.keepalive }),
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
    onReverseTunnelOpen: (t: ReverseTunnel) => {
      metrics.connects.inc({ result: 'accepted' });
      const n = handler.keyAsChannel(t.key).size;
      logger.info(`agent ${String(t.key)} connected from ${t.info.peer} (${n} tunnel${n === 1 ? '' : 's'})`);
    },
    onReverseTunnelClose: (t: ReverseTunnel, error) => {
      const n = handler.keyAsChannel(t.key).size;
      logger.info(
        `agent ${String(t.key)} disconnected from ${t.info.peer}${error ? `: ${error.message}` : ''} (${n} tunnel${n === 1 ? '' : 's'} left)`,
      );
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
  serveAnyMethod(front, {
    route(_path, metadata) {
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
    onFinish(path, result, ms, bytesIn, bytesOut, agent) {
      const code = codeName(result.code);
      metrics.calls.inc({ agent: agent ?? '', method: path, code });
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
  const listenAddress = await listenHttp2(front, options.listen);

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
          front.close(() => resolve());
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
