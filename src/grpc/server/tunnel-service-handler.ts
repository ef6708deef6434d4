import {
  Metadata,
  type Server,
  type ServerDuplexStream,
  type ServiceDefinition,
  status as Status,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { NEGOTIATE_HEADER, NEGOTIATE_ON } from '../../engine/constants.js';
import { localStatus } from '../../engine/status.js';
import type { ClientToServer, ServerToClient } from '../../gen/grpctunnel/v1/tunnel.js';
import { TunnelServiceDefinition } from '../tunnel-service.js';
import { ServiceRegistry } from './service-registry.js';
import { type TunnelServerOptions, TunnelServerSession } from './tunnel-server-session.js';

/** Options of {@link TunnelServiceHandler}. */
export interface TunnelServiceHandlerOptions extends TunnelServerOptions {}

type TunnelRpc = ServerDuplexStream<ClientToServer, ServerToClient>;

/**
 * The server side of `grpctunnel.v1.TunnelService`. Register it on a grpc-js
 * `Server` with {@link register}, and add the services that forward tunnels
 * may call with {@link addService}, exactly as with `Server.addService`.
 */
export class TunnelServiceHandler {
  private readonly registry = new ServiceRegistry();
  private readonly sessions = new Set<TunnelServerSession>();
  private draining = false;

  constructor(private readonly options: TunnelServiceHandlerOptions = {}) {}

  /** Makes a service callable through forward tunnels (same arguments as grpc-js `Server.addService`). */
  addService(service: ServiceDefinition, implementation: UntypedServiceImplementation): void {
    this.registry.addService(service, implementation);
  }

  /** Stops serving a service through tunnels. */
  removeService(service: ServiceDefinition): void {
    this.registry.removeService(service);
  }

  /** The grpc-js implementation of TunnelService, for `server.addService(TunnelServiceDefinition, …)`. */
  get implementation(): UntypedServiceImplementation {
    return { openTunnel: (call: TunnelRpc) => this.openTunnel(call) };
  }

  /** Registers the tunnel service on a grpc-js server. */
  register(server: Server): void {
    server.addService(TunnelServiceDefinition, this.implementation);
  }

  /** Forward tunnels currently open. */
  get openTunnels(): number {
    return this.sessions.size;
  }

  /** Tunneled calls currently running, over all forward tunnels. */
  get activeCalls(): number {
    let n = 0;
    for (const session of this.sessions) n += session.activeStreams;
    return n;
  }

  /**
   * Starts a graceful shutdown: open tunnels refuse new calls with
   * UNAVAILABLE while running calls finish, and new tunnels are refused.
   */
  initiateShutdown(): void {
    this.draining = true;
    for (const session of this.sessions) session.drain();
  }

  private openTunnel(call: TunnelRpc): void {
    if (this.draining) {
      call.emit('error', { code: Status.UNAVAILABLE, details: 'the server is shutting down' });
      return;
    }
    const negotiated = call.metadata.get(NEGOTIATE_HEADER)[0] === NEGOTIATE_ON;
    // Headers go out at once: the client learns the negotiation result (and
    // interceptors may add authentication material) before any frame.
    const headers = new Metadata();
    headers.set(NEGOTIATE_HEADER, NEGOTIATE_ON);
    call.sendMetadata(headers);
    let ended = false;
    const session = new TunnelServerSession(
      call,
      negotiated,
      this.registry,
      { metadata: call.metadata, peer: call.getPeer(), authContext: call.getAuthContext(), host: call.getHost() },
      this.options,
      () => call.getMetricsRecorder(),
      (status) => {
        if (ended) return;
        ended = true;
        this.sessions.delete(session);
        call.emit('error', { code: status.code, details: status.message });
      },
    );
    this.sessions.add(session);
    const finish = (message: string, endRpc: boolean) => {
      this.sessions.delete(session);
      session.close(localStatus(Status.CANCELLED, message));
      if (!ended && endRpc) {
        ended = true;
        call.end();
      }
      ended = true;
    };
    call.on('end', () => finish('the tunnel client closed the tunnel', true));
    call.on('cancelled', () => finish('the tunnel was cancelled', false));
    call.on('error', () => finish('the tunnel failed', false));
  }
}
