/**
 * The wire contract of grpctunnel, for code that works with the tunnel
 * protocol itself rather than through tunnels: custom server wiring (nested
 * tunnels, interceptors that recognise tunnel RPCs), proxies and load
 * balancers that route them, and compatible peers. Import it from
 * `grpctunnel/protocol`; ordinary use needs only the package root.
 *
 * @packageDocumentation
 */

import type { ServiceDefinition } from '@grpc/grpc-js';
import {
  TunnelServiceDefinition as definition,
  OPEN_REVERSE_TUNNEL_PATH,
  OPEN_TUNNEL_PATH,
} from './grpc/tunnel-service.js';

export { DEFAULT_WINDOW_SIZE, MAX_CHUNK_SIZE, NEGOTIATE_HEADER } from './engine/constants.js';
export { KEEPALIVE_POLICY_HEADER } from './grpc/keepalive.js';
export { OPEN_REVERSE_TUNNEL_PATH, OPEN_TUNNEL_PATH };

/**
 * The grpc-js service definition of `grpctunnel.v1.TunnelService`, for
 * `server.addService(TunnelServiceDefinition, handler.implementation)` (for
 * example to serve tunnels through a tunnel) or
 * `grpc.makeGenericClientConstructor`. Its messages are the tunnel's frames,
 * which only this library encodes and decodes, so their types stay opaque.
 */
export const TunnelServiceDefinition: ServiceDefinition = definition;
