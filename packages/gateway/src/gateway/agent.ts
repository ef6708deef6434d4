// The agent: keeps reverse tunnels open to a gateway and forwards every call
// that arrives through them to a target gRPC server, as raw bytes.
import {
  Client,
  credentials,
  Metadata,
  type ServiceDefinition,
  status as Status,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import {
  createProxyHandler,
  type KeepaliveOptions,
  ReverseTunnelServer,
  type ServeResult,
  TUNNEL_CHANNEL_OPTIONS,
  TunnelConnection,
  type TunnelConnectionOptions,
} from 'grpctunnel';
import { AGENT_HEADER, checkMessageSize, DEFAULT_MAX_MESSAGE_SIZE } from './gateway.js';
import { createLogger, type Logger } from './logger.js';
import { codeName } from './metrics.js';
import { splitHostPort } from './net.js';
import { ReplicaDialer } from './replica-dialer.js';

/** Where an embedded agent adds its service implementations (as on a grpc-js `Server`). */
export interface ServiceRegistrar {
  /** Serves `service`'s methods with `implementation` on every tunnel of the agent. */
  addService(service: ServiceDefinition, implementation: UntypedServiceImplementation): void;
}

/** Options of {@link startAgent}. */
export interface AgentOptions {
  /** host:port of the gateway's agents port. */
  gateway: string;
  /**
   * host:port of the gRPC server to expose (plaintext): every call the
   * agent's own `services` do not serve is forwarded to it as raw bytes.
   */
  target?: string;
  /**
   * Serves calls in this process: called with each tunnel's server, to
   * `addService` implementations on it (a program embedding the agent).
   * Methods it does not serve go to `target`, or fail with UNIMPLEMENTED.
   */
  services?: (server: ServiceRegistrar) => void;
  /** This agent's id: callers route to it with the grpctunnel-agent header. */
  id: string;
  /** The bearer token the gateway's agent tokens file lists for this id (sent as `authorization`). */
  token?: string;
  /** Reverse tunnels to keep open on each gateway replica (a single gateway is one replica). */
  tunnels: number;
  /** How to reach the gateway: plaintext, TLS with the system's roots, or TLS with this CA. */
  security:
    | {
        /** Plaintext: only for a gateway on loopback or a trusted network. */
        insecure: true;
      }
    | {
        /** PEM roots to verify the gateway's certificate with; the system's roots without it. */
        ca?: Buffer;
      };
  /** Where log lines go; by default warnings and errors go to stderr. */
  logger?: Logger;
  /** Reconnection delays (ms); defaults suit a real deployment (1 s to 30 s). */
  backoff?: {
    /** The first delay after a failed dial (default 1000). */
    initialDelayMs?: number;
    /** The bound the delays grow to (default 30000). */
    maxDelayMs?: number;
  };
  /** Liveness pings toward the gateway (see the `keepalive` option of `ReverseTunnelServer`). */
  keepalive?: KeepaliveOptions | false;
  /**
   * Largest message, in bytes, a call may carry through the agent in either
   * direction: a request arriving through a tunnel, and the target's
   * response. Larger ones fail that call with RESOURCE_EXHAUSTED. The
   * gateway has a limit of its own (`GatewayOptions.maxMessageSize`); raise
   * both together. Default 4 MiB, grpc-js's default.
   */
  maxMessageSize?: number;
  /** Aborting it stops the agent as {@link Agent.stop} does. */
  signal?: AbortSignal;
}

/** Why an agent gave up: retrying could not help. */
export class AgentFailure extends Error {
  /** Always `'AgentFailure'`. */
  override readonly name = 'AgentFailure';
  constructor(
    /** `refused`: the gateway refused the token; `not-a-tunnel-endpoint`: the address does not serve reverse tunnels. */
    readonly reason: 'refused' | 'not-a-tunnel-endpoint',
    message: string,
  ) {
    super(message);
  }
}

/** A running agent. */
export interface Agent {
  /** Settles when the agent stops: undefined, or the failure that made it give up. */
  readonly done: Promise<AgentFailure | undefined>;
  /** Stops: running calls finish for up to `graceMs`, then everything closes. */
  stop(graceMs?: number): Promise<void>;
}

/** Warnings and errors to stderr: what an embedding program sees unless it passes a logger. */
const defaultLogger = createLogger('warn');

/**
 * Starts an agent: it dials the gateway, keeps `tunnels` reverse tunnels
 * open to every gateway replica behind that address, and serves the calls
 * that arrive through them (forwarding to `target`, or with `services`).
 * The `grpctunnel agent` command is this function behind flags.
 */
export function startAgent(options: AgentOptions): Agent {
  options.signal?.throwIfAborted();
  const logger = options.logger ?? defaultLogger;
  splitHostPort(options.gateway);
  if (options.target === undefined && options.services === undefined) {
    throw new Error('an agent needs a target to forward to, or services to serve');
  }
  if (options.target !== undefined) splitHostPort(options.target);
  const maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
  checkMessageSize('maxMessageSize', maxMessageSize);
  // The library's own HTTP/2 connection: tunnel RPCs on it skip grpc-js's
  // client call stack, which is the cost per tunnel frame (issue 16).
  const gatewayConnection: TunnelConnectionOptions = {
    tls: 'insecure' in options.security ? false : options.security.ca ? { ca: options.security.ca } : true,
    maxReceiveMessageLength: maxMessageSize,
  };
  const backoff = { initialDelayMs: 1000, maxDelayMs: 30_000, ...options.backoff };
  // The target's responses travel on to the tunnel: let them stream as fast.
  const target =
    options.target === undefined
      ? undefined
      : new Client(options.target, credentials.createInsecure(), {
          ...TUNNEL_CHANNEL_OPTIONS,
          'grpc.max_receive_message_length': maxMessageSize,
        });
  const proxy =
    target &&
    createProxyHandler(target, {
      onFinish: (path, status) => {
        if (status.code !== Status.OK) logger.warn(`call ${path} failed: ${codeName(status.code)} ${status.details}`);
      },
    });
  const metadata = new Metadata();
  metadata.set(AGENT_HEADER, options.id);
  if (options.token) metadata.set('authorization', `Bearer ${options.token}`);

  let stopping = false;
  const where = (replica: string) => (replica ? `${options.gateway} (replica ${replica})` : options.gateway);
  const summary = (held: ReadonlyMap<string, number>) => [...held.values()].reduce((n, k) => n + k, 0);
  // Each tunnel on a connection of its own, so that behind a load balancer
  // the agent reaches every gateway replica (it keeps --tunnels on each).
  const dialer = new ReplicaDialer({
    perReplica: options.tunnels,
    connect: () => new TunnelConnection(options.gateway, gatewayConnection),
    createServer: (connection, authenticate) => {
      const server = new ReverseTunnelServer(connection, {
        authenticate,
        // Requests arrive through these tunnels.
        maxReceiveMessageSize: maxMessageSize,
        ...(options.keepalive !== undefined && { keepalive: options.keepalive }),
      });
      options.services?.(server);
      if (proxy) server.setUnknownMethodHandler(proxy);
      return server;
    },
    metadata,
    backoff,
    fatal: (error) => {
      if (error.code === Status.UNAUTHENTICATED || error.code === Status.PERMISSION_DENIED) {
        return new AgentFailure('refused', `the gateway refused the token: ${error.details}`);
      }
      if (error.code === Status.UNIMPLEMENTED) {
        // A gRPC server without reverse tunnels (a plain service, the gateway's
        // caller port): it will answer the same way forever.
        return new AgentFailure(
          'not-a-tunnel-endpoint',
          `${options.gateway} is not a grpctunnel agents port (it does not serve reverse tunnels: ${error.details}); point --gateway at the gateway's --agents address`,
        );
      }
      return undefined;
    },
    events: {
      opened: (replica, held, wanted) =>
        logger.info(`agent ${options.id}: tunnel to ${where(replica)} open (${summary(held)} of ${wanted})`),
      closed: (replica, result: ServeResult, held) =>
        (stopping && !result.error ? logger.info : logger.warn)(
          `agent ${options.id}: tunnel to ${where(replica)} closed${result.error ? `: ${result.error.details}` : ''} (${summary(held)} left)`,
        ),
      leaving: (replica) =>
        logger.info(`agent ${options.id}: ${where(replica)} is going away; opening a tunnel elsewhere`),
      full: (replica, delayMs) =>
        logger.debug(
          `agent ${options.id}: reached ${where(replica)} again, which has its tunnels; redialing in ${delayMs} ms`,
        ),
      retrying: (error, delayMs) => {
        if (stopping) return;
        const why = error ? `${codeName(error.code)}: ${error.details}` : 'tunnel ended';
        logger.warn(`agent ${options.id}: cannot reach gateway ${options.gateway} (${why}); retrying in ${delayMs} ms`);
      },
    },
  });
  const done = dialer.done.then((failure) => {
    target?.close();
    options.signal?.removeEventListener('abort', onAbort);
    return failure as AgentFailure | undefined;
  });
  let stopped: Promise<void> | undefined;
  const agent: Agent = {
    done,
    stop(graceMs = 5000) {
      stopped ??= (async () => {
        stopping = true;
        const timer = setTimeout(() => dialer.forceShutdown(), graceMs);
        await dialer.tryShutdown();
        clearTimeout(timer);
        await done;
      })();
      return stopped;
    },
  };
  const onAbort = () => void agent.stop();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  return agent;
}
