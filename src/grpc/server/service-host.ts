import { EventEmitter } from 'node:events';
import type { handleBidiStreamingCall, ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import { ServiceRegistry } from './service-registry.js';

/**
 * What a side that serves tunneled calls offers for registering services:
 * the {@link TunnelServiceHandler} (forward tunnels) and the
 * {@link ReverseTunnelServer} (reverse tunnels) both extend it.
 */
export abstract class ServiceHost extends EventEmitter {
  /** @internal The services this side serves, shared by all its tunnels. */
  protected readonly registry = new ServiceRegistry();

  /** Makes a service callable through tunnels (same arguments as grpc-js `Server.addService`). */
  addService(service: ServiceDefinition, implementation: UntypedServiceImplementation): void {
    this.registry.addService(service, implementation);
  }

  /**
   * Serves every method no added service provides, with one handler that
   * gets a bidi-streaming call on raw message bytes: what a transparent
   * proxy needs (the gateway/agent command line uses it). Pass undefined to
   * answer unknown methods with UNIMPLEMENTED again.
   */
  setUnknownMethodHandler(handler: handleBidiStreamingCall<Buffer, Buffer> | undefined): void {
    this.registry.setUnknownMethodHandler(handler);
  }

  /** Stops serving a service through tunnels. */
  removeService(service: ServiceDefinition): void {
    this.registry.removeService(service);
  }
}
