import { EventEmitter } from 'node:events';
import type { handleBidiStreamingCall, ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import { ServiceRegistry } from './service-registry.js';

// The registry is kept out of the class (a protected field would show in the
// published declarations, engine types and all): the subclasses in this
// library reach it through `servicesOf`, users only through the methods.
const registries = new WeakMap<object, ServiceRegistry>();

/** Options of the `tryShutdown` methods of {@link TunnelServiceHandler} and {@link ReverseTunnelServer}. */
export interface ShutdownOptions {
  /** Aborting turns the graceful shutdown into a forced one (`forceShutdown()`). */
  signal?: AbortSignal;
}

/** The services a host serves, shared by all its tunnels. */
export function servicesOf(host: object): ServiceRegistry {
  return registries.get(host) as ServiceRegistry;
}

/**
 * What a side that serves tunneled calls offers for registering services:
 * the {@link TunnelServiceHandler} (forward tunnels) and the
 * {@link ReverseTunnelServer} (reverse tunnels) both extend it. `Events` maps
 * each event the subclass emits to its listener's arguments.
 */
export abstract class ServiceHost<Events extends Record<keyof Events, unknown[]>> extends EventEmitter<Events> {
  protected constructor() {
    super();
    registries.set(this, new ServiceRegistry());
  }

  /** Makes a service callable through tunnels (same arguments as grpc-js `Server.addService`). */
  addService(service: ServiceDefinition, implementation: UntypedServiceImplementation): void {
    servicesOf(this).addService(service, implementation);
  }

  /**
   * Serves every method no added service provides, with one handler that
   * gets a bidi-streaming call on raw message bytes: what a transparent
   * proxy needs (the gateway/agent command line uses it). Pass undefined to
   * answer unknown methods with UNIMPLEMENTED again.
   */
  setUnknownMethodHandler(handler: handleBidiStreamingCall<Buffer, Buffer> | undefined): void {
    servicesOf(this).setUnknownMethodHandler(handler);
  }

  /** Stops serving a service through tunnels. */
  removeService(service: ServiceDefinition): void {
    servicesOf(this).removeService(service);
  }
}
