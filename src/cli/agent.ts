// The agent: keeps reverse tunnels open to a gateway and forwards every call
// that arrives through them to a target gRPC server, as raw bytes.
import { type ChannelCredentials, Client, credentials, Metadata, status as Status } from '@grpc/grpc-js';
import { TUNNEL_CHANNEL_OPTIONS } from '../grpc/client/channel-options.js';
import type { KeepaliveOptions } from '../grpc/keepalive.js';
import { createProxyHandler } from '../proxy/proxy-handler.js';
import type { RetryEvent } from '../reverse/reverse-tunnel-server.js';
import { ReverseTunnelServer, type ServeResult } from '../reverse/reverse-tunnel-server.js';
import { AGENT_HEADER } from './gateway.js';
import type { Logger } from './logger.js';
import { codeName } from './metrics.js';
import { splitHostPort } from './net.js';

/** Options of {@link startAgent}. */
export interface AgentOptions {
  /** host:port of the gateway's agents port. */
  gateway: string;
  /** host:port of the gRPC server to expose. */
  target: string;
  /** This agent's id: callers route to it with the grpctunnel-agent header. */
  id: string;
  token?: string;
  /** Reverse tunnels to keep open. */
  tunnels: number;
  /** How to reach the gateway: plaintext, TLS with the system's roots, or TLS with this CA. */
  security: { insecure: true } | { ca?: Buffer };
  logger: Logger;
  /** Reconnection delays (ms); defaults suit a real deployment (1 s to 30 s). */
  backoff?: { initialDelayMs?: number; maxDelayMs?: number };
  /** Liveness pings toward the gateway (see {@link ReverseTunnelServerOptions.keepalive}). */
  keepalive?: KeepaliveOptions | false;
}

/** A running agent. */
export interface Agent {
  /** Settles when the agent stops: undefined, or the error that made it give up (a refused token). */
  readonly done: Promise<Error | undefined>;
  /** Stops: running calls finish for up to `graceMs`, then everything closes. */
  stop(graceMs?: number): Promise<void>;
}

export function startAgent(options: AgentOptions): Agent {
  const { logger } = options;
  splitHostPort(options.gateway);
  splitHostPort(options.target);
  const gatewayCredentials: ChannelCredentials =
    'insecure' in options.security ? credentials.createInsecure() : credentials.createSsl(options.security.ca ?? null);
  // grpc-js reconnects on its own schedule too; keep it no slower than ours.
  const gateway = new Client(options.gateway, gatewayCredentials, {
    ...TUNNEL_CHANNEL_OPTIONS,
    'grpc.initial_reconnect_backoff_ms': options.backoff?.initialDelayMs ?? 1000,
    'grpc.max_reconnect_backoff_ms': options.backoff?.maxDelayMs ?? 30_000,
  });
  // The target's responses travel on to the tunnel: let them stream as fast.
  const target = new Client(options.target, credentials.createInsecure(), TUNNEL_CHANNEL_OPTIONS);
  const server = new ReverseTunnelServer(gateway, {
    ...(options.keepalive !== undefined && { keepalive: options.keepalive }),
  });
  server.setUnknownMethodHandler(
    createProxyHandler(target, {
      onFinish: (path, status) => {
        if (status.code !== Status.OK) logger.warn(`call ${path} failed: ${codeName(status.code)} ${status.details}`);
      },
    }),
  );
  const metadata = new Metadata();
  metadata.set(AGENT_HEADER, options.id);
  if (options.token) metadata.set('authorization', `Bearer ${options.token}`);

  let fatal: Error | undefined;
  let connected = 0;
  server.on('connected', () => {
    connected++;
    logger.info(`agent ${options.id}: tunnel to ${options.gateway} open (${connected} of ${options.tunnels})`);
  });
  let stopping = false;
  server.on('disconnected', (result: ServeResult) => {
    connected--;
    (stopping && !result.error ? logger.info : logger.warn)(
      `agent ${options.id}: tunnel to ${options.gateway} closed${result.error ? `: ${result.error.details}` : ''}`,
    );
  });
  server.on('retrying', (event: RetryEvent) => {
    const error = event.error;
    if (error?.code === Status.UNAUTHENTICATED) {
      fatal = new Error(`the gateway refused the token: ${error.details}`);
      server.stop();
      return;
    }
    const why = error ? `${codeName(error.code)}: ${error.details}` : 'tunnel ended';
    logger.warn(
      `agent ${options.id}: cannot reach gateway ${options.gateway} (${why}); retrying in ${event.delayMs} ms`,
    );
  });
  const kept = server.keepOpen({
    tunnels: options.tunnels,
    metadata,
    backoff: { initialDelayMs: 1000, maxDelayMs: 30_000, ...options.backoff },
  });
  const done = kept.then(() => {
    gateway.close();
    target.close();
    return fatal;
  });
  return {
    done,
    async stop(graceMs = 5000) {
      stopping = true;
      const timer = setTimeout(() => server.stop(), graceMs);
      await server.gracefulStop();
      clearTimeout(timer);
      await done;
    },
  };
}
